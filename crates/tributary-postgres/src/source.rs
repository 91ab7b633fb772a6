//! The PostgreSQL source: publication and slot, snapshot, then the stream.
//!
//! The source never confirms a position on its own. It sends events and
//! checkpoints to the pipeline; the pipeline reports back (on `durable`) the
//! position every sink has made durable, and only that is confirmed to the
//! server as the slot's flush position.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tributary_core::{ChangeEvent, TableRef};
use tributary_state::{Checkpoint, StateStore};

use crate::catalog::{self, TableShape, TypeCache};
use crate::changes::{ChangeDecoder, SourceContext, TxContext, PG_EPOCH_MS};
use crate::connection::ConnectionConfig;
use crate::pgoutput::{self, Message};
use crate::slot::{self, SlotState};
use crate::snapshot::{self, SnapshotOptions};
use crate::toast::StoredRowImages;
use crate::value_mapping::MappingOptions;
use crate::wal_retention::{SourceHealth, WalRetention, HEARTBEAT_PREFIX};
use crate::Error;

/// Events per batch handed to the pipeline while streaming.
const BATCH: usize = 512;

/// When to take a snapshot (`snapshot` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Once, before the first stream; again only if it was interrupted.
    #[default]
    Initial,
    /// Never: stream changes from the slot's position only.
    Never,
    /// At every start (also the explicit way to recover from a lost slot).
    Always,
}

/// Settings of one PostgreSQL source.
#[derive(Debug, Clone)]
pub struct PostgresSourceConfig {
    pub name: String,
    pub connection: ConnectionConfig,
    pub tables: Vec<TableRef>,
    pub slot: String,
    pub publication: String,
    pub snapshot: SnapshotMode,
    /// How the snapshot spreads over sessions and chunks.
    pub snapshot_options: SnapshotOptions,
    pub mapping: MappingOptions,
    /// Interval of heartbeat messages; `None`: none.
    pub heartbeat: Option<std::time::Duration>,
    /// Slot lag above which a warning is logged and the alarm metric set.
    pub max_lag_bytes: Option<u64>,
    pub on_slot_lost: SlotLost,
}

/// What to do when the slot was invalidated or dropped after streaming
/// began (`on_slot_lost`): changes in between are gone either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotLost {
    /// Stop with an error (the default: a human decides).
    #[default]
    Fail,
    /// Log an error, create a new slot and take a fresh snapshot.
    Resnapshot,
}

/// What the source hands the pipeline, in order.
#[derive(Debug)]
pub enum SourceItem {
    Events(Vec<ChangeEvent>),
    /// Every event of every transaction committed up to `position` has been
    /// sent; once durable in all sinks, `position` may be confirmed.
    Checkpoint {
        position: u64,
        snapshot_complete: bool,
    },
}

pub struct PostgresSource {
    cfg: PostgresSourceConfig,
    store: StateStore,
}

/// Channels between the source and the pipeline.
pub struct SourceLinks {
    pub out: mpsc::Sender<SourceItem>,
    /// Position durable in every sink (closed when the pipeline is done).
    pub durable: watch::Receiver<u64>,
    /// Becomes `true` on SIGINT/SIGTERM.
    pub shutdown: watch::Receiver<bool>,
    /// Positions, lag and snapshot progress, for `/status`.
    pub health: watch::Sender<SourceHealth>,
}

impl PostgresSource {
    pub fn new(cfg: PostgresSourceConfig, store: StateStore) -> Self {
        Self { cfg, store }
    }

