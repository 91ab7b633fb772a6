//! Per-sink transforms on the way out: which tables a sink receives, and
//! what happens to sensitive columns (dropped, masked with a fixed string,
//! hashed with SHA-256 and a salt, truncated). Applied to `before`, `after`
//! and the key alike, so a masked column never leaks through any of them.
//! Event ids stay as they are: redelivery still deduplicates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tributary_core::{debezium, ChangeEvent, Row, TableRef, Value};

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

    /// A source table definition as this sink's events shape it: dropped
    /// columns gone, masked and hashed ones text (their values are strings
    /// now, whatever the source type was).
    pub fn reshape(&self, table: &TableRef, columns: &mut Vec<(String, String)>) {
        let Some(rules) = self.columns.get(table) else {
            return;
        };
        columns.retain(|(name, _)| rules.get(name) != Some(&ColumnRule::Drop));
        for (name, sql_type) in columns.iter_mut() {
            if matches!(rules.get(name), Some(ColumnRule::Mask | ColumnRule::Hash)) {
                *sql_type = "text".into();
            }
        }
    }

    /// The events this sink receives, rewritten.
    pub fn apply(&self, events: &[ChangeEvent]) -> Vec<ChangeEvent> {
        events
            .iter()
            .filter(|e| self.wants(&e.table))
            .map(|e| match self.columns.get(&*e.table) {
                None => e.clone(),
                Some(rules) => {
                    let mut e = e.clone();
                    let fix = |row: &Option<Row>| row.as_ref().map(|r| self.row(r, rules));
                    e.before = fix(&e.before);
                    e.after = fix(&e.after);
                    e.key = fix(&e.key);
                    e
                }
            })
            .collect()
    }

    fn row(&self, row: &Row, rules: &HashMap<String, ColumnRule>) -> Row {
        let mut columns = Vec::with_capacity(row.columns().len());
        let mut values = Vec::with_capacity(row.columns().len());
        for (column, value) in row.iter() {
            let value = match rules.get(column) {
                None => value.clone(),
                Some(ColumnRule::Drop) => continue,
                Some(_) if *value == Value::Null => Value::Null,
                Some(ColumnRule::Mask) => Value::Text(self.mask.as_str().into()),
                Some(ColumnRule::Hash) => Value::Text(self.hash(value).into()),
                Some(ColumnRule::Truncate(n)) => truncate(value, *n),
            };
            columns.push(column.to_owned());
            values.push(value);
        }
        Row::new(Arc::from(columns), values)
    }

    /// Hex SHA-256 of the salt followed by the value's text (its JSON form
    /// for non-text values).
    fn hash(&self, value: &Value) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.salt.as_bytes());
        match value {
            Value::Text(t) => hasher.update(t.as_bytes()),
            other => {
                let mut json = Vec::new();
                debezium::write_json_value(&mut json, other);
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

fn truncate(value: &Value, n: usize) -> Value {
    match value {
        Value::Text(t) => Value::Text(t.chars().take(n).collect()),
        Value::Bytes(b) => Value::Bytes(b.iter().copied().take(n).collect()),
        other => other.clone(),
    }
}
