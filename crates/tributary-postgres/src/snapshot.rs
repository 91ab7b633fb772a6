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

use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tributary_core::{ChangeEvent, EventId, Op, SnapshotMarker, SourceInfo};

use crate::catalog::TableShape;
use crate::changes::{build_row, key_of, SourceContext};
use crate::connection::quote_ident;
use crate::copy_text::CopyTextReader;
use crate::pgoutput::Datum;
use crate::source::SourceItem;
use crate::toast::RowImages;
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
        let started = std::time::Instant::now();
        let before = emitter.ordinal;
        read_table(client, shape, &mut emitter, images).await?;
        tracing::info!(
            table = %shape.table,
            rows = emitter.ordinal - before,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot of table finished"
        );
    }
    emitter.finish().await
}

async fn read_table(
    client: &Client,
    shape: &TableShape,
    emitter: &mut Emitter<'_>,
    images: &mut dyn RowImages,
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
        }
    }
    if reader.has_partial_row() {
        return Err(crate::copy_text::CopyFormatError::truncated().into());
    }
    Ok(())
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
