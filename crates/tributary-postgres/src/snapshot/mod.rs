//! The initial snapshot: every configured table read inside the slot's
//! exported snapshot, so that snapshot + stream is exact (no gap, no double
//! count): the stream starts at the consistent point where the snapshot was
//! taken.
//!
//! Large tables are read in parallel: each table is split into page ranges
//! ([`chunk`]), and several workers ([`worker`]), each on its own session
//! pinned to the same exported snapshot with `SET TRANSACTION SNAPSHOT`,
//! read one range at a time with COPY. One emitter (here) numbers the events
//! in the order they go to the pipeline and marks the first and the last.
//! Rows of one table therefore arrive in no particular order, as with any
//! parallel snapshot; each row is read exactly once.
//!
//! Resuming: the exported snapshot lives only as long as the replication
//! session that created it, so an interrupted snapshot cannot continue in the
//! same snapshot. Tributary restarts it (all tables again, in a snapshot
//! exported by a temporary slot after the kept slot delivered the changes
//! made since; see [`crate::source`]) and says so in the log; sinks may see
//! the rows read before the interruption twice, with `op: "r"`.

mod chunk;
mod progress;
mod worker;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tributary_core::{ChangeEvent, SnapshotMarker};

use crate::catalog::TableShape;
use crate::changes::SourceContext;
use crate::slot::set_snapshot_sql;
use crate::toast::StoredRowImages;
use crate::wal_retention::SourceHealth;
use crate::Error;
use chunk::TableSize;
use progress::Progress;
use tributary_core::source::SourceItem;
use tributary_pg::{quote_table, ConnectionConfig};
use worker::{ChunkQueue, EventTemplate, Piece, Worker};

/// How a snapshot is spread over sessions (`snapshot_parallelism`,
/// `snapshot_chunk_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Sessions reading at once (each is one server backend).
    pub parallelism: usize,
    /// Heap bytes per chunk; large tables get more chunks than workers.
    pub chunk_bytes: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            parallelism: 4,
            chunk_bytes: 64 << 20,
        }
    }
}

/// One snapshot of a source's tables.
pub struct Snapshot<'a> {
    /// A session inside the transaction pinned to the exported snapshot; it
    /// holds the tables' locks until the caller commits.
    pub client: &'a Client,
    pub connection: &'a ConnectionConfig,
    /// The name `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` returned.
    pub snapshot_name: &'a str,
    pub options: SnapshotOptions,
    pub ctx: &'a SourceContext,
    pub shapes: &'a [TableShape],
    pub consistent_point: u64,
    pub images: &'a StoredRowImages,
    pub out: &'a mpsc::Sender<SourceItem>,
    pub health: &'a watch::Sender<SourceHealth>,
}

impl Snapshot<'_> {
    /// Reads every table, emitting `op: "r"` events with position
    /// `consistent_point`; returns the number of rows.
    pub async fn read(self) -> Result<u64, Error> {
        if self.shapes.is_empty() {
            return Ok(0);
        }
        self.lock_tables().await?;
        let mut sizes = Vec::with_capacity(self.shapes.len());
        let mut tables = Vec::with_capacity(self.shapes.len());
        for shape in self.shapes {
            let (size, estimated) = table_size(self.client, shape).await?;
            sizes.push(size);
            tables.push((shape.table.to_string(), estimated));
        }
        let chunks = chunk::plan(
            &sizes,
            self.options.parallelism.max(1),
            self.options.chunk_bytes,
        );
        let mut progress = Progress::new(
            self.health,
            tables
                .into_iter()
                .enumerate()
                .map(|(i, (name, estimated))| {
                    let count = chunks.iter().filter(|c| c.table == i).count() as u64;
                    (name, estimated, count)
                })
                .collect(),
        );
        let wanted = self.options.parallelism.clamp(1, chunks.len());
        let sessions = self.open_sessions(wanted).await?;
        tracing::info!(
            chunks = chunks.len(),
            sessions = sessions.len(),
            "snapshot reading"
        );

        let template = EventTemplate {
            ctx: self.ctx.clone(),
            consistent_point: self.consistent_point,
            ts_us: tributary_core::clock::now_us(),
        };
        let queue = Arc::new(ChunkQueue::new(chunks));
        let shapes: Arc<[TableShape]> = self.shapes.into();
        let (pieces_tx, mut pieces) = mpsc::channel(2 * sessions.len());
        let mut workers = tokio::task::JoinSet::new();
        for client in sessions {
            workers.spawn(
                Worker {
                    client,
                    queue: Arc::clone(&queue),
                    shapes: Arc::clone(&shapes),
                    template: template.clone(),
                    images: self.images.clone(),
                    unpersisted: false,
                    out: pieces_tx.clone(),
                }
                .run(),
            );
        }
        drop(pieces_tx);

        let mut emitter = Emitter {
            ordinal: 0,
            held: None,
            out: self.out,
        };
        loop {
            tokio::select! {
                piece = pieces.recv() => match piece {
                    Some(Piece::Rows { table, events }) => {
                        progress.rows(table, events.len() as u64);
                        emitter.push(events).await?;
                    }
                    Some(Piece::ChunkDone { table }) => progress.chunk_done(table),
                    // Every worker finished (or failed, reported below).
                    None => break,
                },
                Some(joined) = workers.join_next() => worker_result(joined)?,
            }
        }
        while let Some(joined) = workers.join_next().await {
            worker_result(joined)?;
        }
        emitter.finish().await
    }

    /// ACCESS SHARE locks, held until the snapshot transaction ends: no
    /// rewrite can move rows between the chunks' page ranges.
    async fn lock_tables(&self) -> Result<(), Error> {
        let names: Vec<String> = self.shapes.iter().map(|s| quote_table(&s.table)).collect();
        self.client
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                names.join(", ")
            ))
            .await
            .map_err(|e| Error::query("locking the tables for the snapshot", e))
    }

    /// Up to `wanted` sessions in the exported snapshot. Fewer are fine (a
    /// role's connection limit, `max_connections`): the snapshot goes on
    /// with those that opened, and says so; none is an error.
    async fn open_sessions(&self, wanted: usize) -> Result<Vec<Client>, Error> {
        let set_snapshot = set_snapshot_sql(self.snapshot_name);
        let attempts = futures_util::future::join_all((0..wanted).map(|_| async {
            let client = self.connection.connect().await?;
            client
                .batch_execute(&set_snapshot)
                .await
                .map_err(|e| Error::query("joining the exported snapshot", e))?;
            Ok::<_, Error>(client)
        }))
        .await;
        let mut sessions = Vec::with_capacity(wanted);
        let mut failure = None;
        for attempt in attempts {
            match attempt {
                Ok(client) => sessions.push(client),
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) if sessions.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(
                    sessions = sessions.len(),
                    wanted,
                    error = %e,
                    detail = e.detail().unwrap_or_default(),
                    "the snapshot reads with fewer sessions than snapshot_parallelism"
                );
                Ok(sessions)
            }
            None => Ok(sessions),
        }
    }
}

