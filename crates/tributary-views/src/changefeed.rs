//! A view's changes as change events, for a sink that follows the view
//! (`[[sink]] view = "…"`): each key's row created, updated or deleted,
//! as Debezium's `c`/`u`/`d`.
//!
//! The changefeed keeps an image of what it has sent (key → row). Each
//! batch of the view's changes is applied to the image and becomes the
//! events between the old and the new row per key. The image is kept in
//! the state store up to the position every sink has made durable; after
//! a restart the first batch is the difference between that image and the
//! view as it is rehydrated, so a sink that had the durable state ends
//! equal to the view, with nothing missed. Events sent after the durable
//! position and before a crash are not sent again as such: the difference
//! sends each key's latest row instead, which a sink applying rows by key
//! (the PostgreSQL sink, a compacted topic) ends the same with.
//!
//! Positions are `epoch << 32 | batch`, with a new epoch at every start, so
//! an event id (`<view>:<epoch>/<batch>:<n>`) never names two different
//! events: NATS' duplicate window drops only true redeliveries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tributary_core::debezium::Encoding;
use tributary_core::source::Checkpoint;
use tributary_core::{
    ChangeEvent, Column, EventId, Op, Position, SnapshotMarker, SourceInfo, TableRef, TableSchema,
    Value,
};
use tributary_state::{RowWrite, StateStore};

use crate::datum::Row;
use crate::sql::{Kind, Width};
use crate::{ViewError, ViewSet};

/// The events of one batch of a view's changes, and the checkpoint past them.
#[derive(Debug)]
pub struct FeedBatch {
    pub events: Vec<ChangeEvent>,
    pub checkpoint: Checkpoint,
}

/// Encoded key → encoded row (`None`: deleted), to be kept.
type ImageWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The image's table name in the state store.
const IMAGE: &str = "image";

/// One view's changefeed.
pub struct Changefeed {
    set: Arc<ViewSet>,
    view: usize,
    store: StateStore,
    /// What the image is kept under in the state store.
    kept_as: String,
    /// Output columns that name a row.
    key: Vec<usize>,
    source: Arc<str>,
    table: Arc<TableRef>,
    schema: Arc<TableSchema>,
    columns: Arc<[String]>,
    key_columns: Arc<[String]>,
    /// Key → the row last sent.
    image: BTreeMap<Row, Row>,
    /// Image writes of the batches sent and not yet durable, by position.
    unkept: VecDeque<(Position, ImageWrites)>,
    epoch: u64,
    batch: u64,
    last_commit: Position,
}

