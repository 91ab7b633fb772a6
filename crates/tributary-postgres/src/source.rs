//! The PostgreSQL source: publication and slot, snapshot, then the stream.
//!
//! The source never confirms a position on its own. It sends events and
//! checkpoints to the pipeline; the pipeline reports back (on `durable`) the
//! position every sink has made durable, and only that is confirmed to the
//! server as the slot's flush position.

//!
//! A snapshot needs a snapshot point. A new slot exports one as it is
//! created; that is how the first snapshot is taken. A later snapshot (one
//! that restarts after an interruption, or `snapshot = "always"`) keeps the
//! slot it has, because that slot still holds every change since the rows
//! the sinks already got: a temporary slot exports the new snapshot at point
//! Y, the kept slot is streamed up to Y (the catch-up, so deletes made in
//! between reach the sinks), the snapshot is read, and the kept slot streams
//! on from Y. Every change is delivered, in commit order around the
//! snapshot, and the stream after it neither repeats nor misses one: a
//! transaction is in the snapshot exactly when its commit record starts
//! before Y, and a stream started at Y skips exactly those.

use std::collections::HashSet;
use std::sync::Arc;

use pgwire_replication::{Lsn, ReplicationClient};
use tributary_core::check::Finding;
use tributary_core::source::{BoxFuture, Source, SourceError, TableShapes};
pub use tributary_core::source::{SourceItem, SourceLinks};
use tributary_state::{Checkpoint, StateStore};

use crate::catalog::{self, TableShape, TypeCache};
use crate::changes::{ChangeDecoder, SourceContext};
use crate::query_session::QuerySession;
pub use crate::settings::{PostgresSourceConfig, SlotLost, SnapshotMode};
use crate::slot::{self, SlotCreation, SlotState};
use crate::snapshot;
use crate::start::{plan_start, SlotAtStart, StartPlan};
use crate::stream::{gated_session, Backoff, Ended, Stream};
use crate::toast::StoredRowImages;
use crate::wal_retention::WalRetention;
use crate::Error;

pub struct PostgresSource {
    cfg: PostgresSourceConfig,
    store: StateStore,
}

/// The pipeline's view of this source.
impl Source for PostgresSource {
    fn preflight(&self) -> BoxFuture<'_, Result<Vec<Finding>, SourceError>> {
        Box::pin(async move {
            crate::preflight::check(&self.cfg, self.cfg.max_lag_bytes)
                .await
                .map_err(SourceError::new)
        })
    }

    fn describe(&self) -> BoxFuture<'_, Result<TableShapes, SourceError>> {
        Box::pin(async move { self.describe().await.map_err(SourceError::new) })
    }

    fn run(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        links: SourceLinks,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            PostgresSource::run(self, resume, links)
                .await
                .map_err(SourceError::new)
        })
    }
}

impl PostgresSource {
    pub fn new(cfg: PostgresSourceConfig, store: StateStore) -> Self {
        Self { cfg, store }
    }

    /// Each configured table's shape, read from the catalog as the
    /// snapshot reads it.
    async fn describe(&self) -> Result<TableShapes, Error> {
        let query = QuerySession::open(&self.cfg.connection).await?;
        let mut types = TypeCache::default();
        let mut shapes = Vec::with_capacity(self.cfg.tables.len());
        for table in &self.cfg.tables {
            let shape = catalog::table_shape(query.client(), &mut types, table).await?;
            shapes.push((table.clone(), shape.schema));
        }
        Ok(shapes)
    }

