//! The statements of the PostgreSQL sink and the JSON their one parameter
//! carries: an array of rows, each an array of the mapped column values
//! followed by the event's position (and in history mode its op, commit time
//! and id).

use std::io::Write;

use tributary_core::debezium::Encoding;
use tributary_core::{debezium, ChangeEvent, Row};
use tributary_pg::quote_ident;

use super::schema::{convert, TargetTable, ID, LSN, OP, ORDINAL, TS};

const ROWS: &str = "jsonb_array_elements($1::text::jsonb) AS j(r)";

fn column_type<'a>(target: &'a TargetTable, column: &str) -> &'a str {
    target.types.get(column).map_or("text", String::as_str)
}

/// `name, name, …` followed by the bookkeeping columns.
fn column_list(columns: &[String], extra: &[&str]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .chain(extra.iter().map(|c| (*c).to_owned()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn converted(target: &TargetTable, columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| convert(&format!("(r -> {i})"), column_type(target, c)))
        .collect()
}

/// Upsert guarded by position: an existing row written by a newer change wins.
pub(super) fn upsert(target: &TargetTable, columns: &[String]) -> String {
    let n = columns.len();
    let mut values = converted(target, columns);
    values.push(format!("(r ->> {n})::pg_lsn"));
    values.push(format!("(r ->> {})::bigint", n + 1));
    let key: Vec<String> = target.key.iter().map(|k| quote_ident(k)).collect();
    let set: Vec<String> = columns
        .iter()
        .filter(|c| !target.key.contains(c))
        .map(|c| quote_ident(c))
        .chain([LSN.to_owned(), ORDINAL.to_owned()])
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {} AS t ({}) SELECT {} FROM {ROWS} ON CONFLICT ({}) DO UPDATE SET {} \
         WHERE (t.{LSN}, t.{ORDINAL}) <= (EXCLUDED.{LSN}, EXCLUDED.{ORDINAL})",
        target.name,
        column_list(columns, &[LSN, ORDINAL]),
        values.join(", "),
        key.join(", "),
        set.join(", ")
    )
}

/// Delete by key, unless the row was written by a newer change.
pub(super) fn delete(target: &TargetTable) -> String {
    let n = target.key.len();
    let mut conditions: Vec<String> = converted(target, &target.key)
        .into_iter()
        .zip(&target.key)
        .map(|(value, k)| format!("t.{} = {value}", quote_ident(k)))
        .collect();
    conditions.push(format!(
        "(t.{LSN}, t.{ORDINAL}) <= ((r ->> {n})::pg_lsn, (r ->> {})::bigint)",
        n + 1
    ));
    format!(
        "DELETE FROM {} AS t USING {ROWS} WHERE {}",
        target.name,
        conditions.join(" AND ")
    )
}

/// Appends events as rows; a redelivered event (same id) is skipped.
pub(super) fn history_insert(target: &TargetTable, columns: &[String]) -> String {
    let n = columns.len();
    let mut values = converted(target, columns);
    values.push(format!("r ->> {n}"));
    values.push(format!("(r ->> {})::pg_lsn", n + 1));
    values.push(format!("(r ->> {})::bigint", n + 2));
    values.push(format!("to_timestamp((r ->> {})::float8 / 1000)", n + 3));
    values.push(format!("r ->> {}", n + 4));
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {ROWS} ON CONFLICT ({ID}) DO NOTHING",
        target.name,
        column_list(columns, &[OP, LSN, ORDINAL, TS, ID]),
        values.join(", ")
    )
}

fn write_values(out: &mut Vec<u8>, row: Option<&Row>) {
    for value in row.map(Row::values).unwrap_or_default() {
        debezium::write_json_value(out, value, Encoding::EXACT);
        out.push(b',');
    }
}

fn write_position(out: &mut Vec<u8>, event: &ChangeEvent) {
    let _ = write!(out, "\"{}\",{}", event.id.commit, event.id.ordinal);
}

/// `[[…], …]` into `out` (cleared first): one inner array per event, its
/// elements written by `elements`.
fn array_per_event<'a>(
    out: &mut Vec<u8>,
    events: &[&'a ChangeEvent],
    mut elements: impl FnMut(&mut Vec<u8>, &'a ChangeEvent),
) {
    out.clear();
    out.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        elements(out, event);
        out.push(b']');
    }
    out.push(b']');
}

/// `[[values…, lsn, ordinal (, op, ts, id)], …]` into `out` (cleared first).
pub(super) fn rows_json<'a>(
    out: &mut Vec<u8>,
    events: &[&'a ChangeEvent],
    row: impl Fn(&'a ChangeEvent) -> Option<&'a Row>,
    history: bool,
) {
    let mut id = String::new();
    array_per_event(out, events, |out, event| {
        write_values(out, row(event));
        if history {
            debezium::write_str(out, event.op.code());
            out.push(b',');
            write_position(out, event);
            let _ = write!(out, ",{},", event.source.ts_ms());
            id.clear();
            event.id.push_to(&mut id);
            debezium::write_str(out, &id);
        } else {
            write_position(out, event);
        }
    });
}

/// `[[key values…, lsn, ordinal], …]` in the order of `key` (cleared first).
pub(super) fn keys_json(out: &mut Vec<u8>, events: &[&ChangeEvent], key: &[String]) {
    array_per_event(out, events, |out, event| {
        for column in key {
            let value = event.key.as_ref().and_then(|k| k.get(column));
            debezium::write_json_value(
                out,
                value.unwrap_or(&tributary_core::Value::Null),
                Encoding::EXACT,
            );
            out.push(b',');
        }
        write_position(out, event);
    });
}
