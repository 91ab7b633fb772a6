//! Turns decoded pgoutput changes of one transaction into [`ChangeEvent`]s.
//!
//! Synchronous and free of I/O: the source resolves each Relation's shape from
//! the catalog first, then feeds changes here. Update/delete semantics follow
//! Debezium: a key change becomes a delete (with its tombstone downstream)
//! followed by a create; with REPLICA IDENTITY DEFAULT `before` holds only the
//! key columns of a delete and is `null` for an update.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tributary_core::{ChangeEvent, EventId, Op, Row, SnapshotMarker, SourceInfo, Value};

use crate::catalog::TableShape;
use crate::pgoutput::{Datum, OldTuple, Tuple};
use crate::toast::RowImages;
use crate::value_mapping::MappingOptions;
use crate::Error;

/// Names and settings every event of a source carries.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub name: Arc<str>,
    pub db: Arc<str>,
    pub mapping: MappingOptions,
}

/// The transaction a change belongs to.
#[derive(Debug, Clone, Copy)]
pub struct TxContext {
    pub xid: u32,
    pub commit_lsn: u64,
    /// Commit time in microseconds since the Unix epoch.
    pub commit_time_us: i64,
    /// End LSN of the previous transaction (Debezium's `sequence[0]`).
    pub last_committed: u64,
}

/// Milliseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
pub const PG_EPOCH_MS: i64 = 946_684_800_000;

/// Maps text fields of one row onto its shape (`None` = SQL NULL).
pub fn build_row<'a>(
    shape: &TableShape,
    opts: MappingOptions,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) -> Row {
    Row::new(shape.columns.clone(), map_values(shape, opts, fields))
}

/// The mapped values of one row's text fields, in column order.
pub fn map_values<'a>(
    shape: &TableShape,
    opts: MappingOptions,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) -> Vec<Value> {
    fields
        .into_iter()
        .zip(&shape.mappings)
        .map(|(f, m)| match f {
            None => Value::Null,
            Some(text) => m.map(text, opts),
        })
        .collect()
}

/// The key of a full row image, or `None` for a table without one.
pub fn key_of(shape: &TableShape, row: &Row) -> Option<Row> {
    key_row(shape, shape.key_columns.clone(), row.values())
}

/// The key row (named by `columns`) of a full row's values; `None`
/// without a key.
pub fn key_row(shape: &TableShape, columns: Arc<[String]>, values: &[Value]) -> Option<Row> {
    if !shape.has_key() {
        return None;
    }
    let value = |i: usize| values.get(i).cloned().unwrap_or(Value::Null);
    if let [only] = shape.key[..] {
        return Some(Row::single(columns, value(only)));
    }
    Some(Row::from_values(
        columns,
        shape.key.iter().map(|&i| value(i)),
    ))
}

/// The row images of one event.
struct Images {
    key: Option<Row>,
    before: Option<Row>,
    after: Option<Row>,
    /// Columns left out of `after` (unchanged TOAST never seen).
    missing: Vec<String>,
}

/// Decodes the changes of a stream, one transaction at a time.
pub struct ChangeDecoder {
    ctx: SourceContext,
    relations: HashMap<u32, Arc<TableShape>>,
    tx: Option<TxContext>,
    ordinal: u64,
}

impl ChangeDecoder {
    pub fn new(ctx: SourceContext) -> Self {
        Self {
            ctx,
            relations: HashMap::new(),
            tx: None,
            ordinal: 0,
        }
    }

    /// Registers (or replaces, after a schema change) a relation's shape.
    pub fn set_relation(&mut self, oid: u32, shape: TableShape) {
        self.relations.insert(oid, Arc::new(shape));
    }

    pub fn begin(&mut self, tx: TxContext) {
        self.tx = Some(tx);
        self.ordinal = 0;
    }

    pub fn commit(&mut self) {
        self.tx = None;
    }

