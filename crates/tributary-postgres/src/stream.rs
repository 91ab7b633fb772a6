//! The streaming phase: `pgoutput` messages from the slot, decoded into
//! events, handed to the pipeline with a checkpoint per transaction.
//!
//! A stream normally runs until shutdown. Before a new snapshot on a slot
//! that is kept (see [`crate::source`]), it runs as a *catch-up* instead:
//! bounded by the new snapshot's point, it delivers every transaction that
//! committed before that point and stops at the first one that did not, so
//! changes made between an interrupted snapshot and its restart (deletes
//! above all) reach the sinks, and none twice.

use std::collections::HashSet;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::mpsc;
use tributary_core::{ChangeEvent, Position, TableRef};
use tributary_state::Checkpoint;

use crate::catalog::{self, TableShape, TypeCache};
use crate::changes::{ChangeDecoder, TxContext, PG_EPOCH_MS};
use crate::pgoutput::{self, Message};
use crate::query_session::QuerySession;
use crate::slot;
use tributary_core::source::{SourceItem, SourceLinks};

use crate::settings::PostgresSourceConfig;
use crate::toast::StoredRowImages;
use crate::wal_retention::{WalRetention, HEARTBEAT_PREFIX};
use crate::Error;

/// Events per batch handed to the pipeline while streaming.
const BATCH: usize = 512;

/// First and longest wait before reconnecting a broken stream.
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Opens a replication session on `slot` that streams from `start` once
/// started, reporting `ack` as flushed until the pipeline makes more
/// durable. `ack` must be durable already: the server takes a reported
/// flush position as the slot's new `confirmed_flush_lsn`.
pub(crate) async fn gated_session(
    cfg: &PostgresSourceConfig,
    slot: &str,
    start: u64,
    ack: u64,
) -> Result<ReplicationClient, Error> {
    let repl = cfg
        .connection
        .replication(slot, &cfg.publication, start)
        .with_ack_lsn(Lsn::from_u64(ack));
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

/// Waits between attempts to reconnect: 1 s, doubling up to 30 s.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self
            .last
            .map_or(RECONNECT_FIRST, |w| (w * 2).min(RECONNECT_MAX));
        self.last = Some(wait);
        wait
    }
}

/// How a stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Shutdown was asked for (or the server stopped the stream).
    Shutdown,
    /// A catch-up reached its bound.
    Reached,
}

/// The last transaction committed among the events not yet sent.
struct Pending {
    end: u64,
    commit_time_ms: i64,
}

/// What a stream decodes with; lent to the snapshot between a catch-up and
/// the stream after it.
pub(crate) struct Stream {
    pub(crate) retention: WalRetention,
    /// The query connection (catalog look-ups, heartbeats, lag), reopened
    /// with the replication session after a break.
    pub(crate) client: QuerySession,
    pub(crate) types: TypeCache,
    pub(crate) decoder: ChangeDecoder,
    pub(crate) images: StoredRowImages,
    pub(crate) configured: HashSet<TableRef>,
    /// Relations the publication sends that this source does not capture.
    pub(crate) ignored: HashSet<u32>,
    /// Transactions committed up to here were sent (by this or an earlier
    /// run); a new session starts here.
    pub(crate) start: u64,
    /// End of the last transaction committed before `start` (or the
    /// snapshot's point): the predecessor the next transaction names
    /// (`source.sequence[0]`). Kept with each checkpoint, so a replay from
    /// it writes the same payloads as the first delivery.
    pub(crate) prev_commit: u64,
    /// Highest position reported to the server as flushed: a new session
    /// reports it again, never less (PostgreSQL before 17 would move the
    /// slot's `confirmed_flush_lsn` back).
    pub(crate) acked: u64,
    /// Whether the checkpoints sent say the snapshot is complete (not during
    /// a catch-up before one).
    pub(crate) snapshot_complete: bool,
    /// The last checkpoint handed to the pipeline, if any: where a source
    /// that starts over after a lost connection resumes.
    pub(crate) sent: Option<Checkpoint>,
    /// Settings to open a new session after the stream broke.
    pub(crate) reconnect: PostgresSourceConfig,
}

impl Stream {
    /// Streams until shutdown, then confirms the final durable position.
    pub(crate) async fn run(
        mut self,
        mut session: ReplicationClient,
        mut links: SourceLinks,
    ) -> Result<(), Error> {
        self.drive(&mut session, &mut links, None).await?;
        self.finish(Some(session), links).await
    }