    /// Runs until shutdown or a fatal error.
    ///
    /// Once connected, a lost connection (the server restarting, failing
    /// over or shutting down) is ridden out at every phase: the stream
    /// reconnects by itself, and an error before it (the catalog look-ups,
    /// the snapshot) starts this over with backoff from what the pipeline
    /// was last sent, as a process restart would from its checkpoint, so a
    /// snapshot cut off by a restart is taken again on the kept slot after
    /// a catch-up.
    pub async fn run(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        mut links: SourceLinks,
    ) -> Result<(), Error> {
        let cfg = &self.cfg;
        let query = QuerySession::open(&cfg.connection).await?;
        let ctx_name: Arc<str> = Arc::from(cfg.name.as_str());
        let ctx = SourceContext {
            name: Arc::clone(&ctx_name),
            db: Arc::from(cfg.connection.dbname()),
            encoding: cfg.encoding,
        };
        links.health.send_modify(|h| h.slot.clone_from(&cfg.slot));
        let mut stream = Stream {
            retention: WalRetention::new(
                Arc::clone(&ctx_name),
                cfg.slot.clone(),
                cfg.heartbeat,
                cfg.max_lag_bytes,
                links.health.clone(),
            ),
            client: query,
            types: TypeCache::default(),
            decoder: ChangeDecoder::new(ctx.clone()),
            images: StoredRowImages::new(self.store.clone(), &cfg.name),
            configured: cfg.tables.iter().cloned().collect(),
            ignored: HashSet::new(),
            start: 0,
            prev_commit: 0,
            // What is durable already: never report less to the server.
            acked: resume.map_or(0, |c| c.position.get()),
            snapshot_complete: true,
            sent: None,
            reconnect: cfg.clone(),
        };
        let mut backoff = Backoff::default();
        let mut first = true;
        loop {
            // Retried: from what the pipeline has (it keeps it), not from the
            // older durable checkpoint.
            let from = stream.sent.or(resume);
            let error = match self.begin(&mut stream, &ctx, from, first, &mut links).await {
                Ok(Begun::Streaming(session)) => {
                    links.health.send_modify(|h| h.snapshot_done = true);
                    return stream.run(session, links).await;
                }
                Ok(Begun::Stopped(session)) => return stream.finish(Some(session), links).await,
                Err(e) if e.is_connection_loss() => e,
                Err(e) => return Err(e),
            };
            first = false;
            let wait = backoff.next();
            tracing::warn!(
                source = %cfg.name,
                error = %error,
                detail = error.detail().unwrap_or_default(),
                retry_in = ?wait,
                "connection to the server lost before streaming; starting over"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = links.shutdown.changed() => return stream.finish(None, links).await,
            }
            if let Err(e) = stream.client.reopen_if_lost().await {
                tracing::warn!(source = %cfg.name, error = %e, "reconnect failed");
            }
        }
    }

