//! The change event: one row change (or truncate) with where it came from.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::debezium::Encoding;
use crate::{Lsn, Position, TableSchema, Value};

/// What happened to the row. The letters are Debezium's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `r`: a row read by the snapshot.
    Read,
    /// `c`: an insert.
    Create,
    /// `u`: an update.
    Update,
    /// `d`: a delete (followed by a tombstone on sinks that keep them).
    Delete,
    /// `t`: a truncate of the whole table.
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    pub schema: String,
    pub table: String,
}

impl TableRef {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// A row image: column names shared by every row of a relation, values owned.
///
/// A single value is held inline: most keys are one column, and every
/// keyed event carries its key as a row of its own, so this saves an
/// allocation (and its free, often on another thread) per event.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Arc<[String]>,
    values: SmallVec<[Value; 1]>,
}

impl Row {
    /// `values` must have one entry per column.
    pub fn new(columns: Arc<[String]>, values: Vec<Value>) -> Self {
        debug_assert_eq!(columns.len(), values.len());
        Self {
            columns,
            values: SmallVec::from_vec(values),
        }
    }

    /// Like [`Row::new`], from an iterator: a one-column row needs no
    /// allocation for its values this way.
    pub fn from_values(columns: Arc<[String]>, values: impl IntoIterator<Item = Value>) -> Self {
        let values: SmallVec<[Value; 1]> = values.into_iter().collect();
        debug_assert_eq!(columns.len(), values.len());
        Self { columns, values }
    }

    /// A one-column row (most keys), built without an iterator.
    pub fn single(columns: Arc<[String]>, value: Value) -> Self {
        debug_assert_eq!(columns.len(), 1);
        Self {
            columns,
            values: SmallVec::from_buf([value]),
        }
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The shared column list, to recognise rows of the same shape.
    pub(crate) fn column_list(&self) -> &Arc<[String]> {
        &self.columns
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn get(&self, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values.get(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
    }
}

/// Where a snapshot row stands in the snapshot (Debezium's `source.snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMarker {
    /// A streamed change.
    False,
    First,
    True,
    Last,
}

impl SnapshotMarker {
    pub fn code(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::First => "first",
            SnapshotMarker::True => "true",
            SnapshotMarker::Last => "last",
        }
    }
}

/// The `source` block: provenance of a change in the source's own terms.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Source name from the config; the topic prefix.
    pub name: Arc<str>,
    /// `"postgresql"`, later `"mysql"`.
    pub connector: &'static str,
    pub db: Arc<str>,
    /// Commit time in microseconds since the epoch (PostgreSQL's precision;
    /// Debezium's `source.ts_ms` is [`SourceInfo::ts_ms`]).
    pub ts_us: i64,
    pub snapshot: SnapshotMarker,
    pub tx_id: Option<u64>,
    /// Commit position of the change's transaction (PostgreSQL: the commit LSN).
    pub lsn: Option<u64>,
    /// Debezium's `sequence`: last committed position, position of this change.
    pub sequence: Option<(u64, u64)>,
    /// Columns whose unchanged TOASTed value was never seen (omitted from `after`).
    pub unchanged_toast: Vec<String>,
    /// How the source's settings say its values are written as JSON.
    pub encoding: Encoding,
}

impl SourceInfo {
    /// Commit time in milliseconds since the epoch.
    pub fn ts_ms(&self) -> i64 {
        self.ts_us.div_euclid(1000)
    }
}

/// Stable identity of an event: `<source>:<commit position>:<ordinal>`.
///
/// Identical on redelivery, so sinks can drop duplicates by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId {
    pub source: Arc<str>,
    /// Commit position; rendered as a PostgreSQL LSN (`16/B374D848`).
    pub commit: Position,
    /// Position of the event inside its transaction (or snapshot), from 0.
    pub ordinal: u64,
}

impl EventId {
    /// Appends the id as [`fmt::Display`] renders it, without `fmt`'s
    /// machinery (every record carries one).
    pub fn push_to(&self, out: &mut String) {
        self.push_prefix_to(out);
        out.push_str(itoa::Buffer::new().format(self.ordinal));
    }

    /// Appends `<source>:<commit position>:`, the part every event of one
    /// transaction (or snapshot) shares.
    pub fn push_prefix_to(&self, out: &mut String) {
        out.push_str(&self.source);
        out.push(':');
        Lsn::from(self.commit).push_to(out);
        out.push(':');
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.commit, self.ordinal)
    }
}

/// One change, as every sink and transform sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub id: EventId,
    pub table: Arc<TableRef>,
    /// The columns, types and key of `table` as of this change.
    pub schema: Arc<TableSchema>,
    pub op: Op,
    /// Primary-key (or replica-identity) columns; `None` without one and for truncates.
    pub key: Option<Row>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: SourceInfo,
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn push_to_matches_display() {
        for (commit, ordinal) in [(0, 0), (0x16_B374_D848, 7), (u64::MAX, u64::MAX)] {
            let id = EventId {
                source: "cash".into(),
                commit: Position::new(commit),
                ordinal,
            };
            let mut pushed = String::new();
            id.push_to(&mut pushed);
            assert_eq!(pushed, id.to_string());
        }
    }
}