    /// Delivers every transaction that committed (its commit record starts)
    /// before `until`, from `self.start` on, then closes the session.
    /// Transactions from `until` on are left to a session that starts there.
    pub(crate) async fn catch_up(
        &mut self,
        mut session: ReplicationClient,
        links: &mut SourceLinks,
        until: u64,
    ) -> Result<(Ended, ReplicationClient), Error> {
        let ended = if self.start >= until {
            Ended::Reached
        } else {
            self.drive(&mut session, links, Some(until)).await?
        };
        Ok((ended, session))
    }

    /// Streams, reopening a broken stream with backoff from the last
    /// position sent, unless the slot itself is gone.
    async fn drive(
        &mut self,
        session: &mut ReplicationClient,
        links: &mut SourceLinks,
        until: Option<u64>,
    ) -> Result<Ended, Error> {
        let mut backoff = Backoff::default();
        loop {
            let began = std::time::Instant::now();
            let error = match self.stream(session, links, until).await {
                Ok(ended) => return Ok(ended),
                Err(e) if e.is_connection_loss() => e,
                Err(e) => return Err(e),
            };
            // Close the replication session at once, whichever connection
            // broke: a server shutting down waits for it (see
            // `query_session`). Its unconfirmed changes come again.
            session.abort();
            if let Some(gone) = slot_gone(&self.reconnect).await {
                return Err(gone);
            }
            if began.elapsed() > RECONNECT_MAX {
                // It had streamed a while: a new break, not the same one.
                backoff = Backoff::default();
            }
            let wait = backoff.next();
            tracing::warn!(
                source = %self.reconnect.name,
                error = %error,
                retry_in = ?wait,
                "connection to the server lost; reconnecting"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = links.shutdown.changed() => return Ok(Ended::Shutdown),
            }
            if let Err(e) = self.client.reopen_if_lost().await {
                tracing::warn!(source = %self.reconnect.name, error = %e, "reconnect failed");
                continue;
            }
            let slot = self.reconnect.slot.clone();
            match gated_session(&self.reconnect, &slot, self.start, self.acked).await {
                Ok(new) => *session = new,
                Err(e) => {
                    tracing::warn!(source = %self.reconnect.name, error = %e, "reconnect failed")
                }
            }
        }
    }

