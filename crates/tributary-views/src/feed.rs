//! One source's changes into the views: each change turned into the rows
//! it retracts and inserts, staged until the source says its transaction
//! is whole, then kept durably and applied to the engine at one time.
//!
//! The engine's inputs are each table's current rows, so the feed keeps
//! them (latest row per key): a delete or an update names its row by key,
//! and under PostgreSQL's default replica identity carries no old row; an
//! unchanged TOASTed value is taken from the kept row. The kept rows and the
//! checkpoint they reflect are committed in one state-store transaction
//! before the engine sees them, so a restart rebuilds exactly the state of
//! that checkpoint from the store ([`SourceFeed::restore`]) and skips the
//! changes the source then sends again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tributary_core::source::Checkpoint;
use tributary_core::{ChangeEvent, Op, Position, TableRef, Value};
use tributary_state::{RowWrite, StateStore};

use crate::datum::{Datum, Row};
use crate::engine::Change;
use crate::set::{Input, ViewSet};
use crate::sql::Kind;
use crate::ViewError;

/// One change, staged until its transaction is whole.
struct Staged {
    commit: Position,
    op: Op,
    /// The source's commit time, in microseconds since the Unix epoch.
    committed_us: i64,
    changes: Vec<Change>,
    /// (input, key, row): the kept row after the change (`None`: gone).
    writes: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
}

/// The views' consumer of one source.
pub struct SourceFeed {
    source: String,
    set: Arc<ViewSet>,
    store: StateStore,
    /// Kept tables by name: their input index.
    tables: HashMap<TableRef, usize>,
    /// Per kept input: key → current row.
    rows: HashMap<usize, BTreeMap<Row, Row>>,
    staged: Vec<Staged>,
    /// What the kept rows reflect (`None`: nothing yet).
    position: Option<Checkpoint>,
    /// The names the store keeps this source's rows under, built once and
    /// shared by every [`Keep`].
    names: Arc<KeptNames>,
}

/// A source's name and its kept inputs' table names, as the store has them.
#[derive(Debug)]
struct KeptNames {
    source: String,
    tables: HashMap<usize, String>,
}

/// What one [`SourceFeed::reached`] made visible.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Source transactions applied, one logical time each.
    pub transactions: usize,
    /// The commit time of each streamed (not snapshot) transaction, in
    /// microseconds since the Unix epoch: the views' freshness.
    commits_us: Vec<i64>,
    /// How long the engine took to make the transactions visible.
    pub stepped: std::time::Duration,
    /// When they became visible, in microseconds since the Unix epoch.
    pub visible_us: i64,
}

impl Applied {
    /// The commit time of each streamed transaction made visible.
    pub fn commits_us(&self) -> &[i64] {
        &self.commits_us
    }
}

/// The kept rows a [`SourceFeed::reached`] changed, and its checkpoint:
/// to be committed to the state store, in order, before the checkpoint
/// counts as done.
#[derive(Debug)]
pub struct Keep {
    names: Arc<KeptNames>,
    checkpoint: Checkpoint,
    /// (input, encoded key) → the encoded row after the step (`None`: gone).
    writes: BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>,
}

impl Keep {
    /// Takes in the next keep of the same source: its rows win, its
    /// checkpoint is the one kept.
    pub fn absorb(&mut self, later: Keep) {
        debug_assert_eq!(self.names.source, later.names.source);
        self.writes.extend(later.writes);
        self.checkpoint = later.checkpoint;
    }

    /// Commits the rows with the checkpoint, in one state-store transaction.
    pub fn commit(&self, store: &StateStore) -> Result<(), ViewError> {
        let writes: Vec<RowWrite<'_>> = self
            .writes
            .iter()
            .map(|((input, key), row)| RowWrite {
                table: &self.names.tables[input],
                key,
                row: row.as_deref(),
            })
            .collect();
        store.commit_view_rows(&self.names.source, &self.checkpoint, &writes)?;
        Ok(())
    }
}

/// What restoring found: the feeds and how long it took.
pub struct Restored {
    pub feeds: Vec<SourceFeed>,
    pub rows: usize,
    pub took: std::time::Duration,
}

