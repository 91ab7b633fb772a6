//! The PostgreSQL source: publication and slot, snapshot, then the stream.
//!
//! The source never confirms a position on its own. It sends events and
//! checkpoints to the pipeline; the pipeline reports back (on `durable`) the
//! position every sink has made durable, and only that is confirmed to the
//! server as the slot's flush position.

use std::collections::HashSet;
use std::sync::Arc;

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
use crate::toast::StoredRowImages;
use crate::value_mapping::MappingOptions;
use crate::{snapshot, Error};

/// Events per batch handed to the pipeline while streaming.
const BATCH: usize = 1024;

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
    pub mapping: MappingOptions,
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
        let ctx = SourceContext {
            name: Arc::from(cfg.name.as_str()),
            db: Arc::from(cfg.connection.dbname()),
            mapping: cfg.mapping,
        };
        let mut images = StoredRowImages::new(self.store.clone(), &cfg.name);
        let existing = slot::slot_state(&client, &cfg.slot).await?;
        let snapshot_done = resume.is_some_and(|c| c.snapshot_complete);
        let need_snapshot = match cfg.snapshot {
            SnapshotMode::Always => true,
            SnapshotMode::Initial => !snapshot_done,
            SnapshotMode::Never => false,
        };

        let (session, start) = if need_snapshot {
            if resume.is_some() && !snapshot_done {
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
            let rows = snapshot::read_tables(
                &client,
                &ctx,
                &shapes,
                created.consistent_point,
                &mut images,
                &links.out,
            )
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
        Stream {
            client,
            types,
            decoder: ChangeDecoder::new(ctx),
            images,
            configured: cfg.tables.iter().cloned().collect(),
            ignored: HashSet::new(),
            session,
            start,
        }
        .run(links)
        .await
    }

    async fn gated_session(&self, start: u64) -> Result<ReplicationClient, Error> {
        let repl = self
            .cfg
            .connection
            .replication(&self.cfg.slot, &self.cfg.publication, start);
        ReplicationClient::connect_gated(repl)
            .await
            .map_err(|source| Error::ReplicationConnect {
                target: self.cfg.connection.target(),
                source,
            })
    }
}

/// The streaming phase.
struct Stream {
    client: Client,
    types: TypeCache,
    decoder: ChangeDecoder,
    images: StoredRowImages,
    configured: HashSet<TableRef>,
    /// Relations the publication sends that this source does not capture.
    ignored: HashSet<u32>,
    session: ReplicationClient,
    /// Transactions committed before this were delivered by an earlier run.
    start: u64,
}

impl Stream {
    async fn run(mut self, mut links: SourceLinks) -> Result<(), Error> {
        self.session
            .start()
            .await
            .map_err(|source| Error::Stream { source })?;
        let mut batch: Vec<ChangeEvent> = Vec::with_capacity(BATCH);
        let mut skip_tx = false;
        let mut last_committed = self.start;
        let mut last_checkpoint = self.start;
        let mut durable_open = true;
        loop {
            let event = tokio::select! {
                biased;
                _ = links.shutdown.changed() => break,
                changed = links.durable.changed(), if durable_open => {
                    match changed {
                        Ok(()) => {
                            let pos = *links.durable.borrow_and_update();
                            self.session.update_applied_lsn(Lsn::from_u64(pos));
                        }
                        Err(_) => durable_open = false,
                    }
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
                    self.decoder.begin(TxContext {
                        xid,
                        commit_lsn: final_lsn.as_u64(),
                        commit_time_ms: commit_time_micros / 1000 + PG_EPOCH_MS,
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
                        if !batch.is_empty() {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                            send(&links.out, SourceItem::Events(full)).await?;
                        }
                        send(&links.out, checkpoint(end)).await?;
                        last_checkpoint = end;
                    }
                    last_committed = end;
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    // Between transactions everything before wal_end was sent:
                    // let the slot advance even when captured tables are idle.
                    let end = wal_end.as_u64();
                    if !self.decoder.in_transaction() && end > last_checkpoint {
                        send(&links.out, checkpoint(end)).await?;
                        last_checkpoint = end;
                    }
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => break,
            }
        }
        // Shutdown: hand over what we have, let the pipeline flush, then
        // confirm its final durable position to the server.
        if !batch.is_empty() {
            send(&links.out, SourceItem::Events(batch)).await?;
        }
        drop(links.out);
        while links.durable.changed().await.is_ok() {}
        let final_pos = *links.durable.borrow();
        if final_pos > 0 {
            self.session.update_applied_lsn(Lsn::from_u64(final_pos));
            // The worker sends status updates every second.
            tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
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