    /// Runs until shutdown or a fatal error.
    pub async fn run(self, resume: Option<Checkpoint>, links: SourceLinks) -> Result<(), Error> {
        let cfg = &self.cfg;
        let client = cfg.connection.connect().await?;
        slot::ensure_publication(&client, &cfg.publication, &cfg.tables).await?;
        let mut types = TypeCache::default();
        let mut shapes = Vec::with_capacity(cfg.tables.len());
        for table in &cfg.tables {
            shapes.push(catalog::table_shape(&client, &mut types, table).await?);
        }
        let ctx_name: Arc<str> = Arc::from(cfg.name.as_str());
        let ctx = SourceContext {
            name: Arc::clone(&ctx_name),
            db: Arc::from(cfg.connection.dbname()),
            mapping: cfg.mapping,
        };
        links.health.send_modify(|h| h.slot.clone_from(&cfg.slot));
        let images = StoredRowImages::new(self.store.clone(), &cfg.name);
        let existing = slot::slot_state(&client, &cfg.slot).await?;
        let snapshot_done = resume.is_some_and(|c| c.snapshot_complete);
        let lost = match &existing {
            Some(state) => state.wal_status.as_deref() == Some("lost"),
            None => resume.is_some(),
        };
        let resnapshot = lost && cfg.on_slot_lost == SlotLost::Resnapshot;
        if resnapshot {
            tracing::error!(
                source = %cfg.name,
                slot = %cfg.slot,
                "the replication slot was lost, so changes were missed; on_slot_lost = \"resnapshot\": \
                 taking a new snapshot"
            );
        }
        let need_snapshot = resnapshot
            || match cfg.snapshot {
                SnapshotMode::Always => true,
                SnapshotMode::Initial => !snapshot_done,
                SnapshotMode::Never => false,
            };

        let (session, start) = if need_snapshot {
            if resume.is_some() && !snapshot_done && !resnapshot {
                tracing::warn!(
                    source = %cfg.name,
                    "the previous snapshot was interrupted; it restarts from the beginning \
                     (rows already delivered are delivered again)"
                );
            }
            self.store.reset_source(&cfg.name).map_err(Error::State)?;
            if existing.is_some() {
                slot::drop_slot(&client, &cfg.slot).await?;
            }
            let mut session = self.gated_session(0).await?;
            let created = slot::create_slot(&mut session, &cfg.slot, true).await?;
            let snapshot_name = created.snapshot_name.clone().unwrap_or_default();
            tracing::info!(source = %cfg.name, slot = %cfg.slot, consistent_point = %Lsn::from_u64(created.consistent_point), "snapshot started");
            // Recorded first, so a crash mid-snapshot is recognised as one
            // on the next start (the slot exists, the snapshot is incomplete).
            links
                .out
                .send(SourceItem::Checkpoint {
                    position: created.consistent_point,
                    snapshot_complete: false,
                })
                .await
                .map_err(|_| Error::PipelineClosed)?;
            client
                .batch_execute(&slot::set_snapshot_sql(&snapshot_name))
                .await
                .map_err(|e| Error::query("opening the snapshot transaction", e))?;
            let rows = snapshot::Snapshot {
                client: &client,
                connection: &cfg.connection,
                snapshot_name: &snapshot_name,
                options: cfg.snapshot_options,
                ctx: &ctx,
                shapes: &shapes,
                consistent_point: created.consistent_point,
                images: &images,
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
            links
                .out
                .send(SourceItem::Checkpoint {
                    position: created.consistent_point,
                    snapshot_complete: true,
                })
                .await
                .map_err(|_| Error::PipelineClosed)?;
            (session, created.consistent_point)
        } else {
            match (&existing, resume) {
                (
                    Some(SlotState {
                        wal_status: Some(s),
                        ..
                    }),
                    _,
                ) if s == "lost" => {
                    return Err(Error::SlotInvalidated {
                        slot: cfg.slot.clone(),
                    });
                }
                (None, Some(_)) => {
                    return Err(Error::SlotMissing {
                        slot: cfg.slot.clone(),
                    });
                }
                (None, None) => {
                    let mut session = self.gated_session(0).await?;
                    let created = slot::create_slot(&mut session, &cfg.slot, false).await?;
                    (session, created.consistent_point)
                }
                (Some(state), resume) => {
                    let start = resume.map_or(state.confirmed_flush, |c| c.position);
                    if start < state.confirmed_flush {
                        tracing::warn!(
                            source = %cfg.name,
                            checkpoint = %Lsn::from_u64(start),
                            slot_confirmed = %Lsn::from_u64(state.confirmed_flush),
                            "the slot was advanced past this source's checkpoint by someone else; \
                             changes in between cannot be read again"
                        );
                    }
                    (self.gated_session(start).await?, start)
                }
            }
        };
        links.health.send_modify(|h| h.snapshot_done = true);
        let retention = WalRetention::new(
            Arc::clone(&ctx_name),
            cfg.slot.clone(),
            cfg.heartbeat,
            cfg.max_lag_bytes,
            links.health.clone(),
        );
        Stream {
            retention,
            client,
            types,
            decoder: ChangeDecoder::new(ctx),
            images,
            configured: cfg.tables.iter().cloned().collect(),
            ignored: HashSet::new(),
            session,
            start,
            reconnect: cfg.clone(),
        }
        .run(links)
        .await
    }

    async fn gated_session(&self, start: u64) -> Result<ReplicationClient, Error> {
        gated_session(&self.cfg, start).await
    }
}

async fn gated_session(cfg: &PostgresSourceConfig, start: u64) -> Result<ReplicationClient, Error> {
    let repl = cfg
        .connection
        .replication(&cfg.slot, &cfg.publication, start);
    ReplicationClient::connect_gated(repl)
        .await
        .map_err(|source| Error::ReplicationConnect {
            target: cfg.connection.target(),
            source,
        })
}

/// Why a replication stream broke, when the slot is the reason: dropped or
/// invalidated. `None` when the slot is fine (or the server unreachable).
async fn slot_gone(cfg: &PostgresSourceConfig) -> Option<Error> {
    let client = cfg.connection.connect().await.ok()?;
    match slot::slot_state(&client, &cfg.slot).await.ok()? {
        None => Some(Error::SlotMissing {
            slot: cfg.slot.clone(),
        }),
        Some(state) if state.wal_status.as_deref() == Some("lost") => {
            Some(Error::SlotInvalidated {
                slot: cfg.slot.clone(),
            })
        }
        Some(_) => None,
    }
}

/// First and longest wait before reconnecting a broken stream.
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// The last transaction committed among the events not yet sent.
struct Pending {
    end: u64,
    commit_time_ms: i64,
}

/// The streaming phase.
struct Stream {
    retention: WalRetention,
    client: Client,
    types: TypeCache,
    decoder: ChangeDecoder,
    images: StoredRowImages,
    configured: HashSet<TableRef>,
    /// Relations the publication sends that this source does not capture.
    ignored: HashSet<u32>,
    session: ReplicationClient,
    /// Transactions committed up to here were sent (by this or an earlier
    /// run); a new session starts here.
    start: u64,
    /// Settings to open a new session after the stream broke.
    reconnect: PostgresSourceConfig,
}

impl Stream {
    /// Streams until shutdown. A broken stream is reopened with backoff
    /// from the last position sent, unless the slot itself is gone.
    async fn run(mut self, mut links: SourceLinks) -> Result<(), Error> {
        let mut wait = RECONNECT_FIRST;
        loop {
            let began = std::time::Instant::now();
            let error = match self.stream(&mut links).await {
                Ok(()) => break,
                Err(e @ (Error::Stream { .. } | Error::ReplicationConnect { .. })) => e,
                Err(e) => return Err(e),
            };
            if let Some(gone) = slot_gone(&self.reconnect).await {
                return Err(gone);
            }
            if began.elapsed() > RECONNECT_MAX {
                wait = RECONNECT_FIRST;
            }
            tracing::warn!(
                source = %self.reconnect.name,
                error = %error,
                retry_in = ?wait,
                "replication stream broke; reconnecting"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = links.shutdown.changed() => break,
            }
            wait = (wait * 2).min(RECONNECT_MAX);
            match gated_session(&self.reconnect, self.start).await {
                Ok(session) => self.session = session,
                Err(e) => {
                    tracing::warn!(source = %self.reconnect.name, error = %e, "reconnect failed")
                }
            }
        }
        self.finish(links).await
    }

