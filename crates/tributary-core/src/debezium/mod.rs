//! Debezium-compatible JSON encoding (schemas disabled), written straight into
//! a reusable buffer: no intermediate `serde_json::Value` tree per event.
//!
//! Consumers written for Debezium's PostgreSQL connector read these records
//! unchanged: same envelope, same `source` fields, same op letters.

use std::sync::Arc;

use crate::{ChangeEvent, EventId, Op, Position, Row, SnapshotMarker, TableRef};

mod value;

pub use value::{text_form, write_json_value, DecimalHandling, Encoding, IntervalHandling};

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

/// Renders topics, remembering the last one: consecutive events of one
/// table (a snapshot, a bulk transaction) reuse it instead of rendering the
/// template and escaping the result for every event.
#[derive(Default)]
pub struct TopicWriter {
    /// What the remembered topic was rendered from. Holding the `Arc`s keeps
    /// their addresses from being reused, so pointer equality is identity.
    last: Option<(Arc<str>, Arc<TableRef>, String)>,
    topic: String,
    json: Vec<u8>,
}

impl TopicWriter {
    /// The topic of `event` under `template`.
    pub fn topic(&mut self, template: &str, event: &ChangeEvent) -> &str {
        self.render(template, event);
        &self.topic
    }

    /// Writes the topic of `event` under `template` as a JSON string.
    pub fn write_json(&mut self, out: &mut Vec<u8>, template: &str, event: &ChangeEvent) {
        self.render(template, event);
        out.extend_from_slice(&self.json);
    }

    fn render(&mut self, template: &str, event: &ChangeEvent) {
        let same = self.last.as_ref().is_some_and(|(name, table, t)| {
            Arc::ptr_eq(name, &event.source.name)
                && Arc::ptr_eq(table, &event.table)
                && t == template
        });
        if same {
            return;
        }
        write_topic(&mut self.topic, template, event);
        self.json.clear();
        write_str(&mut self.json, &self.topic);
        self.last = Some((
            Arc::clone(&event.source.name),
            Arc::clone(&event.table),
            template.to_owned(),
        ));
    }
}

/// Writes envelopes, reusing the encoded `source` block while it stays the
/// same: every row of a snapshot shares one, so only the row is encoded.
#[derive(Default)]
pub struct EnvelopeWriter {
    last: Option<SourceKey>,
    block: Vec<u8>,
    /// The envelope after its `after` row (`source` block, op, `ts_ms`),
    /// and the op and `ts_ms` it was written for; `None` when the block
    /// changed. One write call shares one `ts_ms`, so a run of events of
    /// one op copies it whole.
    tail: Vec<u8>,
    tail_for: Option<(Op, i64)>,
    /// Column names of `before`/`after` rows and of keys.
    row_names: ColumnNames,
    key_names: ColumnNames,
}

/// The `"name":` of each column of one column list, escaped once and
/// copied for every row of that list: writing each name afresh was ~100
/// instructions per column and row. Rows are recognised by their shared
/// column list (`Arc` identity), so a new list costs one rebuild.
#[derive(Default)]
struct ColumnNames {
    columns: Option<Arc<[String]>>,
    encoded: Vec<u8>,
    /// Where each column's `"name":` ends in `encoded`.
    ends: Vec<usize>,
}

