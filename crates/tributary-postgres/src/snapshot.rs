//! The initial snapshot: every configured table read inside the slot's
//! exported snapshot, so that snapshot + stream is exact (no gap, no double
//! count): the stream starts at the consistent point where the snapshot was
//! taken.
//!
//! Resuming: the exported snapshot lives only as long as the replication
//! session that created it, so an interrupted snapshot cannot continue in the
//! same snapshot. Tributary restarts it cleanly (new slot, all tables again),
//! and says so in the log; sinks may see the rows read before the
//! interruption twice, with `op: "r"`.

use std::sync::Arc;

use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tributary_core::{ChangeEvent, EventId, Op, SnapshotMarker, SourceInfo};

use crate::catalog::TableShape;
use crate::changes::{build_row, key_of, SourceContext};
use crate::connection::quote_ident;
use crate::copy_text::CopyTextReader;
use crate::pgoutput::Datum;
use crate::source::SourceItem;
use crate::toast::RowImages;
use crate::wal_retention::SourceHealth;
use crate::Error;

/// Events per batch handed to the pipeline.
const BATCH: usize = 1024;

/// Reads every table inside the transaction the caller pinned to the exported
/// snapshot, emitting `op: "r"` events with position `consistent_point`.
pub async fn read_tables(
    client: &Client,
    ctx: &SourceContext,
    shapes: &[TableShape],
    consistent_point: u64,
    images: &mut dyn RowImages,
    out: &mpsc::Sender<SourceItem>,
    health: &watch::Sender<SourceHealth>,
) -> Result<u64, Error> {
    let ts_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut emitter = Emitter {
        ctx,
        consistent_point,
        ts_ms,
        ordinal: 0,
        batch: Vec::with_capacity(BATCH),
        held: None,
        out,
    };
    for shape in shapes {
        let mut progress = Progress::start(client, shape, health).await?;
        read_table(client, shape, &mut emitter, images, &mut progress).await?;
        progress.finish();
    }
    emitter.finish().await
}

async fn read_table(
    client: &Client,
    shape: &TableShape,
    emitter: &mut Emitter<'_>,
    images: &mut dyn RowImages,
    progress: &mut Progress<'_>,
) -> Result<(), Error> {
    let columns = shape
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "COPY (SELECT {columns} FROM {}.{}) TO STDOUT",
        quote_ident(&shape.table.schema),
        quote_ident(&shape.table.table)
    );
    let stream = client
        .copy_out(sql.as_str())
        .await
        .map_err(|e| Error::query("starting the snapshot COPY", e))?;
    pin_mut!(stream);
    let mut reader = CopyTextReader::default();
    let mut rows = Vec::new();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| Error::query("reading the snapshot COPY", e))?
    {
        reader.feed(&chunk, |fields| {
            rows.push(fields);
            Ok(())
        })?;
        for fields in rows.drain(..) {
            let row = build_row(
                shape,
                emitter.ctx.mapping,
                fields.iter().map(|f| f.as_deref()),
            );
            let key = key_of(shape, &row);
            let at = (emitter.consistent_point, emitter.ordinal);
            let tuple: Vec<Datum> = fields
                .into_iter()
                .map(|f| f.map_or(Datum::Null, |s| Datum::Text(s.into())))
                .collect();
            images.remember(shape, key.as_ref(), &tuple, at)?;
            emitter.push(shape, key, row).await?;
            progress.row();
        }
    }
    if reader.has_partial_row() {
        return Err(crate::copy_text::CopyFormatError::truncated().into());
    }
    Ok(())
}

/// Rows read of one table against the planner's estimate, published to the
/// source's health (for `/status`), and shown as a progress bar on a
/// terminal or logged every few seconds with rate and ETA otherwise, so a
/// long snapshot is never silent.
struct Progress<'a> {
    health: &'a watch::Sender<SourceHealth>,
    bar: Option<indicatif::ProgressBar>,
    index: usize,
    table: String,
    rows: u64,
    estimated: u64,
    started: Instant,
    logged: Instant,
}

const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

