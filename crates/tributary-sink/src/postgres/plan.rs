//! What one batch does to the target tables, before any SQL is written.
//!
//! In upsert mode only the last change of each key matters within a batch
//! (a table that equals the source after the batch is the goal), and one
//! `INSERT … ON CONFLICT` cannot touch the same row twice anyway. So a batch
//! is reduced per table to: truncate (when the batch truncated it, which
//! also makes every earlier change of that table moot), then the deletes,
//! then the upserts. Deletes go first so that a key change (a delete of the
//! old key plus a create of the new one) never trips a unique constraint.

use std::collections::HashMap;

use tributary_core::{debezium, ChangeEvent, Op, TableRef};

/// The reduced work of one table.
#[derive(Debug, Default)]
pub(super) struct TablePlan<'a> {
    pub truncate: bool,
    /// Last change per key that removed the row.
    pub deletes: Vec<&'a ChangeEvent>,
    /// Last change per key that left a row (snapshot read, insert, update).
    pub upserts: Vec<&'a ChangeEvent>,
}

/// Reduces `events` (in source order, each with a key unless a truncate) to
/// one plan per table, in the order the tables first appear.
pub(super) fn reduce<'a>(events: &[&'a ChangeEvent]) -> Vec<(&'a TableRef, TablePlan<'a>)> {
    let mut order: Vec<&'a TableRef> = Vec::new();
    let mut latest: HashMap<&'a TableRef, (bool, HashMap<Vec<u8>, &'a ChangeEvent>)> =
        HashMap::new();
    for event in events {
        let table: &'a TableRef = &event.table;
        let (truncate, keys) = latest.entry(table).or_insert_with(|| {
            order.push(table);
            (false, HashMap::new())
        });
        if event.op == Op::Truncate {
            *truncate = true;
            keys.clear();
            continue;
        }
        // Exact, so that keys which differ stay apart whatever the
        // source's Debezium settings (an interval of a month and one of
        // 30.44 days are one number in `MicroDuration`).
        let mut key = Vec::with_capacity(32);
        if let Some(k) = &event.key {
            debezium::write_row(&mut key, k, debezium::Encoding::EXACT);
        }
        keys.insert(key, event);
    }
    order
        .into_iter()
        .map(|table| {
            let (truncate, keys) = latest.remove(table).unwrap_or_default();
            let mut plan = TablePlan {
                truncate,
                ..TablePlan::default()
            };
            let mut last: Vec<&ChangeEvent> = keys.into_values().collect();
            // Deterministic statement order (by position), whatever the hashing.
            last.sort_by_key(|e| (e.id.commit, e.id.ordinal));
            for event in last {
                if event.op == Op::Delete {
                    plan.deletes.push(event);
                } else {
                    plan.upserts.push(event);
                }
            }
            (table, plan)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tributary_core::{EventId, Row, SnapshotMarker, SourceInfo, Value};

    use super::*;

    fn event(table: &str, op: Op, id: i64, ordinal: u64) -> ChangeEvent {
        let cols: Arc<[String]> = vec!["id".to_owned()].into();
        let row = Some(Row::new(cols, vec![Value::Int(id)]));
        ChangeEvent {
            id: EventId {
                source: "s".into(),
                commit: tributary_core::Position::new(100),
                ordinal,
            },
            table: Arc::new(TableRef::new("public", table)),
            schema: tributary_core::TableSchema::untyped(&["id"], 1),
            op,
            key: if op == Op::Truncate {
                None
            } else {
                row.clone()
            },
            before: None,
            after: if op == Op::Delete { None } else { row },
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
    fn last_change_per_key_wins_and_truncate_clears() {
        let events = [
            event("a", Op::Create, 1, 0),
            event("b", Op::Create, 1, 1),
            event("a", Op::Update, 1, 2),
            event("a", Op::Create, 2, 3),
            event("b", Op::Truncate, 0, 4),
            event("b", Op::Create, 7, 5),
            event("a", Op::Delete, 2, 6),
        ];
        let refs: Vec<&ChangeEvent> = events.iter().collect();
        let plans = reduce(&refs);
        assert_eq!(plans.len(), 2);
        let (a, plan_a) = &plans[0];
        assert_eq!(a.table, "a");
        assert!(!plan_a.truncate);
        assert_eq!(plan_a.upserts.len(), 1);
        assert_eq!(plan_a.upserts[0].id.ordinal, 2);
        assert_eq!(plan_a.deletes.len(), 1);
        assert_eq!(plan_a.deletes[0].id.ordinal, 6);
        let (_, plan_b) = &plans[1];
        assert!(plan_b.truncate);
        assert_eq!(plan_b.upserts.len(), 1);
        assert_eq!(plan_b.upserts[0].id.ordinal, 5);
    }
}