    /// Everything before the stream: the publication, the tables' shapes,
    /// which slot, and the snapshot if one is due. `first` is false when
    /// this starts over after a lost connection.
    async fn begin(
        &self,
        stream: &mut Stream,
        ctx: &SourceContext,
        resume: Option<Checkpoint>,
        first: bool,
        links: &mut SourceLinks,
    ) -> Result<Begun, Error> {
        let cfg = &self.cfg;
        stream.client.reopen_if_lost().await?;
        let client = stream.client.client();
        slot::ensure_publication(client, &cfg.publication, &cfg.tables).await?;
        let mut shapes = Vec::with_capacity(cfg.tables.len());
        for table in &cfg.tables {
            shapes.push(catalog::table_shape(client, &mut stream.types, table).await?);
        }
        let existing = slot::slot_state(client, &cfg.slot).await?;
        let at_start = match &existing {
            None => SlotAtStart::Missing,
            Some(state) if state.is_lost() => SlotAtStart::Lost,
            Some(_) => SlotAtStart::Usable,
        };
        let decision = plan_start(at_start, resume, cfg.snapshot, cfg.on_slot_lost, first);
        if decision.resnapshot {
            tracing::error!(
                source = %cfg.name,
                slot = %cfg.slot,
                "the replication slot was lost, so changes were missed; on_slot_lost = \"resnapshot\": \
                 taking a new snapshot"
            );
        }
        if decision.interrupted {
            tracing::warn!(
                source = %cfg.name,
                "the previous snapshot was interrupted; it restarts from the beginning \
                 (rows already delivered are delivered again, after the changes made since)"
            );
        }
        let snapshot = SnapshotInputs {
            ctx,
            shapes: &shapes,
        };
        let session = match (decision.plan, &existing) {
            (StartPlan::SnapshotOnKeptSlot, Some(kept)) => {
                return self
                    .snapshot_on_kept_slot(stream, &snapshot, kept, resume, links)
                    .await;
            }
            (StartPlan::SnapshotOnNewSlot { drop_existing }, _) => {
                return self
                    .snapshot_on_new_slot(stream, &snapshot, drop_existing, links)
                    .await
                    .map(Begun::Streaming);
            }
            (StartPlan::FailSlotInvalidated, _) => {
                return Err(Error::SlotInvalidated {
                    slot: cfg.slot.clone(),
                });
            }
            (StartPlan::FailSlotMissing, _) => {
                return Err(Error::SlotMissing {
                    slot: cfg.slot.clone(),
                });
            }
            (StartPlan::Resume, Some(state)) => {
                let start = resume.map_or(state.confirmed_flush, |c| c.position.get());
                warn_if_advanced(cfg, start, state);
                stream.start = start.max(state.confirmed_flush);
                // The checkpoint's predecessor, unless the slot was moved
                // past it (then nothing before the slot can be read).
                stream.prev_commit = match resume {
                    Some(cp) if cp.position.get() == stream.start => cp.last_commit().get(),
                    _ => stream.start,
                };
                stream.acked = stream.acked.max(state.confirmed_flush);
                gated_session(cfg, &cfg.slot, stream.start, stream.acked).await?
            }
            (StartPlan::StreamOnNewSlot, _) => {
                let mut session = gated_session(cfg, &cfg.slot, 0, 0).await?;
                let created =
                    slot::create_slot(&mut session, &cfg.slot, SlotCreation::NoSnapshot).await?;
                stream.start = created.consistent_point;
                stream.prev_commit = created.consistent_point;
                stream.acked = created.consistent_point;
                session
            }
            (plan @ (StartPlan::SnapshotOnKeptSlot | StartPlan::Resume), None) => {
                unreachable!("plan_start chose {plan:?} for a slot that does not exist")
            }
        };
        Ok(Begun::Streaming(session))
    }

    /// The first snapshot (or one after the slot was lost): a new slot
    /// exports it and streams from its consistent point. Returns the session
    /// that created the slot, ready to stream.
    async fn snapshot_on_new_slot(
        &self,
        stream: &mut Stream,
        inputs: &SnapshotInputs<'_>,
        drop_existing: bool,
        links: &SourceLinks,
    ) -> Result<ReplicationClient, Error> {
        let cfg = &self.cfg;
        // Nothing of an earlier slot applies to the new one.
        self.store.reset_source(&cfg.name).map_err(Error::State)?;
        if drop_existing {
            slot::drop_slot(stream.client.client(), &cfg.slot).await?;
        }
        let mut session = gated_session(cfg, &cfg.slot, 0, 0).await?;
        let created =
            slot::create_slot(&mut session, &cfg.slot, SlotCreation::ExportSnapshot).await?;
        self.read_snapshot(stream, inputs, &created, links).await?;
        // The session that created the slot streams from its consistent
        // point (the server's default for a new slot), where the slot's
        // confirmed position already is.
        stream.acked = created.consistent_point;
        Ok(session)
    }

