//! One snapshot worker: a session pinned to the exported snapshot that
//! takes chunks from the shared queue, reads each with COPY, and turns its
//! rows into `op: "r"` events. Workers run as separate tasks, so parsing and
//! value mapping spread over cores while the server scans in parallel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tributary_core::{
    ChangeEvent, EventId, Op, Position, Row, SnapshotMarker, SourceInfo, TableRef, TableSchema,
};

use super::chunk::{copy_sql, Chunk};
use crate::catalog::TableShape;
use crate::changes::{key_row, map_values, SourceContext};
use crate::copy_text::{CopyFormatError, CopyTextReader, Fields};
use crate::pgoutput::Datum;
use crate::toast::{may_be_toasted, row_may_be_toasted, RowImages, StoredRowImages};
use crate::Error;

/// Events per piece a worker hands to the emitter.
pub(super) const PIECE_EVENTS: usize = 1024;

/// What workers send the emitter.
pub(super) enum Piece {
    /// Rows of table `table`, numbered and marked by the emitter.
    Rows {
        table: usize,
        events: Vec<ChangeEvent>,
    },
    /// A chunk of table `table` was read to its end.
    ChunkDone { table: usize },
}

/// The chunks of one snapshot; each worker takes the next one not taken.
pub(super) struct ChunkQueue {
    chunks: Vec<Chunk>,
    next: AtomicUsize,
}

impl ChunkQueue {
    pub(super) fn new(chunks: Vec<Chunk>) -> Self {
        Self {
            chunks,
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<Chunk> {
        self.chunks
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .copied()
    }
}

/// What every event of one snapshot shares.
#[derive(Clone)]
pub(super) struct EventTemplate {
    pub ctx: SourceContext,
    pub consistent_point: u64,
    /// When the snapshot began, in microseconds since the epoch.
    pub ts_us: i64,
}

/// The names every event of one piece shares, allocated afresh per piece.
///
/// Events hold these as `Arc`s. Shared by all pieces, their reference
/// counts would be incremented here and decremented, at the same moment,
/// by the thread that frees written batches: the counters' cache lines
/// bounced between cores on every event, a tenth of the snapshot's CPU.
/// Per piece, this worker is the only writer until the piece is sent.
struct PieceShared {
    name: Arc<str>,
    db: Arc<str>,
    table: Arc<TableRef>,
    schema: Arc<TableSchema>,
    columns: Arc<[String]>,
    key_columns: Arc<[String]>,
}

impl PieceShared {
    fn new(template: &EventTemplate, shape: &TableShape) -> Self {
        Self {
            name: Arc::from(&*template.ctx.name),
            db: Arc::from(&*template.ctx.db),
            table: Arc::new(TableRef::clone(&shape.table)),
            schema: Arc::new(TableSchema::clone(&shape.schema)),
            columns: Arc::from(&*shape.columns),
            key_columns: Arc::from(&*shape.key_columns),
        }
    }
}

pub(super) struct Worker {
    pub client: Client,
    pub queue: Arc<ChunkQueue>,
    pub shapes: Arc<[TableShape]>,
    pub template: EventTemplate,
    pub images: StoredRowImages,
    /// Images were remembered for rows not yet sent.
    pub unpersisted: bool,
    pub out: mpsc::Sender<Piece>,
}

impl Worker {
    /// Reads chunks until the queue is empty.
    pub(super) async fn run(mut self) -> Result<(), Error> {
        while let Some(chunk) = self.queue.take() {
            self.read_chunk(&chunk).await?;
            self.send(Piece::ChunkDone { table: chunk.table }).await?;
        }
        Ok(())
    }

    async fn read_chunk(&mut self, chunk: &Chunk) -> Result<(), Error> {
        let shapes = Arc::clone(&self.shapes);
        let shape = &shapes[chunk.table];
        let mut shared = PieceShared::new(&self.template, shape);
        let sql = copy_sql(shape, chunk);
        let stream = self
            .client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| Error::query("starting the snapshot COPY", e))?;
        pin_mut!(stream);
        let mut reader = CopyTextReader::default();
        let mut events = Vec::with_capacity(PIECE_EVENTS);
        while let Some(data) = stream
            .try_next()
            .await
            .map_err(|e| Error::query("reading the snapshot COPY", e))?
        {
            reader.feed::<Error>(&data, |fields| {
                events.push(self.event(shape, &shared, fields)?);
                Ok(())
            })?;
            if events.len() >= PIECE_EVENTS {
                shared = PieceShared::new(&self.template, shape);
                let full = std::mem::replace(&mut events, Vec::with_capacity(PIECE_EVENTS));
                self.send(Piece::Rows {
                    table: chunk.table,
                    events: full,
                })
                .await?;
            }
        }
        if reader.has_partial_row() {
            return Err(CopyFormatError::truncated().into());
        }
        if !events.is_empty() {
            self.send(Piece::Rows {
                table: chunk.table,
                events,
            })
            .await?;
        }
        Ok(())
    }

    /// One row as an event; its ordinal and snapshot marker are set by the
    /// emitter, which sees the rows of all workers in the order they go out.
    fn event(
        &mut self,
        shape: &TableShape,
        shared: &PieceShared,
        fields: &Fields<'_>,
    ) -> Result<ChangeEvent, Error> {
        if fields.len() != shape.columns.len() {
            return Err(CopyFormatError::field_count().into());
        }
        let t = &self.template;
        let values = map_values(shape, fields.iter());
        let key = key_row(shape, Arc::clone(&shared.key_columns), &values);
        let row = Row::new(Arc::clone(&shared.columns), values);
        if row_may_be_toasted(fields.line_len())
            && may_be_toasted(shape, fields.iter().map(|f| f.map(str::len)))
        {
            // Rare (rows of ~2 kB and more): remember large values so later
            // unchanged-TOAST markers can be filled. Every snapshot row is
            // older than every streamed change, so one position serves all.
            let tuple: Vec<Datum> = fields
                .iter()
                .map(|f| {
                    f.map_or(Datum::Null, |s| {
                        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
                    })
                })
                .collect();
            self.images
                .remember(shape, key.as_ref(), &tuple, (t.consistent_point, 0))?;
            self.unpersisted = true;
        }
        Ok(ChangeEvent {
            id: EventId {
                source: Arc::clone(&shared.name),
                commit: Position::new(t.consistent_point),
                ordinal: 0,
            },
            table: Arc::clone(&shared.table),
            schema: Arc::clone(&shared.schema),
            op: Op::Read,
            key,
            before: None,
            after: Some(row),
            source: SourceInfo {
                name: Arc::clone(&shared.name),
                connector: "postgresql",
                db: Arc::clone(&shared.db),
                ts_us: t.ts_us,
                snapshot: SnapshotMarker::True,
                tx_id: None,
                lsn: Some(t.consistent_point),
                sequence: None,
                unchanged_toast: Vec::new(),
                encoding: t.ctx.encoding,
            },
        })
    }

    async fn send(&mut self, piece: Piece) -> Result<(), Error> {
        if self.unpersisted {
            // Rows go out only with their images durable (see
            // `tributary_state`'s row images).
            self.images.persist()?;
            self.unpersisted = false;
        }
        self.out
            .send(piece)
            .await
            .map_err(|_| Error::PipelineClosed)
    }
}