/// A table's heap size in pages (when it can be split by page ranges) and
/// the planner's row estimate.
async fn table_size(client: &Client, shape: &TableShape) -> Result<(TableSize, u64), Error> {
    let name = quote_table(&shape.table);
    // TID Range Scans exist from PostgreSQL 14; before, a ctid range would
    // scan the whole table once per chunk. Partitioned tables have no heap
    // of their own.
    let row = client
        .query_one(
            "SELECT CASE WHEN c.relkind = 'r' \
                          AND current_setting('server_version_num')::int >= 140000 \
                     THEN pg_relation_size(c.oid) / current_setting('block_size')::int8 END, \
                    current_setting('block_size')::int8, \
                    GREATEST(c.reltuples, 0)::int8 \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await
        .map_err(|e| Error::query("measuring a table for the snapshot", e))?;
    let pages: Option<i64> = row.get(0);
    let page_size: i64 = row.get(1);
    let estimated: i64 = row.get(2);
    Ok((
        TableSize {
            pages: pages.map(|p| p.max(0) as u64),
            page_size: page_size.max(1) as u64,
        },
        estimated.max(0) as u64,
    ))
}

fn worker_result(joined: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    joined.map_err(|e| Error::SnapshotWorker {
        reason: e.to_string(),
    })?
}

/// Numbers snapshot events in the order they go out and marks the first and
/// last (`source.snapshot`). The newest piece is held back so that the very
/// last event can be marked `"last"`.
struct Emitter<'a> {
    ordinal: u64,
    held: Option<Vec<ChangeEvent>>,
    out: &'a mpsc::Sender<SourceItem>,
}

impl Emitter<'_> {
    async fn push(&mut self, mut events: Vec<ChangeEvent>) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        for event in &mut events {
            event.id.ordinal = self.ordinal;
            event.source.snapshot = if self.ordinal == 0 {
                SnapshotMarker::First
            } else {
                SnapshotMarker::True
            };
            self.ordinal += 1;
        }
        if let Some(previous) = self.held.replace(events) {
            self.send(previous).await?;
        }
        Ok(())
    }

    /// Sends the rest, marking the very last row; returns the row count.
    async fn finish(mut self) -> Result<u64, Error> {
        if let Some(mut last) = self.held.take() {
            if let Some(event) = last.last_mut() {
                event.source.snapshot = SnapshotMarker::Last;
            }
            self.send(last).await?;
        }
        Ok(self.ordinal)
    }

    async fn send(&self, events: Vec<ChangeEvent>) -> Result<(), Error> {
        self.out
            .send(SourceItem::Events(events))
            .await
            .map_err(|_| Error::PipelineClosed)?;
        if tributary_core::fault::holds(tributary_core::fault::SNAPSHOT_PIECE_SENT) {
            while !tributary_core::fault::released() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}