    /// Forgets a transaction cut off by a broken stream; the server sends it
    /// again, whole, on the next session.
    pub fn abandon(&mut self) {
        self.tx = None;
    }

    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// The relation's shape, shared (not copied) per change.
    fn shape(&self, oid: u32) -> Result<Arc<TableShape>, Error> {
        self.relations
            .get(&oid)
            .cloned()
            .ok_or(Error::UnknownRelation { oid })
    }

    fn event(
        &mut self,
        shape: &TableShape,
        op: Op,
        change_lsn: u64,
        images: Images,
    ) -> ChangeEvent {
        let Images {
            key,
            before,
            after,
            missing,
        } = images;
        let tx = self.tx.unwrap_or(TxContext {
            xid: 0,
            commit_lsn: change_lsn,
            commit_time_us: 0,
            last_committed: 0,
        });
        let ordinal = self.ordinal;
        self.ordinal += 1;
        ChangeEvent {
            id: EventId {
                source: self.ctx.name.clone(),
                commit: tx.commit_lsn,
                ordinal,
            },
            table: shape.table.clone(),
            op,
            key,
            before,
            after,
            source: SourceInfo {
                name: self.ctx.name.clone(),
                connector: "postgresql",
                db: self.ctx.db.clone(),
                ts_us: tx.commit_time_us,
                snapshot: SnapshotMarker::False,
                tx_id: Some(u64::from(tx.xid)),
                lsn: Some(change_lsn),
                sequence: Some((tx.last_committed, change_lsn)),
                unchanged_toast: missing,
            },
        }
    }

    pub fn insert(
        &mut self,
        oid: u32,
        new: &Tuple,
        lsn: u64,
        images: &mut dyn RowImages,
    ) -> Result<Vec<ChangeEvent>, Error> {
        let shape = self.shape(oid)?;
        // An insert carries every value in full: nothing can be missing.
        let (after, _) = self.tuple_row(&shape, new, None)?;
        let key = key_of(&shape, &after);
        images.remember(&shape, key.as_ref(), new, self.position())?;
        Ok(vec![self.event(
            &shape,
            Op::Create,
            lsn,
            Images {
                key,
                before: None,
                after: Some(after),
                missing: vec![],
            },
        )])
    }

    pub fn update(
        &mut self,
        oid: u32,
        old: Option<&OldTuple>,
        new: &Tuple,
        lsn: u64,
        images: &mut dyn RowImages,
    ) -> Result<Vec<ChangeEvent>, Error> {
        let shape = self.shape(oid)?;
        let before = match old {
            Some(o) => Some(self.tuple_row(&shape, o.tuple(), None)?.0),
            None => None,
        };
        let old_full = match old {
            Some(OldTuple::Full(t)) => Some(t),
            _ => None,
        };
        // Unchanged TOAST: first from the old image (REPLICA IDENTITY FULL)…
        let (after, missing) = self.tuple_row(&shape, new, old_full)?;
        let new_key = key_of(&shape, &after);
        // …then from the images remembered for this row; never a placeholder.
        let (after, missing) =
            self.fill_remembered(&shape, after, missing, new_key.as_ref(), images)?;
        images.remember(&shape, new_key.as_ref(), new, self.position())?;
        let old_key = before.as_ref().and_then(|b| key_of(&shape, b));
        if old_key.is_some() && old_key != new_key {
            // A key change: delete of the old key, create of the new (as Debezium).
            let delete = self.event(
                &shape,
                Op::Delete,
                lsn,
                Images {
                    key: old_key,
                    before,
                    after: None,
                    missing: vec![],
                },
            );
            let create = self.event(
                &shape,
                Op::Create,
                lsn,
                Images {
                    key: new_key,
                    before: None,
                    after: Some(after),
                    missing,
                },
            );
            return Ok(vec![delete, create]);
        }
        // With DEFAULT identity PostgreSQL sends no old image: `before` is null.
        let before = if old_full.is_some() { before } else { None };
        Ok(vec![self.event(
            &shape,
            Op::Update,
            lsn,
            Images {
                key: new_key,
                before,
                after: Some(after),
                missing,
            },
        )])
    }