impl ColumnNames {
    fn write_row(&mut self, out: &mut Vec<u8>, row: &Row, encoding: Encoding) {
        let list = row.column_list();
        if !self.columns.as_ref().is_some_and(|c| Arc::ptr_eq(c, list)) {
            self.encoded.clear();
            self.ends.clear();
            for name in list.iter() {
                write_str(&mut self.encoded, name);
                self.encoded.push(b':');
                self.ends.push(self.encoded.len());
            }
            self.columns = Some(Arc::clone(list));
        }
        out.push(b'{');
        let mut start = 0;
        for (i, (&end, value)) in self.ends.iter().zip(row.values()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.encoded[start..end]);
            start = end;
            write_json_value(out, value, encoding);
        }
        out.push(b'}');
    }

    fn write_opt_row(&mut self, out: &mut Vec<u8>, row: Option<&Row>, encoding: Encoding) {
        match row {
            Some(row) => self.write_row(out, row, encoding),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// Everything the `source` block is made of (the `Arc`s held, see
/// [`TopicWriter`]).
struct SourceKey {
    name: Arc<str>,
    db: Arc<str>,
    table: Arc<TableRef>,
    connector: &'static str,
    ts_us: i64,
    snapshot: SnapshotMarker,
    tx_id: Option<u64>,
    lsn: Option<u64>,
    sequence: Option<(u64, u64)>,
}

impl SourceKey {
    fn matches(&self, event: &ChangeEvent) -> bool {
        let s = &event.source;
        s.unchanged_toast.is_empty()
            && Arc::ptr_eq(&self.name, &s.name)
            && Arc::ptr_eq(&self.db, &s.db)
            && Arc::ptr_eq(&self.table, &event.table)
            && self.connector == s.connector
            && self.ts_us == s.ts_us
            && self.snapshot == s.snapshot
            && self.tx_id == s.tx_id
            && self.lsn == s.lsn
            && self.sequence == s.sequence
    }
}

impl EnvelopeWriter {
    /// As [`write_value`].
    pub fn write_value(&mut self, out: &mut Vec<u8>, event: &ChangeEvent, now_ms: i64) {
        if !self.last.as_ref().is_some_and(|k| k.matches(event)) {
            self.block.clear();
            write_source(&mut self.block, event);
            let s = &event.source;
            self.last = s.unchanged_toast.is_empty().then(|| SourceKey {
                name: Arc::clone(&s.name),
                db: Arc::clone(&s.db),
                table: Arc::clone(&event.table),
                connector: s.connector,
                ts_us: s.ts_us,
                snapshot: s.snapshot,
                tx_id: s.tx_id,
                lsn: s.lsn,
                sequence: s.sequence,
            });
            self.tail_for = None;
        }
        if self.tail_for != Some((event.op, now_ms)) {
            self.tail.clear();
            write_envelope_tail(&mut self.tail, event, now_ms, &self.block);
            self.tail_for = Some((event.op, now_ms));
        }
        out.extend_from_slice(b"{\"before\":");
        self.row_names
            .write_opt_row(out, event.before.as_ref(), event.source.encoding);
        out.extend_from_slice(b",\"after\":");
        self.row_names
            .write_opt_row(out, event.after.as_ref(), event.source.encoding);
        out.extend_from_slice(&self.tail);
    }

    /// As [`write_key`].
    pub fn write_key(&mut self, out: &mut Vec<u8>, event: &ChangeEvent) {
        self.key_names
            .write_opt_row(out, event.key.as_ref(), event.source.encoding);
    }
}

/// Writes the record key: the key columns as an object, or `null`.
pub fn write_key(out: &mut Vec<u8>, event: &ChangeEvent) {
    match &event.key {
        Some(key) => write_row(out, key, event.source.encoding),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes the Debezium envelope. `now_ms` becomes the envelope's `ts_ms`
/// (processing time, as in Debezium); `source.ts_ms` is the commit time.
pub fn write_value(out: &mut Vec<u8>, event: &ChangeEvent, now_ms: i64) {
    let mut source = Vec::with_capacity(256);
    write_source(&mut source, event);
    write_envelope(out, event, now_ms, &source);
}

fn write_envelope(out: &mut Vec<u8>, event: &ChangeEvent, now_ms: i64, source: &[u8]) {
    out.extend_from_slice(b"{\"before\":");
    write_opt_row(out, event.before.as_ref(), event.source.encoding);
    out.extend_from_slice(b",\"after\":");
    write_opt_row(out, event.after.as_ref(), event.source.encoding);
    write_envelope_tail(out, event, now_ms, source);
}

/// The envelope after its `after` row.
fn write_envelope_tail(out: &mut Vec<u8>, event: &ChangeEvent, now_ms: i64, source: &[u8]) {
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(source);
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
    write_int(out, s.ts_ms());
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

fn write_opt_row(out: &mut Vec<u8>, row: Option<&Row>, encoding: Encoding) {
    match row {
        Some(row) => write_row(out, row, encoding),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes a row as a JSON object in column order.
pub fn write_row(out: &mut Vec<u8>, row: &Row, encoding: Encoding) {
    out.push(b'{');
    for (i, (name, value)) in row.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        write_json_value(out, value, encoding);
    }
    out.push(b'}');
}

/// Integers through `itoa` (no `fmt` machinery: this runs per value).
pub(crate) fn write_int(out: &mut Vec<u8>, i: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

pub(crate) fn write_float(out: &mut Vec<u8>, f: f64) {
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

/// Whether JSON needs any byte of `bytes` escaped. Checked 16 bytes at a
/// time without an early exit, which the compiler turns into SIMD compares:
/// a byte-by-byte `any` cost ~600 instructions per snapshot row.
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |found, &b| found | special(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

/// Writes event ids as JSON strings, remembering the escaped
/// `"<source>:<commit position>:` of the last one: the events of one
/// transaction or snapshot share it, so only the ordinal is written anew.
#[derive(Default)]
pub struct EventIdWriter {
    /// What `prefix` was written from (the `Arc` held, see [`TopicWriter`]).
    last: Option<(Arc<str>, Position)>,
    /// The opening quote and the escaped prefix.
    prefix: Vec<u8>,
}

impl EventIdWriter {
    /// Writes `id` as a JSON string of its text ([`EventId::push_to`]).
    pub fn write_json(&mut self, out: &mut Vec<u8>, id: &EventId) {
        let same = self.last.as_ref().is_some_and(|(source, commit)| {
            Arc::ptr_eq(source, &id.source) && *commit == id.commit
        });
        if !same {
            let mut text = String::new();
            id.push_prefix_to(&mut text);
            self.prefix.clear();
            // Escaping works per character, so the escaped prefix is the
            // prefix of the escaped id; the ordinal's digits need none.
            write_str(&mut self.prefix, &text);
            self.prefix.pop();
            self.last = Some((Arc::clone(&id.source), id.commit));
        }
        out.extend_from_slice(&self.prefix);
        write_int(out, id.ordinal);
        out.push(b'"');
    }
}

/// Writes a JSON string with escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Most strings need no escaping: copy them as they are.
    if !needs_escape(s.as_bytes()) {
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
    use crate::{SnapshotMarker, SourceInfo, TableRef, Value};

    fn event(op: Op) -> ChangeEvent {
        let cols: Arc<[String]> = vec!["id".to_string(), "name".to_string()].into();
        let key_cols: Arc<[String]> = vec!["id".to_string()].into();
        ChangeEvent {
            id: EventId {
                source: "cash".into(),
                commit: Position::new(0x1_0000_00A0),
                ordinal: 3,
            },
            table: Arc::new(TableRef::new("public", "accounts")),
            schema: crate::TableSchema::untyped(&["id", "name"], 1),
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
                ts_us: 1_700_000_000_000_123,
                snapshot: SnapshotMarker::False,
                tx_id: Some(42),
                lsn: Some(0x1_0000_00A0),
                sequence: Some((10, 0x1_0000_00A0)),
                unchanged_toast: vec![],
                encoding: Encoding::default(),
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
    fn cached_writers_match_the_plain_ones_as_events_change() {
        let mut topics = TopicWriter::default();
        let mut envelopes = EnvelopeWriter::default();
        let first = event(Op::Create);
        let mut same_tx = first.clone();
        same_tx.id.ordinal += 1;
        let mut next_change = first.clone();
        next_change.source.sequence = Some((10, 0x1_0000_00B0));
        let mut other_table = first.clone();
        other_table.table = Arc::new(TableRef::new("public", "other"));
        let mut toast = first.clone();
        toast.source.unchanged_toast = vec!["doc".into()];
        let mut snapshot_last = first.clone();
        snapshot_last.source.snapshot = SnapshotMarker::Last;
        // Another column list (with a name that needs escaping), rows with
        // before and after, and a delete: the cached column names follow.
        let odd: Arc<[String]> = vec!["id".to_string(), "we\"ird".to_string()].into();
        let mut other_columns = first.clone();
        other_columns.after = Some(Row::new(Arc::clone(&odd), vec![Value::Int(8), Value::Null]));
        other_columns.key = Some(Row::new(
            vec!["k\n".to_string()].into(),
            vec![Value::Int(8)],
        ));
        let mut update = first.clone();
        update.op = Op::Update;
        update.before = Some(Row::new(odd, vec![Value::Int(7), Value::Bool(true)]));
        let mut delete = first.clone();
        delete.op = Op::Delete;
        delete.before = delete.after.take();
        // The processing time (`ts_ms`) moves on between write calls, also
        // while the source block stays the same.
        for (e, now_ms) in [
            (&first, 5),
            (&same_tx, 5),
            (&same_tx, 6),
            (&next_change, 6),
            (&other_table, 6),
            (&toast, 7),
            (&first, 7),
            (&snapshot_last, 7),
            (&other_columns, 7),
            (&update, 7),
            (&first, 7),
            (&first, 8),
            (&delete, 8),
            (&other_columns, 8),
        ] {
            let (mut cached, mut plain) = (Vec::new(), Vec::new());
            envelopes.write_value(&mut cached, e, now_ms);
            write_value(&mut plain, e, now_ms);
            assert_eq!(
                String::from_utf8(cached).unwrap(),
                String::from_utf8(plain).unwrap()
            );
            let (mut cached, mut plain) = (Vec::new(), Vec::new());
            envelopes.write_key(&mut cached, e);
            write_key(&mut plain, e);
            assert_eq!(
                String::from_utf8(cached).unwrap(),
                String::from_utf8(plain).unwrap()
            );
            let mut json = Vec::new();
            topics.write_json(&mut json, "{source}.{schema}.{table}", e);
            let mut expected = Vec::new();
            write_str(&mut expected, &topic("{source}.{schema}.{table}", e));
            assert_eq!(json, expected);
            assert_eq!(topics.topic("x.{table}", e), topic("x.{table}", e));
        }
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

    #[test]
    fn escaping_is_found_in_any_position() {
        for len in 0..40 {
            let plain = "a".repeat(len);
            assert!(!needs_escape(plain.as_bytes()));
            for at in 0..len {
                for special in [b'"', b'\\', b'\n', 0x1f] {
                    let mut v = plain.clone().into_bytes();
                    v[at] = special;
                    assert!(needs_escape(&v), "{len} {at} {special}");
                    let text = String::from_utf8(v).unwrap();
                    let mut out = Vec::new();
                    write_str(&mut out, &text);
                    let back: String = serde_json::from_slice(&out).unwrap();
                    assert_eq!(back, text);
                }
            }
        }
    }

    #[test]
    fn event_ids_are_json_strings_of_their_text() {
        let mut writer = EventIdWriter::default();
        let cash: Arc<str> = "cash".into();
        let mut ids = Vec::new();
        // Runs that share a prefix, a new commit, a new source, a source
        // that needs escaping, and an equal name in another allocation.
        for (source, commit, ordinals) in [
            (Arc::clone(&cash), 0x16_B374_D848, 0..3),
            (Arc::clone(&cash), 0x16_B374_D900, 0..2),
            ("odd\"name\\".into(), 0x16_B374_D900, 7..9),
            ("tab\there".into(), 0, 0..1),
            ("cash".into(), 0x16_B374_D900, 2..4),
            (Arc::clone(&cash), u64::MAX, u64::MAX - 1..u64::MAX),
        ] {
            for ordinal in ordinals {
                ids.push(EventId {
                    source: Arc::clone(&source),
                    commit: Position::new(commit),
                    ordinal,
                });
            }
        }
        for id in &ids {
            let mut out = Vec::new();
            writer.write_json(&mut out, id);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, id.to_string());
        }
    }
}