    /// One replication session, until shutdown (`Ok`) or an error.
    async fn stream(&mut self, links: &mut SourceLinks) -> Result<(), Error> {
        self.decoder.abandon();
        self.session
            .start()
            .await
            .map_err(|source| Error::Stream { source })?;
        let mut batch: Vec<ChangeEvent> = Vec::with_capacity(BATCH);
        let mut skip_tx = false;
        let mut last_committed = self.start;
        let mut durable_open = true;
        let mut commit_time_ms = 0;
        let mut stopping = *links.shutdown.borrow();
        let mut ticks = tokio::time::interval(self.retention.interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Committed transactions not yet handed to the pipeline: while the
        // channel is full they accumulate, so a slow sink gets bigger batches
        // (fewer fsyncs) instead of one item per small transaction.
        let mut pending: Option<Pending> = None;
        loop {
            if stopping && !self.decoder.in_transaction() {
                self.flush(&mut batch, &mut pending, &links.out).await?;
                break;
            }
            let event = tokio::select! {
                biased;
                // On a signal, the transaction being read is finished first,
                // so a restart never sends part of it again.
                _ = links.shutdown.changed(), if !stopping => {
                    stopping = true;
                    continue;
                }
                changed = links.durable.changed(), if durable_open => {
                    match changed {
                        Ok(()) => {
                            let pos = *links.durable.borrow_and_update();
                            self.session.update_applied_lsn(Lsn::from_u64(pos));
                            self.retention.durable(pos);
                        }
                        Err(_) => durable_open = false,
                    }
                    continue;
                }
                _ = ticks.tick() => {
                    self.retention.tick(&self.client).await;
                    continue;
                }
                room = links.out.reserve_many(2), if pending.is_some() => {
                    // The pipeline caught up: hand over what accumulated.
                    drop(room.map_err(|_| Error::PipelineClosed)?);
                    self.flush(&mut batch, &mut pending, &links.out).await?;
                    continue;
                }
                ev = self.session.recv() => ev.map_err(|source| Error::Stream { source })?,
            };
            let Some(event) = event else {
                return Err(Error::Stream {
                    source: pgwire_replication::PgWireError::Task(
                        "the server ended the replication stream".into(),
                    ),
                });
            };
            match event {
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => {
                    skip_tx = final_lsn.as_u64() < self.start;
                    commit_time_ms = commit_time_micros / 1000 + PG_EPOCH_MS;
                    self.decoder.begin(TxContext {
                        xid,
                        commit_lsn: final_lsn.as_u64(),
                        commit_time_us: commit_time_micros + PG_EPOCH_MS * 1000,
                        last_committed,
                    });
                }
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    let msg = pgoutput::decode(&data)?;
                    if let Some(events) = self.change(msg, wal_start.as_u64(), skip_tx).await? {
                        batch.extend(events);
                        if batch.len() >= BATCH {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                            send(&links.out, SourceItem::Events(full)).await?;
                        }
                    }
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    self.decoder.commit();
                    let end = end_lsn.as_u64();
                    if !skip_tx {
                        pending = Some(Pending {
                            end,
                            commit_time_ms,
                        });
                        if batch.len() >= BATCH || links.out.capacity() >= 2 {
                            self.flush(&mut batch, &mut pending, &links.out).await?;
                        }
                    }
                    last_committed = end;
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    self.flush(&mut batch, &mut pending, &links.out).await?;
                    self.sent_up_to(wal_end.as_u64(), &links.out).await?;
                }
                ReplicationEvent::Message {
                    transactional: false,
                    lsn,
                    prefix,
                    ..
                } if prefix == HEARTBEAT_PREFIX => {
                    // Our heartbeat came back through the slot: every
                    // transaction committed before it was sent, so its
                    // position can be confirmed once durable.
                    self.flush(&mut batch, &mut pending, &links.out).await?;
                    self.sent_up_to(lsn.as_u64(), &links.out).await?;
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => break,
            }
        }
        self.flush(&mut batch, &mut pending, &links.out).await
    }

    /// Sends the accumulated events and the checkpoint of the last
    /// transaction committed among them. Only then is that transaction
    /// "sent": a stream that breaks before drops the batch and the new
    /// session starts before it, so nothing is lost.
    async fn flush(
        &mut self,
        batch: &mut Vec<ChangeEvent>,
        pending: &mut Option<Pending>,
        out: &mpsc::Sender<SourceItem>,
    ) -> Result<(), Error> {
        if !batch.is_empty() {
            let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
            send(out, SourceItem::Events(full)).await?;
        }
        if let Some(p) = pending.take() {
            send(out, checkpoint(p.end)).await?;
            self.retention.sent(p.end, Some(p.commit_time_ms));
            self.start = p.end;
        }
        Ok(())
    }

    /// Between transactions, everything before `end` was sent: a checkpoint
    /// there lets the slot advance even when the captured tables are idle.
    async fn sent_up_to(&mut self, end: u64, out: &mpsc::Sender<SourceItem>) -> Result<(), Error> {
        if !self.decoder.in_transaction() && end > self.start {
            send(out, checkpoint(end)).await?;
            self.retention.sent(end, None);
            self.start = end;
        }
        Ok(())
    }

    /// Shutdown: let the pipeline flush what it has, then confirm its final
    /// durable position to the server.
    async fn finish(mut self, mut links: SourceLinks) -> Result<(), Error> {
        drop(links.out);
        while links.durable.changed().await.is_ok() {}
        let final_pos = *links.durable.borrow();
        if final_pos > 0 {
            self.session.update_applied_lsn(Lsn::from_u64(final_pos));
            // The worker sends status updates every second.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        let _ = self.session.shutdown().await;
        Ok(())
    }

    /// Decodes one change message; `None` for messages without events.
    async fn change(
        &mut self,
        msg: Message,
        lsn: u64,
        skip_tx: bool,
    ) -> Result<Option<Vec<ChangeEvent>>, Error> {
        let images = &mut self.images;
        let events = match msg {
            Message::Relation(rel) => {
                let table = TableRef::new(rel.namespace.clone(), rel.name.clone());
                if !self.configured.contains(&table) {
                    self.ignored.insert(rel.oid);
                    return Ok(None);
                }
                self.ignored.remove(&rel.oid);
                let names = rel.columns.iter().map(|c| c.name.clone()).collect();
                let oids: Vec<u32> = rel.columns.iter().map(|c| c.type_oid).collect();
                let shape: TableShape =
                    catalog::shape(&self.client, &mut self.types, table, rel.oid, names, &oids)
                        .await?;
                self.decoder.set_relation(rel.oid, shape);
                return Ok(None);
            }
            _ if skip_tx => return Ok(None),
            Message::Insert { relation, new } if !self.ignored.contains(&relation) => {
                self.decoder.insert(relation, &new, lsn, images)?
            }
            Message::Update { relation, old, new } if !self.ignored.contains(&relation) => self
                .decoder
                .update(relation, old.as_ref(), &new, lsn, images)?,
            Message::Delete { relation, old } if !self.ignored.contains(&relation) => {
                self.decoder.delete(relation, &old, lsn)?
            }
            Message::Truncate { relations, .. } => self.decoder.truncate(&relations, lsn)?,
            _ => return Ok(None),
        };
        Ok(Some(events))
    }
}

fn checkpoint(position: u64) -> SourceItem {
    SourceItem::Checkpoint {
        position,
        snapshot_complete: true,
    }
}

async fn send(out: &mpsc::Sender<SourceItem>, item: SourceItem) -> Result<(), Error> {
    out.send(item).await.map_err(|_| Error::PipelineClosed)
}
