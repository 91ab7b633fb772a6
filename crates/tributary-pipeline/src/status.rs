//! What a running pipeline reports about itself: per source the positions,
//! lag and snapshot progress (from the source's [`SourceHealth`]), per sink
//! the counters and the last error. Served as JSON on `GET /status`, and
//! rendered by `tributary status`. Metrics for Prometheus are recorded here
//! too, through the `metrics` facade (a no-op unless `[admin]` installs the
//! exporter).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tributary_core::source::SourceHealth;
use tributary_core::{ChangeEvent, Op, TableRef};
use tributary_views::ViewSet;

/// The process's resident set size (Linux `/proc/self/status`), if known.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Counters of one sink.
#[derive(Debug, Clone, Default)]
struct SinkStats {
    events: u64,
    errors: u64,
    last_ack_ms: Option<i64>,
    last_error: Option<String>,
}

/// Shared between the pipeline (writer) and the admin endpoint (reader).
#[derive(Default)]
pub struct StatusBoard {
    sources: Mutex<BTreeMap<String, watch::Receiver<SourceHealth>>>,
    sinks: Mutex<BTreeMap<String, SinkStats>>,
    /// The views and how long their rehydration took.
    views: Mutex<Option<(Arc<ViewSet>, Duration)>>,
}

impl StatusBoard {
    pub(crate) fn add_source(&self, name: &str, health: watch::Receiver<SourceHealth>) {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), health);
    }

    pub(crate) fn set_views(&self, views: Arc<ViewSet>, rehydration: Duration) {
        *self.views.lock().unwrap_or_else(|e| e.into_inner()) = Some((views, rehydration));
    }

    /// Per view: its rows, the transactions it reflects, the sources it
    /// reads; with the rehydration time and the process's resident memory
    /// (the view state is most of it).
    fn views_json(&self) -> Value {
        let views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        let Some((set, rehydration)) = views.as_ref() else {
            return Value::Null;
        };
        let each: serde_json::Map<String, Value> = set
            .views()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let state = set.read(i);
                (
                    v.name.clone(),
                    json!({
                        "rows": state.count,
                        "time": state.time,
                        "errors": state.errors.len(),
                        "sources": v.sources,
                    }),
                )
            })
            .collect();
        json!({
            "views": each,
            "rehydration_ms": rehydration.as_millis() as u64,
            "resident_bytes": resident_bytes(),
        })
    }

    pub(crate) fn add_sink(&self, name: &str) {
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default();
    }

    /// A batch is durable in `sink`; records the sink's counters and metrics.
    pub(crate) fn sink_wrote(&self, sink: &str, events: usize, took: Duration) {
        let labels = [("sink", sink.to_owned())];
        metrics::counter!("tributary_sink_events_total", &labels).increment(events as u64);
        metrics::histogram!("tributary_sink_batch_seconds", &labels).record(took.as_secs_f64());
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let stats = sinks.entry(sink.to_owned()).or_default();
        stats.events += events as u64;
        stats.last_ack_ms = Some(tributary_core::clock::now_ms());
    }

    pub(crate) fn sink_failed(&self, sink: &str, kind: &'static str, error: &str) {
        metrics::counter!("tributary_sink_errors_total", "sink" => sink.to_owned(), "kind" => kind)
            .increment(1);
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let stats = sinks.entry(sink.to_owned()).or_default();
        stats.errors += 1;
        stats.last_error = Some(error.to_owned());
    }

    /// The whole board as JSON (the `/status` document).
    pub fn to_json(&self) -> Value {
        let sources: serde_json::Map<String, Value> = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, health)| {
                let h = health.borrow().clone();
                let tables: Vec<Value> = h
                    .snapshot
                    .iter()
                    .map(|(table, rows, estimated)| {
                        json!({"table": table, "rows": rows, "estimated_rows": estimated})
                    })
                    .collect();
                (
                    name.clone(),
                    json!({
                        "slot": h.slot,
                        "position": h.position.to_string(),
                        "confirmed": h.confirmed.to_string(),
                        "lag_bytes": h.lag_bytes,
                        "lag_seconds": h.lag_seconds,
                        "retained_wal_bytes": h.retained_bytes,
                        "lag_alarm": h.lag_alarm,
                        "snapshot": {"done": h.snapshot_done, "tables": tables},
                    }),
                )
            })
            .collect();
        let sinks: serde_json::Map<String, Value> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    json!({
                        "events": s.events,
                        "errors": s.errors,
                        "last_ack_ms": s.last_ack_ms,
                        "last_error": s.last_error,
                    }),
                )
            })
            .collect();
        json!({"sources": sources, "sinks": sinks, "views": self.views_json()})
    }
}