    /// A snapshot on the slot this source already has (see the module
    /// docs). `None` when shutdown came during the catch-up.
    async fn snapshot_on_kept_slot(
        &self,
        stream: &mut Stream,
        inputs: &SnapshotInputs<'_>,
        kept: &SlotState,
        resume: Option<Checkpoint>,
        links: &mut SourceLinks,
    ) -> Result<Begun, Error> {
        let cfg = &self.cfg;
        let from = resume.map_or(kept.confirmed_flush, |c| c.position.get());
        warn_if_advanced(cfg, from, kept);
        let from = from.max(kept.confirmed_flush);
        let prev_commit = match resume {
            Some(cp) if cp.position.get() == from => cp.last_commit().get(),
            _ => from,
        };
        // The temporary slot goes with its session, also on a crash.
        let temporary = slot::temporary_name(&cfg.slot);
        let mut exporter = gated_session(cfg, &temporary, 0, 0).await?;
        let created = slot::create_slot(
            &mut exporter,
            &temporary,
            SlotCreation::TemporaryExportSnapshot,
        )
        .await?;
        let point = created.consistent_point;
        tracing::info!(
            source = %cfg.name,
            slot = %cfg.slot,
            from = %Lsn::from_u64(from),
            to = %Lsn::from_u64(point),
            "catching up the slot to the new snapshot's point"
        );
        stream.start = from;
        stream.prev_commit = prev_commit;
        stream.acked = stream.acked.max(kept.confirmed_flush);
        stream.snapshot_complete = false;
        let catch_up = gated_session(cfg, &cfg.slot, from, stream.acked).await?;
        let (ended, catch_up) = stream.catch_up(catch_up, links, point).await?;
        if ended == Ended::Shutdown {
            return Ok(Begun::Stopped(catch_up));
        }
        drop(catch_up);
        self.read_snapshot(stream, inputs, &created, links).await?;
        drop(exporter);
        // Not yet durable: the session reports what is (`acked`) until the
        // pipeline confirms more.
        Ok(Begun::Streaming(
            gated_session(cfg, &cfg.slot, point, stream.acked).await?,
        ))
    }

    /// Reads the snapshot `created` exported, with a checkpoint before (so
    /// a crash mid-snapshot is recognised as one on the next start) and one
    /// after, at the snapshot's point.
    async fn read_snapshot(
        &self,
        stream: &mut Stream,
        inputs: &SnapshotInputs<'_>,
        created: &slot::CreatedSlot,
        links: &SourceLinks,
    ) -> Result<(), Error> {
        let cfg = &self.cfg;
        let point = created.consistent_point;
        let snapshot_name = created.snapshot_name.clone().unwrap_or_default();
        tracing::info!(source = %cfg.name, slot = %cfg.slot, consistent_point = %Lsn::from_u64(point), "snapshot started");
        // From here a restart knows the snapshot was cut off, and where.
        stream.start = point;
        stream.prev_commit = point;
        stream.snapshot_complete = false;
        stream.send_checkpoint(&links.out, point).await?;
        let client = stream.client.client();
        client
            .batch_execute(&slot::set_snapshot_sql(&snapshot_name))
            .await
            .map_err(|e| Error::query("opening the snapshot transaction", e))?;
        let rows = snapshot::Snapshot {
            client,
            connection: &cfg.connection,
            snapshot_name: &snapshot_name,
            options: cfg.snapshot_options,
            ctx: inputs.ctx,
            shapes: inputs.shapes,
            consistent_point: point,
            images: &stream.images,
            out: &links.out,
            health: &links.health,
        }
        .read()
        .await?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| Error::query("closing the snapshot transaction", e))?;
        tracing::info!(source = %cfg.name, rows, "snapshot finished; streaming");
        stream.snapshot_complete = true;
        stream.send_checkpoint(&links.out, point).await
    }
}

/// What a snapshot reads: the tables and how their events are named.
struct SnapshotInputs<'a> {
    ctx: &'a SourceContext,
    shapes: &'a [TableShape],
}

/// How the phase before the stream ended.
enum Begun {
    /// The session streams on (from the snapshot's point, after one).
    Streaming(ReplicationClient),
    /// Shutdown came during a catch-up (its session, to close).
    Stopped(ReplicationClient),
}

/// Warns when the slot is ahead of the checkpoint a stream resumes from.
fn warn_if_advanced(cfg: &PostgresSourceConfig, start: u64, state: &SlotState) {
    if start < state.confirmed_flush {
        tracing::warn!(
            source = %cfg.name,
            checkpoint = %Lsn::from_u64(start),
            slot_confirmed = %Lsn::from_u64(state.confirmed_flush),
            "the slot was advanced past this source's checkpoint by someone else; \
             changes in between cannot be read again"
        );
    }
}