    pub fn delete(
        &mut self,
        oid: u32,
        old: &OldTuple,
        lsn: u64,
    ) -> Result<Vec<ChangeEvent>, Error> {
        let shape = self.shape(oid)?;
        // A key-only image maps to the key columns with the others null.
        let (before, _) = self.tuple_row(&shape, old.tuple(), None)?;
        let key = key_of(&shape, &before);
        Ok(vec![self.event(
            &shape,
            Op::Delete,
            lsn,
            Images {
                key,
                before: Some(before),
                after: None,
                missing: vec![],
            },
        )])
    }

    pub fn truncate(&mut self, oids: &[u32], lsn: u64) -> Result<Vec<ChangeEvent>, Error> {
        let mut out = Vec::with_capacity(oids.len());
        for &oid in oids {
            // Truncates of tables we do not capture (cascades) are not ours.
            let Some(shape) = self.relations.get(&oid).cloned() else {
                continue;
            };
            out.push(self.event(
                &shape,
                Op::Truncate,
                lsn,
                Images {
                    key: None,
                    before: None,
                    after: None,
                    missing: vec![],
                },
            ));
        }
        Ok(out)
    }

    /// Position of the next event: (commit LSN, ordinal).
    fn position(&self) -> (u64, u64) {
        (self.tx.map(|t| t.commit_lsn).unwrap_or(0), self.ordinal)
    }

    /// Maps a tuple; unchanged-TOAST columns come from `fallback` when it has
    /// them, else are null for now and reported as missing.
    fn tuple_row(
        &self,
        shape: &TableShape,
        tuple: &Tuple,
        fallback: Option<&Tuple>,
    ) -> Result<(Row, Vec<usize>), Error> {
        let mut missing = Vec::new();
        let mut values = Vec::with_capacity(shape.columns.len());
        for (i, mapping) in shape.mappings.iter().enumerate() {
            let mut datum = tuple.get(i).unwrap_or(&Datum::Null);
            if let (Datum::UnchangedToast, Some(old @ Datum::Text(_))) =
                (datum, fallback.and_then(|f| f.get(i)))
            {
                datum = old;
            }
            values.push(match datum {
                Datum::Null => Value::Null,
                Datum::UnchangedToast => {
                    missing.push(i);
                    Value::Null
                }
                Datum::Text(b) | Datum::Binary(b) => {
                    mapping.map(self.text(shape, i, b)?, self.ctx.mapping)
                }
            });
        }
        Ok((Row::new(shape.columns.clone(), values), missing))
    }

    /// Fills missing columns from remembered images; a column never seen is
    /// omitted from the row and named in `source.unchanged_toast`.
    fn fill_remembered(
        &self,
        shape: &TableShape,
        row: Row,
        missing: Vec<usize>,
        key: Option<&Row>,
        images: &mut dyn RowImages,
    ) -> Result<(Row, Vec<String>), Error> {
        if missing.is_empty() {
            return Ok((row, Vec::new()));
        }
        let mut values = row.values().to_vec();
        let mut absent = Vec::new();
        for &i in &missing {
            let column = &shape.columns[i];
            match images.recall(shape, key, column, self.position())? {
                Some(text) => values[i] = shape.mappings[i].map(&text, self.ctx.mapping),
                None => absent.push(i),
            }
        }
        if absent.is_empty() {
            return Ok((Row::new(shape.columns.clone(), values), Vec::new()));
        }
        let keep: Vec<usize> = (0..values.len()).filter(|i| !absent.contains(i)).collect();
        let columns: Arc<[String]> = keep.iter().map(|&i| shape.columns[i].clone()).collect();
        let values = keep.iter().map(|&i| values[i].clone()).collect();
        let names = absent.iter().map(|&i| shape.columns[i].clone()).collect();
        Ok((Row::new(columns, values), names))
    }

    fn text<'b>(&self, shape: &TableShape, i: usize, b: &'b Bytes) -> Result<&'b str, Error> {
        std::str::from_utf8(b).map_err(|_| Error::InvalidUtf8 {
            table: shape.table.to_string(),
            column: shape.columns[i].clone(),
        })
    }
}