/// Per-source event counts of a batch handed to the sinks: events per table
/// and op, and snapshot rows per table. Events come in runs of one table and
/// op (a snapshot piece, a bulk transaction), so the map is touched once per
/// run, not per event.
pub(crate) fn record_source_events(source: &str, parts: &[Vec<ChangeEvent>]) {
    for ((table, op), n) in count_by_table_and_op(parts) {
        let table = table.to_string();
        if op == "r" {
            metrics::counter!(
                "tributary_snapshot_rows_total",
                "source" => source.to_owned(),
                "table" => table.clone()
            )
            .increment(n);
        }
        metrics::counter!(
            "tributary_source_events_total",
            "source" => source.to_owned(),
            "table" => table,
            "op" => op
        )
        .increment(n);
    }
}

fn count_by_table_and_op(parts: &[Vec<ChangeEvent>]) -> BTreeMap<(&TableRef, &'static str), u64> {
    let mut counts: BTreeMap<(&TableRef, &'static str), u64> = BTreeMap::new();
    let mut run: Option<(&TableRef, &'static str, u64)> = None;
    for e in parts.iter().flatten() {
        let op = e.op.code();
        match &mut run {
            // Events of one run share their table's `Arc`; equal names in
            // another allocation (after a schema reload) count as the same.
            Some((table, run_op, n))
                if *run_op == op && (std::ptr::eq(*table, &*e.table) || **table == *e.table) =>
            {
                *n += 1
            }
            _ => {
                if let Some((table, op, n)) = run.replace((&e.table, op, 1)) {
                    *counts.entry((table, op)).or_default() += n;
                }
            }
        }
    }
    if let Some((table, op, n)) = run {
        *counts.entry((table, op)).or_default() += n;
    }
    counts
}

/// The commit→sink latency histogram of one sink, looked up once per lane
/// instead of once per transaction.
pub(crate) fn latency_histogram(source: &str, sink: &str) -> metrics::Histogram {
    metrics::histogram!(
        "tributary_commit_to_sink_seconds",
        "source" => source.to_owned(),
        "sink" => sink.to_owned()
    )
}

/// Commit→sink latency of a batch now durable in a sink: one sample per
/// transaction (snapshot rows have no commit).
pub(crate) fn record_latency(histogram: &metrics::Histogram, events: &[ChangeEvent]) {
    let now_us = tributary_core::clock::now_us();
    let mut last_commit = None;
    for e in events {
        if e.op != Op::Read && last_commit != Some(e.id.commit) {
            last_commit = Some(e.id.commit);
            histogram.record((now_us - e.source.ts_us).max(0) as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tributary_core::{EventId, SnapshotMarker, SourceInfo};

    use super::*;

    fn event(table: &Arc<TableRef>, op: Op) -> ChangeEvent {
        ChangeEvent {
            id: EventId {
                source: "s".into(),
                commit: tributary_core::Position::new(1),
                ordinal: 0,
            },
            table: Arc::clone(table),
            schema: tributary_core::TableSchema::untyped(&["id"], 1),
            op,
            key: None,
            before: None,
            after: None,
            source: SourceInfo {
                name: "s".into(),
                connector: "postgresql",
                db: "d".into(),
                ts_us: 0,
                snapshot: SnapshotMarker::False,
                tx_id: None,
                lsn: None,
                sequence: None,
                unchanged_toast: vec![],
                encoding: Default::default(),
            },
        }
    }

    #[test]
    fn runs_are_counted_like_single_events() {
        let a = Arc::new(TableRef::new("public", "a"));
        // Equal to `a` but another allocation, as after a schema reload.
        let a2 = Arc::new(TableRef::new("public", "a"));
        let b = Arc::new(TableRef::new("public", "b"));
        let parts = vec![
            vec![
                event(&a, Op::Read),
                event(&a, Op::Read),
                event(&b, Op::Read),
            ],
            vec![event(&b, Op::Read), event(&a2, Op::Read)],
            vec![],
            vec![
                event(&a, Op::Update),
                event(&a, Op::Create),
                event(&a, Op::Update),
            ],
        ];
        let mut expected: BTreeMap<(&TableRef, &'static str), u64> = BTreeMap::new();
        for e in parts.iter().flatten() {
            *expected.entry((&*e.table, e.op.code())).or_default() += 1;
        }
        assert_eq!(count_by_table_and_op(&parts), expected);
        assert_eq!(expected[&(&*a, "r")], 3);
    }
}
