//! Keeping the WAL the server retains for this source bounded.
//!
//! A slot pins WAL from its `restart_lsn` on. Two things keep that bounded:
//! confirming durable positions continuously (the stream does that), and
//! giving the slot something to confirm when the captured tables are idle
//! while other databases of the cluster write a lot. For the latter the
//! source emits a non-transactional logical message (a heartbeat) into its
//! own database; it comes back through the slot, and its position is
//! confirmed like a commit. This module also measures the slot's lag (bytes
//! and seconds) for metrics and `/status`, and warns above `max_lag_bytes`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;
pub use tributary_core::source::SourceHealth;
use tributary_core::Position;

/// Prefix of heartbeat messages (visible to other consumers of the slot).
pub(crate) const HEARTBEAT_PREFIX: &str = "tributary.heartbeat";

/// How often lag is measured when no heartbeat interval is set.
const MEASURE_EVERY: Duration = Duration::from_secs(10);

/// Heartbeats and lag measurement of one source.
pub(crate) struct WalRetention {
    source: Arc<str>,
    slot: String,
    heartbeat: Option<Duration>,
    max_lag_bytes: Option<u64>,
    /// Commits sent but not yet durable: (end position, commit time in ms).
    pending: VecDeque<(u64, i64)>,
    health: watch::Sender<SourceHealth>,
}

impl WalRetention {
    pub(crate) fn new(
        source: Arc<str>,
        slot: String,
        heartbeat: Option<Duration>,
        max_lag_bytes: Option<u64>,
        health: watch::Sender<SourceHealth>,
    ) -> Self {
        Self {
            source,
            slot,
            heartbeat,
            max_lag_bytes,
            pending: VecDeque::new(),
            health,
        }
    }

    /// The interval of [`WalRetention::tick`].
    pub(crate) fn interval(&self) -> Duration {
        self.heartbeat.unwrap_or(MEASURE_EVERY)
    }

    /// A transaction (or heartbeat) up to `end` was sent to the pipeline.
    pub(crate) fn sent(&mut self, end: u64, commit_time_ms: Option<i64>) {
        if let Some(ms) = commit_time_ms {
            self.pending.push_back((end, ms));
        }
        self.health.send_modify(|h| h.position = Position::new(end));
    }

    /// Everything up to `position` is durable in every sink.
    pub(crate) fn durable(&mut self, position: u64) {
        while self
            .pending
            .front()
            .is_some_and(|&(end, _)| end <= position)
        {
            self.pending.pop_front();
        }
        self.health
            .send_modify(|h| h.confirmed = Position::new(position));
    }

    /// Emits a heartbeat (if configured) and measures the lag.
    pub(crate) async fn tick(&mut self, client: &Client) {
        if self.heartbeat.is_some() {
            let prefix = [&HEARTBEAT_PREFIX as &(dyn tokio_postgres::types::ToSql + Sync)];
            let emit = client.execute(
                "SELECT pg_logical_emit_message(false, $1::text, ''::text)",
                &prefix,
            );
            match tokio::time::timeout(Duration::from_secs(5), emit).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(source = %self.source, error = %e, "heartbeat failed")
                }
                Err(_) => tracing::warn!(source = %self.source, "heartbeat timed out"),
            }
        }
        self.measure(client).await;
    }

    async fn measure(&mut self, client: &Client) {
        let slot = [&self.slot as &(dyn tokio_postgres::types::ToSql + Sync)];
        let query = client.query_opt(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8, \
                    (pg_current_wal_lsn() - restart_lsn)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1",
            &slot,
        );
        let row = match tokio::time::timeout(Duration::from_secs(5), query).await {
            Ok(Ok(Some(row))) => row,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::warn!(source = %self.source, error = %e, "could not measure slot lag");
                return;
            }
            Err(_) => return,
        };
        let lag_bytes = row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64;
        let retained = row.get::<_, Option<i64>>(1).unwrap_or(0).max(0) as u64;
        let now_ms = tributary_core::clock::now_ms();
        let lag_seconds = self
            .pending
            .front()
            .map_or(0.0, |&(_, ms)| ((now_ms - ms).max(0) as f64) / 1000.0);
        let alarm = self.max_lag_bytes.is_some_and(|max| lag_bytes > max);
        if alarm {
            tracing::warn!(
                source = %self.source,
                slot = %self.slot,
                lag = %crate::preflight::human_bytes(lag_bytes),
                max = %crate::preflight::human_bytes(self.max_lag_bytes.unwrap_or(0)),
                "slot lag is above max_lag_bytes: the server keeps WAL for this source"
            );
        }
        let labels = [("source", self.source.to_string())];
        metrics::gauge!("tributary_source_lag_bytes", &labels).set(lag_bytes as f64);
        metrics::gauge!("tributary_source_lag_seconds", &labels).set(lag_seconds);
        metrics::gauge!("tributary_source_retained_wal_bytes", &labels).set(retained as f64);
        metrics::gauge!("tributary_source_lag_alarm", &labels).set(if alarm { 1.0 } else { 0.0 });
        self.health.send_modify(|h| {
            h.lag_bytes = lag_bytes;
            h.lag_seconds = lag_seconds;
            h.retained_bytes = retained;
            h.lag_alarm = alarm;
        });
    }
}
