//! Per-sink transforms on the way out: which tables a sink receives, and
//! what happens to sensitive columns (dropped, masked with a fixed string,
//! hashed with SHA-256 and a salt, truncated). Applied to `before`, `after`
//! and the key alike, so a masked column never leaks through any of them.
//! Event ids stay as they are: redelivery still deduplicates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tributary_core::debezium::{self, Encoding};
use tributary_core::{ChangeEvent, Column, Row, TableRef, TableSchema, Value};

/// What happens to one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnRule {
    Drop,
    Mask,
    Hash,
    Truncate(usize),
}

/// The transforms of one sink.
#[derive(Debug, Default)]
pub struct Transform {
    /// Only these tables, if set.
    include: Option<HashSet<TableRef>>,
    exclude: HashSet<TableRef>,
    columns: HashMap<TableRef, HashMap<String, ColumnRule>>,
    mask: String,
    salt: String,
}

impl Transform {
    pub fn new(
        include: Option<HashSet<TableRef>>,
        exclude: HashSet<TableRef>,
        columns: HashMap<TableRef, HashMap<String, ColumnRule>>,
        mask: String,
        salt: String,
    ) -> Self {
        Self {
            include,
            exclude,
            columns,
            mask,
            salt,
        }
    }

    /// Whether it changes nothing (then the batch is passed through as is).
    pub fn is_identity(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty() && self.columns.is_empty()
    }

    fn wants(&self, table: &TableRef) -> bool {
        !self.exclude.contains(table) && self.include.as_ref().is_none_or(|i| i.contains(table))
    }

    /// The events this sink receives, rewritten.
    pub fn apply(&self, events: &[ChangeEvent]) -> Vec<ChangeEvent> {
        // The last schema reshaped and its result: a batch is mostly one
        // table, so each distinct schema is reshaped about once per batch.
        let mut reshaped: Option<(Arc<TableSchema>, Arc<TableSchema>)> = None;
        events
            .iter()
            .filter(|e| self.wants(&e.table))
            .map(|e| match self.columns.get(&*e.table) {
                None => e.clone(),
                Some(rules) => {
                    let mut e = e.clone();
                    let encoding = e.source.encoding;
                    let fix =
                        |row: &Option<Row>| row.as_ref().map(|r| self.row(r, rules, encoding));
                    e.before = fix(&e.before);
                    e.after = fix(&e.after);
                    e.key = fix(&e.key);
                    e.schema = match &reshaped {
                        Some((from, to)) if Arc::ptr_eq(from, &e.schema) => Arc::clone(to),
                        _ => {
                            let to = Arc::new(reshape(&e.schema, rules));
                            reshaped = Some((Arc::clone(&e.schema), Arc::clone(&to)));
                            to
                        }
                    };
                    e
                }
            })
            .collect()
    }

    fn row(&self, row: &Row, rules: &HashMap<String, ColumnRule>, encoding: Encoding) -> Row {
        let mut columns = Vec::with_capacity(row.columns().len());
        let mut values = Vec::with_capacity(row.columns().len());
        for (column, value) in row.iter() {
            let value = match rules.get(column) {
                None => value.clone(),
                Some(ColumnRule::Drop) => continue,
                Some(_) if *value == Value::Null => Value::Null,
                Some(ColumnRule::Mask) => Value::Text(self.mask.as_str().into()),
                Some(ColumnRule::Hash) => Value::Text(self.hash(value, encoding).into()),
                Some(ColumnRule::Truncate(n)) => truncate(value, *n, encoding),
            };
            columns.push(column.to_owned());
            values.push(value);
        }
        Row::new(Arc::from(columns), values)
    }

    /// Hex SHA-256 of the salt followed by the value's text: the string
    /// its JSON form holds, or that JSON itself for numbers, booleans and
    /// arrays.
    fn hash(&self, value: &Value, encoding: Encoding) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.salt.as_bytes());
        match textual(value, encoding) {
            Some(text) => hasher.update(text.as_bytes()),
            None => {
                let mut json = Vec::new();
                debezium::write_json_value(&mut json, value, encoding);
                hasher.update(&json);
            }
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The text of a value that is text in its record (strings, exact
/// decimals, temporal strings, uuids, json); `None` for numbers (a float's
/// `"NaN"` included), booleans, bytes, arrays and null, which hash as their
/// JSON and are never cut.
fn textual(value: &Value, encoding: Encoding) -> Option<String> {
    match value {
        Value::Float(_) | Value::Bytes(_) => None,
        other => debezium::text_form(other, encoding),
    }
}

/// A schema as a sink's column rules shape its events: dropped columns
/// gone, masked and hashed ones `text` (their values are strings now,
/// whatever the source type was), the key kept by name.
fn reshape(schema: &TableSchema, rules: &HashMap<String, ColumnRule>) -> TableSchema {
    let key: Vec<&str> = schema.key().map(|c| c.name.as_str()).collect();
    let columns: Vec<Column> = schema
        .columns()
        .iter()
        .filter(|c| rules.get(&c.name) != Some(&ColumnRule::Drop))
        .map(|c| match rules.get(&c.name) {
            Some(ColumnRule::Mask | ColumnRule::Hash) => Column {
                sql_type: "text".into(),
                ..c.clone()
            },
            _ => c.clone(),
        })
        .collect();
    let key = key
        .iter()
        .filter_map(|k| columns.iter().position(|c| c.name == *k))
        .collect();
    TableSchema::new(columns, key)
}

/// A value whose JSON form is a string, cut to `n` characters (text from
/// then on); bytes to `n` bytes; anything else as it is.
fn truncate(value: &Value, n: usize, encoding: Encoding) -> Value {
    match value {
        Value::Bytes(b) => Value::Bytes(b.iter().copied().take(n).collect()),
        Value::Text(t) => Value::Text(t.chars().take(n).collect()),
        // A typed value stays typed unless it is actually cut.
        other => match textual(other, encoding) {
            Some(text) if text.chars().count() > n => Value::Text(text.chars().take(n).collect()),
            _ => other.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use tributary_core::value::{Timestamp, Uuid};

    use super::*;

    fn hashed(value: &Value) -> String {
        let t = Transform::new(
            None,
            HashSet::new(),
            HashMap::new(),
            "x".into(),
            "salt".into(),
        );
        t.hash(value, Encoding::default())
    }

    fn sha(text: &str) -> String {
        Sha256::digest(format!("salt{text}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Hashes stay what they were before values had types: text forms
    /// bare, numbers, bytes and a float's NaN as their JSON.
    #[test]
    fn hashes_of_typed_values_are_those_of_their_record_text() {
        let ts = Value::TimestampTz(Timestamp::from_micros(0).unwrap());
        assert_eq!(hashed(&ts), sha("1970-01-01T00:00:00Z"));
        let uuid = Uuid::parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(
            hashed(&Value::Uuid(uuid)),
            sha("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(hashed(&Value::Float(f64::NAN)), sha("\"NaN\""));
        assert_eq!(hashed(&Value::Bytes(vec![0, 1, 2])), sha("\"AAEC\""));
        assert_eq!(hashed(&Value::Int(7)), sha("7"));
        assert!(matches!(
            truncate(&Value::Float(f64::NAN), 1, Encoding::default()),
            Value::Float(f) if f.is_nan()
        ));
        assert_eq!(
            truncate(&ts, 4, Encoding::default()),
            Value::Text("1970".into())
        );
    }
}
