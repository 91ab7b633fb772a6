//! Debezium-compatible JSON encoding (schemas disabled), written straight into
//! a reusable buffer: no intermediate `serde_json::Value` tree per event.
//!
//! Consumers written for Debezium's PostgreSQL connector read these records
//! unchanged: same envelope, same `source` fields, same op letters.

use base64::Engine;

use crate::{ChangeEvent, Op, Row, Value};

/// The version Tributary reports in `source.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Renders a topic/subject template: `{source}`, `{schema}`, `{table}`.
pub fn topic(template: &str, event: &ChangeEvent) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    write_topic(&mut out, template, event);
    out
}

/// Renders a topic template into `out` (cleared first), for reuse per event.
pub fn write_topic(out: &mut String, template: &str, event: &ChangeEvent) {
    out.clear();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let (value, len) = if after.starts_with("{source}") {
            (&*event.source.name, 8)
        } else if after.starts_with("{schema}") {
            (event.table.schema.as_str(), 8)
        } else if after.starts_with("{table}") {
            (event.table.table.as_str(), 7)
        } else {
            ("{", 1)
        };
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
}

/// Writes the record key: the key columns as an object, or `null`.
pub fn write_key(out: &mut Vec<u8>, event: &ChangeEvent) {
    match &event.key {
        Some(key) => write_row(out, key),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes the Debezium envelope. `now_ms` becomes the envelope's `ts_ms`
/// (processing time, as in Debezium); `source.ts_ms` is the commit time.
pub fn write_value(out: &mut Vec<u8>, event: &ChangeEvent, now_ms: i64) {
    out.extend_from_slice(b"{\"before\":");
    write_opt_row(out, event.before.as_ref());
    out.extend_from_slice(b",\"after\":");
    write_opt_row(out, event.after.as_ref());
    out.extend_from_slice(b",\"source\":");
    write_source(out, event);
    out.extend_from_slice(b",\"op\":\"");
    out.extend_from_slice(event.op.code().as_bytes());
    out.extend_from_slice(b"\",\"ts_ms\":");
    write_int(out, now_ms);
    out.extend_from_slice(b",\"transaction\":null}");
}

/// Whether a tombstone (same key, `null` value) follows this event.
pub fn has_tombstone(event: &ChangeEvent) -> bool {
    event.op == Op::Delete && event.key.is_some()
}

fn write_source(out: &mut Vec<u8>, event: &ChangeEvent) {
    let s = &event.source;
    out.extend_from_slice(b"{\"version\":\"");
    out.extend_from_slice(VERSION.as_bytes());
    out.extend_from_slice(b"\",\"connector\":\"");
    out.extend_from_slice(s.connector.as_bytes());
    out.extend_from_slice(b"\",\"name\":");
    write_str(out, &s.name);
    out.extend_from_slice(b",\"ts_ms\":");
    write_int(out, s.ts_ms);
    out.extend_from_slice(b",\"snapshot\":\"");
    out.extend_from_slice(s.snapshot.code().as_bytes());
    out.extend_from_slice(b"\",\"db\":");
    write_str(out, &s.db);
    out.extend_from_slice(b",\"sequence\":");
    match s.sequence {
        Some((last, current)) => {
            out.extend_from_slice(b"\"[\\\"");
            write_int(out, last);
            out.extend_from_slice(b"\\\",\\\"");
            write_int(out, current);
            out.extend_from_slice(b"\\\"]\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"schema\":");
    write_str(out, &event.table.schema);
    out.extend_from_slice(b",\"table\":");
    write_str(out, &event.table.table);
    out.extend_from_slice(b",\"txId\":");
    write_opt_u64(out, s.tx_id);
    out.extend_from_slice(b",\"lsn\":");
    write_opt_u64(out, s.lsn);
    out.extend_from_slice(b",\"xmin\":null");
    if !s.unchanged_toast.is_empty() {
        out.extend_from_slice(b",\"unchanged_toast\":[");
        for (i, c) in s.unchanged_toast.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, c);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn write_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => write_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_opt_row(out: &mut Vec<u8>, row: Option<&Row>) {
    match row {
        Some(row) => write_row(out, row),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes a row as a JSON object in column order.
pub fn write_row(out: &mut Vec<u8>, row: &Row) {
    out.push(b'{');
    for (i, (name, value)) in row.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        write_json_value(out, value);
    }
    out.push(b'}');
}

/// Writes one mapped value as JSON (see `interface.md`, "Value mapping").
pub fn write_json_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_int(out, *i),
        Value::Float(f) => write_float(out, *f),
        Value::Text(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.push(b'"');
            let mut encoded = String::new();
            base64::engine::general_purpose::STANDARD.encode_string(b, &mut encoded);
            out.extend_from_slice(encoded.as_bytes());
            out.push(b'"');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(out, item);
            }
            out.push(b']');
        }
    }
}

/// Integers through `itoa` (no `fmt` machinery: this runs per value).
fn write_int(out: &mut Vec<u8>, i: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 {
            b"\"Infinity\"".as_slice()
        } else {
            b"\"-Infinity\"".as_slice()
        });
    } else {
        // serde_json prints the shortest representation that round-trips.
        let _ = serde_json::to_writer(&mut *out, &f);
    }
}

/// Writes a JSON string with escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Most strings need no escaping: copy them as they are.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{EventId, SnapshotMarker, SourceInfo, TableRef};

    fn event(op: Op) -> ChangeEvent {
        let cols: Arc<[String]> = vec!["id".to_string(), "name".to_string()].into();
        let key_cols: Arc<[String]> = vec!["id".to_string()].into();
        ChangeEvent {
            id: EventId {
                source: "cash".into(),
                commit: 0x1_0000_00A0,
                ordinal: 3,
            },
            table: Arc::new(TableRef::new("public", "accounts")),
            op,
            key: Some(Row::new(key_cols, vec![Value::Int(7)])),
            before: None,
            after: Some(Row::new(
                cols,
                vec![Value::Int(7), Value::Text("a\"b\n".into())],
            )),
            source: SourceInfo {
                name: "cash".into(),
                connector: "postgresql",
                db: "cash".into(),
                ts_ms: 1_700_000_000_000,
                snapshot: SnapshotMarker::False,
                tx_id: Some(42),
                lsn: Some(0x1_0000_00A0),
                sequence: Some((10, 0x1_0000_00A0)),
                unchanged_toast: vec![],
            },
        }
    }

    #[test]
    fn value_envelope_is_valid_json_with_debezium_fields() {
        let mut out = Vec::new();
        write_value(&mut out, &event(Op::Create), 5);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["op"], "c");
        assert_eq!(v["ts_ms"], 5);
        assert_eq!(v["after"]["name"], "a\"b\n");
        assert_eq!(v["source"]["lsn"], 0x1_0000_00A0u64);
        assert_eq!(v["source"]["sequence"], "[\"10\",\"4294967456\"]");
        assert!(v["before"].is_null());
        assert!(v["transaction"].is_null());
    }

    #[test]
    fn floats_and_bytes_follow_the_mapping() {
        let mut out = Vec::new();
        let arr = Value::Array(vec![
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(1.5),
            Value::Bytes(vec![0, 1, 2]),
            Value::Null,
        ]);
        write_json_value(&mut out, &arr);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"["NaN","Infinity","-Infinity",1.5,"AAEC",null]"#
        );
    }

    #[test]
    fn event_id_renders_lsn() {
        assert_eq!(event(Op::Read).id.to_string(), "cash:1/A0:3");
    }

    #[test]
    fn topic_template_keeps_other_text_and_braces() {
        assert_eq!(
            topic("cdc.{table}.{x}{", &event(Op::Read)),
            "cdc.accounts.{x}{"
        );
    }

    #[test]
    fn topic_template() {
        assert_eq!(
            topic("{source}.{schema}.{table}", &event(Op::Read)),
            "cash.public.accounts"
        );
    }
}