    /// One replication session, until shutdown, the bound `until` or an
    /// error.
    async fn stream(
        &mut self,
        session: &mut ReplicationClient,
        links: &mut SourceLinks,
        until: Option<u64>,
    ) -> Result<Ended, Error> {
        self.decoder.abandon();
        session
            .start()
            .await
            .map_err(|source| Error::Stream { source })?;
        let reached = |lsn: u64| until.is_some_and(|u| lsn >= u);
        let mut batch: Vec<ChangeEvent> = Vec::with_capacity(BATCH);
        let mut skip_tx = false;
        let mut last_committed = self.prev_commit;
        let mut durable_open = true;
        let mut commit_time_ms = 0;
        let mut stopping = *links.shutdown.borrow();
        let mut ticks = tokio::time::interval(self.retention.interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Committed transactions not yet handed to the pipeline: while the
        // channel is full they accumulate, so a slow sink gets bigger batches
        // (fewer fsyncs) instead of one item per small transaction.
        let mut pending: Option<Pending> = None;
        let ended = loop {
            if stopping && !self.decoder.in_transaction() {
                break Ended::Shutdown;
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
                            let pos = links.durable.borrow_and_update().get();
                            if pos > self.acked {
                                self.acked = pos;
                                session.update_applied_lsn(Lsn::from_u64(pos));
                            }
                            self.retention.durable(pos);
                        }
                        Err(_) => durable_open = false,
                    }
                    continue;
                }
                _ = ticks.tick() => {
                    self.retention.tick(self.client.client()).await;
                    continue;
                }
                // The server ended the query connection (a restart or
                // shutdown begins with that): reconnect both.
                () = self.client.lost() => {
                    return Err(Error::QueryConnectionLost {
                        target: self.reconnect.connection.target(),
                    });
                }
                room = links.out.reserve_many(2), if pending.is_some() => {
                    // The pipeline caught up: hand over what accumulated.
                    drop(room.map_err(|_| Error::PipelineClosed)?);
                    self.flush(&mut batch, &mut pending, &links.out).await?;
                    continue;
                }
                ev = session.recv() => ev.map_err(|source| Error::Stream { source })?,
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
                    if reached(final_lsn.as_u64()) {
                        // Committed at or after the bound: not this
                        // session's to send.
                        break Ended::Reached;
                    }
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
                            self.deliver(&links.out, SourceItem::Events(full)).await?;
                        }
                    }
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    self.decoder.commit();
                    let end = end_lsn.as_u64();
                    last_committed = end;
                    if skip_tx {
                        // Sent by an earlier session or run already.
                        self.prev_commit = end;
                    } else {
                        pending = Some(Pending {
                            end,
                            commit_time_ms,
                        });
                        if batch.len() >= BATCH || links.out.capacity() >= 2 {
                            self.flush(&mut batch, &mut pending, &links.out).await?;
                        }
                    }
                }
                // The server sends its decoding position (`sentPtr`) in
                // keepalives: every transaction that committed before it has
                // been sent.
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    let at = wal_end.as_u64();
                    if self
                        .passed(at, until, &mut batch, &mut pending, &links.out)
                        .await?
                    {
                        break Ended::Reached;
                    }
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
                    let at = lsn.as_u64();
                    if self
                        .passed(at, until, &mut batch, &mut pending, &links.out)
                        .await?
                    {
                        break Ended::Reached;
                    }
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => break Ended::Shutdown,
            }
        };
        self.flush(&mut batch, &mut pending, &links.out).await?;
        Ok(ended)
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
            self.deliver(out, SourceItem::Events(full)).await?;
        }
        if let Some(p) = pending.take() {
            // The checkpoint names this transaction as the predecessor of
            // the next; until it is sent, a resumed session must still
            // name the one before (the ids' `sequence` depends on it).
            let before = std::mem::replace(&mut self.prev_commit, p.end);
            if let Err(e) = self.send_checkpoint(out, p.end).await {
                self.prev_commit = before;
                return Err(e);
            }
            self.retention.sent(p.end, Some(p.commit_time_ms));
            self.start = p.end;
        }
        Ok(())
    }

    /// The server has sent every transaction that committed before `at`:
    /// sends what accumulated and a checkpoint there (at most the bound).
    /// Returns whether a bounded stream is done.
    async fn passed(
        &mut self,
        at: u64,
        until: Option<u64>,
        batch: &mut Vec<ChangeEvent>,
        pending: &mut Option<Pending>,
        out: &mpsc::Sender<SourceItem>,
    ) -> Result<bool, Error> {
        self.flush(batch, pending, out).await?;
        self.sent_up_to(until.map_or(at, |u| at.min(u)), out)
            .await?;
        Ok(until.is_some_and(|u| at >= u) && !self.decoder.in_transaction())
    }

    /// Between transactions, everything before `end` was sent: a checkpoint
    /// there lets the slot advance even when the captured tables are idle.
    async fn sent_up_to(&mut self, end: u64, out: &mpsc::Sender<SourceItem>) -> Result<(), Error> {
        if !self.decoder.in_transaction() && end > self.start {
            self.send_checkpoint(out, end).await?;
            self.retention.sent(end, None);
            self.start = end;
        }
        Ok(())
    }

    /// Hands `item` to the pipeline. While the pipeline is full (a sink is
    /// slow or down), the query connection is still watched: when the
    /// server ends it (a fast shutdown ends regular connections first, then
    /// waits for its WAL senders' confirmations), the session is given up
    /// rather than held open, so the server can stop; streaming resumes
    /// from the last checkpoint sent once it is back.
    async fn deliver(
        &mut self,
        out: &mpsc::Sender<SourceItem>,
        item: SourceItem,
    ) -> Result<(), Error> {
        tokio::select! {
            sent = out.send(item) => return sent.map_err(|_| Error::PipelineClosed),
            () = self.client.lost() => {}
        }
        Err(Error::QueryConnectionLost {
            target: self.reconnect.connection.target(),
        })
    }

    /// Sends a checkpoint at `position`, with the predecessor and snapshot
    /// state as they are now.
    pub(crate) async fn send_checkpoint(
        &mut self,
        out: &mpsc::Sender<SourceItem>,
        position: u64,
    ) -> Result<(), Error> {
        let checkpoint = Checkpoint {
            position: Position::new(position),
            snapshot_complete: self.snapshot_complete,
            last_commit: Some(Position::new(self.prev_commit)),
        };
        self.deliver(out, SourceItem::Checkpoint(checkpoint))
            .await?;
        self.sent = Some(checkpoint);
        Ok(())
    }

    /// Shutdown: let the pipeline flush what it has, then confirm its final
    /// durable position to the server (on `session`; without one, the next
    /// start confirms it).
    pub(crate) async fn finish(
        self,
        session: Option<ReplicationClient>,
        mut links: SourceLinks,
    ) -> Result<(), Error> {
        drop(links.out);
        while links.durable.changed().await.is_ok() {}
        let Some(mut session) = session else {
            return Ok(());
        };
        let final_pos = links.durable.borrow().get().max(self.acked);
        if final_pos > 0 {
            session.update_applied_lsn(Lsn::from_u64(final_pos));
            // The worker sends status updates every second.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        let _ = session.shutdown().await;
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
                let shape: TableShape = catalog::shape(
                    self.client.client(),
                    &mut self.types,
                    table,
                    rel.oid,
                    names,
                    &oids,
                )
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