impl<'a> Progress<'a> {
    async fn start(
        client: &Client,
        shape: &TableShape,
        health: &'a watch::Sender<SourceHealth>,
    ) -> Result<Progress<'a>, Error> {
        let name = format!(
            "{}.{}",
            quote_ident(&shape.table.schema),
            quote_ident(&shape.table.table)
        );
        let estimated: i64 = client
            .query_one(
                "SELECT GREATEST(reltuples, 0)::int8 FROM pg_class WHERE oid = to_regclass($1)",
                &[&name],
            )
            .await
            .map_err(|e| Error::query("estimating a table's rows", e))?
            .get(0);
        let table = shape.table.to_string();
        let mut index = 0;
        health.send_modify(|h| {
            index = h.snapshot.len();
            h.snapshot.push((table.clone(), 0, estimated as u64));
        });
        let now = Instant::now();
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(estimated as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_message(format!("snapshot {table}"));
            bar
        });
        Ok(Progress {
            health,
            bar,
            index,
            table,
            rows: 0,
            estimated: estimated as u64,
            started: now,
            logged: now,
        })
    }

    fn row(&mut self) {
        self.rows += 1;
        if !self.rows.is_multiple_of(4096) {
            return;
        }
        self.publish();
        if let Some(bar) = &self.bar {
            if self.rows > bar.length().unwrap_or(0) {
                bar.set_length(self.rows);
            }
            bar.set_position(self.rows);
        } else if self.logged.elapsed() >= PROGRESS_LOG_EVERY {
            self.logged = Instant::now();
            let rate = self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            let eta = self.estimated.saturating_sub(self.rows) as f64 / rate.max(1.0);
            tracing::info!(
                table = %self.table,
                rows = self.rows,
                estimated = self.estimated,
                rows_per_second = rate.round(),
                eta_seconds = eta.round(),
                "snapshot progress"
            );
        }
    }

    fn publish(&self) {
        let (index, rows) = (self.index, self.rows);
        self.health.send_modify(|h| {
            if let Some(entry) = h.snapshot.get_mut(index) {
                entry.1 = rows;
            }
        });
    }

    fn finish(self) {
        self.publish();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            table = %self.table,
            rows = self.rows,
            seconds = self.started.elapsed().as_secs_f64(),
            "snapshot of table finished"
        );
    }
}

/// Numbers snapshot events and marks the first and last (`source.snapshot`).
/// One event is held back so the last can be marked `"last"`.
struct Emitter<'a> {
    ctx: &'a SourceContext,
    consistent_point: u64,
    ts_ms: i64,
    ordinal: u64,
    batch: Vec<ChangeEvent>,
    held: Option<ChangeEvent>,
    out: &'a mpsc::Sender<SourceItem>,
}

impl Emitter<'_> {
    async fn push(
        &mut self,
        shape: &TableShape,
        key: Option<tributary_core::Row>,
        row: tributary_core::Row,
    ) -> Result<(), Error> {
        let marker = if self.ordinal == 0 {
            SnapshotMarker::First
        } else {
            SnapshotMarker::True
        };
        let event = ChangeEvent {
            id: EventId {
                source: self.ctx.name.clone(),
                commit: self.consistent_point,
                ordinal: self.ordinal,
            },
            table: Arc::clone(&shape.table),
            op: Op::Read,
            key,
            before: None,
            after: Some(row),
            source: SourceInfo {
                name: self.ctx.name.clone(),
                connector: "postgresql",
                db: self.ctx.db.clone(),
                ts_ms: self.ts_ms,
                snapshot: marker,
                tx_id: None,
                lsn: Some(self.consistent_point),
                sequence: None,
                unchanged_toast: Vec::new(),
            },
        };
        self.ordinal += 1;
        if let Some(prev) = self.held.replace(event) {
            self.batch.push(prev);
            if self.batch.len() >= BATCH {
                let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
                self.out
                    .send(SourceItem::Events(batch))
                    .await
                    .map_err(|_| Error::PipelineClosed)?;
            }
        }
        Ok(())
    }

    /// Flushes the rest, marking the very last row; returns the row count.
    async fn finish(mut self) -> Result<u64, Error> {
        if let Some(mut last) = self.held.take() {
            last.source.snapshot = SnapshotMarker::Last;
            self.batch.push(last);
        }
        if !self.batch.is_empty() {
            self.out
                .send(SourceItem::Events(std::mem::take(&mut self.batch)))
                .await
                .map_err(|_| Error::PipelineClosed)?;
        }
        Ok(self.ordinal)
    }
}