impl SourceFeed {
    /// Restores every fed source's kept rows from `store` and applies them
    /// to the engine as its first time.
    pub fn restore(set: &Arc<ViewSet>, store: &StateStore) -> Result<Restored, ViewError> {
        let began = Instant::now();
        let mut feeds = Vec::new();
        let mut changes = Vec::new();
        for source in set.fed_sources() {
            let names = Arc::new(KeptNames {
                source: source.clone(),
                tables: set
                    .kept(&source)
                    .iter()
                    .map(|&i| (i, set.input(i).table.to_string()))
                    .collect(),
            });
            let mut feed = SourceFeed {
                tables: set
                    .kept(&source)
                    .iter()
                    .map(|&i| (set.input(i).table.clone(), i))
                    .collect(),
                rows: set
                    .kept(&source)
                    .iter()
                    .map(|&i| (i, BTreeMap::new()))
                    .collect(),
                position: store.view_position(&source)?,
                source,
                set: Arc::clone(set),
                store: store.clone(),
                staged: Vec::new(),
                names: Arc::clone(&names),
            };
            let by_name: HashMap<&str, usize> =
                names.tables.iter().map(|(&i, t)| (t.as_str(), i)).collect();
            for (table, key, row) in store.view_rows(&feed.source)? {
                // A table no longer captured (or no longer keyed) is left out.
                let Some(&input) = by_name.get(table.as_str()) else {
                    continue;
                };
                let decode = |bytes: &[u8]| {
                    postcard::from_bytes::<Row>(bytes).map_err(|source| ViewError::Corrupt {
                        table: table.clone(),
                        source,
                    })
                };
                let (key, row) = (decode(&key)?, decode(&row)?);
                if row.len() != set.input(input).columns.len() {
                    // Written when the table had other columns: the
                    // source's snapshot has to provide it again.
                    return Err(ViewError::BadChange {
                        table,
                        reason: "its kept rows have another number of columns than the table"
                            .into(),
                    });
                }
                changes.push((input, row.clone(), 1));
                feed.rows.entry(input).or_default().insert(key, row);
            }
            feeds.push(feed);
        }
        let rows = changes.len();
        set.engine().apply(changes);
        Ok(Restored {
            feeds,
            rows,
            took: began.elapsed(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The state store the feed's rows are kept in.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The checkpoint the kept rows reflect.
    pub fn position(&self) -> Option<Checkpoint> {
        self.position
    }

    /// Stages the changes of `events` (in the source's order); those the
    /// kept rows already reflect are skipped.
    pub fn stage(&mut self, events: &[ChangeEvent]) -> Result<(), ViewError> {
        for event in events {
            if self
                .position
                .is_some_and(|p| p.completes(event.id.commit, event.op))
            {
                continue;
            }
            let Some(&input) = self.tables.get(&event.table) else {
                continue;
            };
            let staged = self.change(input, event)?;
            self.staged.push(staged);
        }
        Ok(())
    }

    /// The source has sent everything up to `checkpoint`: the whole
    /// transactions staged are applied to the engine, one logical time
    /// each; the returned [`Keep`] holds what must then be kept durably
    /// with the checkpoint.
    ///
    /// Visible first, durable next: the state-store commit (an fsync) is
    /// not on the path from commit to visible, and keeps of several steps
    /// can go in one commit ([`Keep::absorb`]). A read can see transactions
    /// a crash then takes back to the last kept checkpoint; the view then
    /// shows that earlier, whole state and catches up as the source sends
    /// the rest again. The checkpoint must be reported done (and the source
    /// confirmed) only once its keep is committed, so nothing is lost.
    pub fn reached(&mut self, checkpoint: Checkpoint) -> (Applied, Keep) {
        let whole = self
            .staged
            .iter()
            .take_while(|s| checkpoint.completes(s.commit, s.op))
            .count();
        let mut transactions: Vec<Vec<Change>> = Vec::new();
        let mut commit = None;
        let mut applied = Applied::default();
        let mut keep = Keep {
            names: Arc::clone(&self.names),
            checkpoint,
            writes: BTreeMap::new(),
        };
        for s in self.staged.drain(..whole) {
            if commit != Some(s.commit) || transactions.is_empty() {
                transactions.push(Vec::new());
                commit = Some(s.commit);
                if s.op != Op::Read {
                    applied.commits_us.push(s.committed_us);
                }
            }
            transactions
                .last_mut()
                .expect("pushed above")
                .extend(s.changes);
            for (input, key, row) in s.writes {
                keep.writes.insert((input, key), row);
            }
        }
        applied.transactions = transactions.len();
        let began = Instant::now();
        if !transactions.is_empty() {
            self.set.engine().apply_all(transactions);
        }
        applied.stepped = began.elapsed();
        applied.visible_us = tributary_core::clock::now_us();
        self.position = Some(checkpoint);
        (applied, keep)
    }

    /// One event as the rows it retracts and inserts.
    fn change(&mut self, input: usize, event: &ChangeEvent) -> Result<Staged, ViewError> {
        // The set is shared: hold it by its Arc, so the spec is borrowed,
        // not copied, for every event.
        let set = Arc::clone(&self.set);
        let spec = set.input(input);
        let kept = self.rows.entry(input).or_default();
        let mut staged = Staged {
            commit: event.id.commit,
            op: event.op,
            committed_us: event.source.ts_us,
            changes: Vec::new(),
            writes: Vec::new(),
        };
        let encode = |row: &Row| postcard::to_allocvec(row).expect("rows serialize");
        match event.op {
            Op::Truncate => {
                for (key, row) in std::mem::take(kept) {
                    staged.writes.push((input, encode(&key), None));
                    staged.changes.push((input, row, -1));
                }
            }
            Op::Delete => {
                let key = key_of(spec, event)?;
                if let Some(old) = kept.remove(&key) {
                    staged.changes.push((input, old, -1));
                }
                staged.writes.push((input, encode(&key), None));
            }
            Op::Read | Op::Create | Op::Update => {
                let key_only = key_of(spec, event)?;
                let old = kept.get(&key_only);
                let row = row_of(spec, event, old)?;
                let key: Row = spec.key.iter().map(|&k| row[k].clone()).collect();
                if let Some(old) = kept.remove(&key) {
                    staged.changes.push((input, old, -1));
                }
                staged
                    .writes
                    .push((input, encode(&key), Some(encode(&row))));
                staged.changes.push((input, row.clone(), 1));
                kept.insert(key, row);
            }
        }
        Ok(staged)
    }
}

/// The key of the row an event changes, from its key image (a delete has
/// nothing else) or its new row.
fn key_of(spec: &Input, event: &ChangeEvent) -> Result<Row, ViewError> {
    let image = event.key.as_ref().or(event.after.as_ref());
    spec.key
        .iter()
        .map(|&k| {
            let (name, kind) = &spec.columns[k];
            let value = image
                .and_then(|r| r.get(name))
                .ok_or_else(|| bad(spec, format!("its key column \"{name}\" is missing")))?;
            datum(spec, name, *kind, value)
        })
        .collect()
}

/// The new row of an insert or update, in the described column order;
/// values the event leaves out (unchanged TOAST) come from the kept row.
fn row_of(spec: &Input, event: &ChangeEvent, old: Option<&Row>) -> Result<Row, ViewError> {
    let after = event
        .after
        .as_ref()
        .ok_or_else(|| bad(spec, "it has no new row".into()))?;
    spec.columns
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| match after.get(name) {
            Some(value) => datum(spec, name, *kind, value),
            None if *kind == Kind::Unsupported => Ok(Datum::Null),
            None => match (old, event.source.unchanged_toast.iter().any(|c| c == name)) {
                (Some(old), true) => Ok(old[i].clone()),
                _ => Err(bad(spec, format!("its column \"{name}\" is missing"))),
            },
        })
        .collect()
}

fn datum(spec: &Input, name: &str, kind: Kind, value: &Value) -> Result<Datum, ViewError> {
    if kind == Kind::Unsupported {
        // Never read by a view (the planner refuses to name it).
        return Ok(Datum::Null);
    }
    Datum::try_from(value).map_err(|e| bad(spec, format!("column \"{name}\": {e}")))
}

fn bad(spec: &Input, reason: String) -> ViewError {
    ViewError::BadChange {
        table: format!("{}.{}", spec.source, spec.table),
        reason,
    }
}