impl Changefeed {
    /// The changefeed of view `name`, keyed by `key` (column names) or, by
    /// default, the key its SQL gives it; its image restored from `store`.
    /// `resume` is the checkpoint every sink following it reached.
    pub fn open(
        set: &Arc<ViewSet>,
        name: &str,
        key: Option<&[String]>,
        store: &StateStore,
        resume: Option<Checkpoint>,
    ) -> Result<Self, ViewError> {
        let view = set
            .find(name)
            .ok_or_else(|| ViewError::UnknownView(name.to_owned()))?;
        let declared = &set.views()[view];
        let key = match key {
            Some(names) => names
                .iter()
                .map(|k| {
                    declared
                        .columns
                        .iter()
                        .position(|c| &c.name == k)
                        .ok_or_else(|| ViewError::ChangefeedKey {
                            view: name.to_owned(),
                            reason: format!("it has no column \"{k}\""),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => declared
                .key
                .clone()
                .ok_or_else(|| ViewError::ChangefeedKey {
                    view: name.to_owned(),
                    reason: "its rows have no key (no GROUP BY or DISTINCT)".into(),
                })?,
        };
        let columns: Arc<[String]> = declared.columns.iter().map(|c| c.name.clone()).collect();
        let schema = Arc::new(TableSchema::new(
            declared
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| Column {
                    name: c.name.clone(),
                    sql_type: sql_type(c.kind).to_owned(),
                    nullable: !key.contains(&i),
                })
                .collect(),
            key.clone(),
        ));
        let kept_as = format!("@changefeed:{name}");
        let mut image = BTreeMap::new();
        for (_, k, row) in store.view_rows(&kept_as)? {
            let decode = |bytes: &[u8]| {
                postcard::from_bytes::<Row>(bytes).map_err(|source| ViewError::Corrupt {
                    table: kept_as.clone(),
                    source,
                })
            };
            let row = decode(&row)?;
            // A row of another shape was kept before the view's SQL
            // changed: left out (the sinks keep what they had of it).
            if row.len() == columns.len() {
                image.insert(decode(&k)?, row);
            }
        }
        let kept = store.view_position(&kept_as)?.map(|c| c.position);
        let last = resume
            .map(|c| c.position)
            .max(kept)
            .unwrap_or(Position::START);
        Ok(Self {
            set: Arc::clone(set),
            view,
            store: store.clone(),
            kept_as,
            key_columns: key.iter().map(|&k| columns[k].clone()).collect(),
            key,
            source: name.into(),
            table: Arc::new(TableRef::new("public", name)),
            schema,
            columns,
            image,
            unkept: VecDeque::new(),
            epoch: (last.get() >> 32) + 1,
            batch: 0,
            last_commit: last,
        })
    }

    /// Starts following the view (`wake` is called when it changes) and
    /// returns the first batch: what the view differs from the image by.
    pub fn start(&mut self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<FeedBatch, ViewError> {
        let (rows, _) = self.set.engine().follow(self.view, wake);
        let mut changes: Vec<(Row, isize)> = rows.into_iter().collect();
        changes.extend(self.image.values().map(|row| (row.clone(), -1)));
        self.batch(changes)
    }

    /// The view's changes since the last batch; `None` when there are none.
    pub fn take(&mut self) -> Result<Option<FeedBatch>, ViewError> {
        let (changes, _) = self.set.engine().take(self.view);
        if changes.is_empty() {
            return Ok(None);
        }
        self.batch(changes).map(Some)
    }

    /// Every sink has made `position` durable: the image is kept up to it.
    pub fn durable(&mut self, position: Position) -> Result<(), ViewError> {
        let mut writes = BTreeMap::new();
        let mut reached = None;
        while self.unkept.front().is_some_and(|(p, _)| *p <= position) {
            let (p, w) = self.unkept.pop_front().expect("checked");
            writes.extend(w);
            reached = Some(p);
        }
        let Some(reached) = reached else {
            return Ok(());
        };
        let rows: Vec<RowWrite<'_>> = writes
            .iter()
            .map(|(key, row)| RowWrite {
                table: IMAGE,
                key,
                row: row.as_deref(),
            })
            .collect();
        let checkpoint = Checkpoint {
            position: reached,
            snapshot_complete: true,
            last_commit: None,
        };
        self.store
            .commit_view_rows(&self.kept_as, &checkpoint, &rows)?;
        Ok(())
    }

    /// Row changes as the events between each key's old and new row.
    fn batch(&mut self, changes: Vec<(Row, isize)>) -> Result<FeedBatch, ViewError> {
        let mut by_key: BTreeMap<Row, BTreeMap<Row, isize>> = BTreeMap::new();
        for (row, diff) in changes {
            let key = self.key_of(&row);
            *by_key.entry(key).or_default().entry(row).or_default() += diff;
        }
        let commit = Position::new(self.epoch << 32 | self.batch);
        self.batch += 1;
        let encode = |row: &Row| postcard::to_allocvec(row).expect("rows serialize");
        let mut events = Vec::new();
        let mut writes = BTreeMap::new();
        for (key, diffs) in by_key {
            let old = self.image.get(&key).cloned();
            let mut rows: BTreeMap<Row, isize> = BTreeMap::new();
            if let Some(old) = &old {
                rows.insert(old.clone(), 1);
            }
            for (row, diff) in diffs {
                *rows.entry(row).or_default() += diff;
            }
            rows.retain(|_, n| *n != 0);
            let new = match rows.len() {
                0 => None,
                1 => match rows.pop_first() {
                    Some((row, 1)) => Some(row),
                    _ => return Err(self.duplicate()),
                },
                _ => return Err(self.duplicate()),
            };
            let op = match (&old, &new) {
                (None, Some(_)) => Op::Create,
                (Some(o), Some(n)) if o != n => Op::Update,
                (Some(_), None) => Op::Delete,
                _ => continue,
            };
            writes.insert(encode(&key), new.as_ref().map(encode));
            let row = |r: &Row| {
                tributary_core::Row::new(
                    Arc::clone(&self.columns),
                    r.iter().map(Value::from).collect(),
                )
            };
            events.push(ChangeEvent {
                id: EventId {
                    source: Arc::clone(&self.source),
                    commit,
                    ordinal: events.len() as u64,
                },
                table: Arc::clone(&self.table),
                schema: Arc::clone(&self.schema),
                op,
                key: Some(tributary_core::Row::new(
                    Arc::clone(&self.key_columns),
                    key.iter().map(Value::from).collect(),
                )),
                before: old.as_ref().map(row),
                after: new.as_ref().map(row),
                source: SourceInfo {
                    name: Arc::clone(&self.source),
                    connector: "tributary-view",
                    db: Arc::clone(&self.source),
                    ts_us: tributary_core::clock::now_us(),
                    snapshot: SnapshotMarker::False,
                    tx_id: None,
                    lsn: Some(commit.get()),
                    sequence: None,
                    unchanged_toast: Vec::new(),
                    encoding: Encoding::default(),
                },
            });
            match new {
                Some(row) => self.image.insert(key, row),
                None => self.image.remove(&key),
            };
        }
        let checkpoint = Checkpoint {
            position: Position::new(commit.get() + 1),
            snapshot_complete: true,
            last_commit: Some(self.last_commit),
        };
        self.last_commit = commit;
        self.unkept.push_back((checkpoint.position, writes));
        Ok(FeedBatch { events, checkpoint })
    }

    fn key_of(&self, row: &Row) -> Row {
        self.key.iter().map(|&k| row[k].clone()).collect()
    }

    fn duplicate(&self) -> ViewError {
        ViewError::ChangefeedKey {
            view: self.source.to_string(),
            reason: format!(
                "two of its rows have the same ({})",
                self.key_columns.join(", ")
            ),
        }
    }
}

/// The SQL type a view column of `kind` has in a sink's table.
fn sql_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "boolean",
        Kind::Int(Width::I16) => "smallint",
        Kind::Int(Width::I32) => "integer",
        Kind::Int(Width::I64) => "bigint",
        Kind::Numeric => "numeric",
        Kind::Float => "double precision",
        Kind::Date => "date",
        Kind::Time => "time without time zone",
        Kind::Timestamp => "timestamp without time zone",
        Kind::TimestampTz => "timestamp with time zone",
        Kind::Uuid => "uuid",
        Kind::Bytes => "bytea",
        Kind::Text | Kind::Unknown | Kind::Unsupported => "text",
    }
}
