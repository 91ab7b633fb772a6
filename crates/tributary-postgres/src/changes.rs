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
use tributary_core::debezium::Encoding;
use tributary_core::{ChangeEvent, EventId, Op, Position, Row, SnapshotMarker, SourceInfo, Value};

use crate::catalog::TableShape;
use crate::pgoutput::{Datum, OldTuple, Tuple};
use crate::toast::RowImages;
use crate::Error;

/// Names and settings every event of a source carries.
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub name: Arc<str>,
    pub db: Arc<str>,
    /// How the source's values are written as Debezium JSON.
    pub encoding: Encoding,
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
pub fn build_row<'a>(shape: &TableShape, fields: impl IntoIterator<Item = Option<&'a str>>) -> Row {
    Row::new(shape.columns.clone(), map_values(shape, fields))
}

/// The mapped values of one row's text fields, in column order.
pub fn map_values<'a>(
    shape: &TableShape,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) -> Vec<Value> {
    fields
        .into_iter()
        .zip(&shape.mappings)
        .map(|(f, m)| match f {
            None => Value::Null,
            Some(text) => m.map(text),
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

/// The texts of the columns an update left unchanged (TOAST markers in
/// `new`) that are known: from the old full image, else as recalled.
fn carried_values<'a>(
    shape: &'a TableShape,
    new: &Tuple,
    old_full: Option<&'a Tuple>,
    recalled: &'a [(usize, String)],
) -> Vec<(&'a str, &'a [u8])> {
    let mut out = Vec::new();
    for (i, datum) in new.iter().enumerate() {
        if !matches!(datum, Datum::UnchangedToast) {
            continue;
        }
        let text = match old_full.and_then(|t| t.get(i)) {
            Some(Datum::Text(b)) => Some(b.as_ref()),
            _ => recalled
                .iter()
                .find(|(c, _)| *c == i)
                .map(|(_, t)| t.as_bytes()),
        };
        if let (Some(text), Some(column)) = (text, shape.columns.get(i)) {
            out.push((column.as_str(), text));
        }
    }
    out
}

/// A row after unchanged-TOAST columns were filled from remembered images.
struct Filled {
    row: Row,
    /// Columns never seen, left out of `row`.
    absent: Vec<String>,
    /// The texts recalled, by column index.
    recalled: Vec<(usize, String)>,
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
                commit: Position::new(tx.commit_lsn),
                ordinal,
            },
            table: shape.table.clone(),
            schema: shape.schema.clone(),
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
                encoding: self.ctx.encoding,
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
        let old_key = before.as_ref().and_then(|b| key_of(&shape, b));
        let key_changed = old_key.is_some() && old_key != new_key;
        // …then from the images remembered for this row, under the key it
        // had before this change; never a placeholder.
        let image_key = if key_changed { &old_key } else { &new_key };
        let Filled {
            row: after,
            absent: missing,
            recalled,
        } = self.fill_remembered(&shape, after, missing, image_key.as_ref(), images)?;
        images.remember(&shape, new_key.as_ref(), new, self.position())?;
        if key_changed {
            // The row lives on under its new key: the values this update left
            // unchanged must be found there by the next change too.
            let carried = carried_values(&shape, new, old_full, &recalled);
            images.remember_values(&shape, new_key.as_ref(), &carried, self.position())?;
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
                Datum::Text(b) | Datum::Binary(b) => mapping.map(self.text(shape, i, b)?),
            });
        }
        Ok((Row::new(shape.columns.clone(), values), missing))
    }

    /// Fills missing columns from remembered images; a column never seen is
    /// omitted from the row and named in `source.unchanged_toast`. Also
    /// returns the texts recalled, by column index.
    fn fill_remembered(
        &self,
        shape: &TableShape,
        row: Row,
        missing: Vec<usize>,
        key: Option<&Row>,
        images: &mut dyn RowImages,
    ) -> Result<Filled, Error> {
        if missing.is_empty() {
            return Ok(Filled {
                row,
                absent: Vec::new(),
                recalled: Vec::new(),
            });
        }
        let mut values = row.values().to_vec();
        let mut absent = Vec::new();
        let mut recalled = Vec::new();
        for &i in &missing {
            let column = &shape.columns[i];
            match images.recall(shape, key, column, self.position())? {
                Some(text) => {
                    values[i] = shape.mappings[i].map(&text);
                    recalled.push((i, text));
                }
                None => absent.push(i),
            }
        }
        if absent.is_empty() {
            return Ok(Filled {
                row: Row::new(shape.columns.clone(), values),
                absent: Vec::new(),
                recalled,
            });
        }
        let keep: Vec<usize> = (0..values.len()).filter(|i| !absent.contains(i)).collect();
        let columns: Arc<[String]> = keep.iter().map(|&i| shape.columns[i].clone()).collect();
        let values = keep.iter().map(|&i| values[i].clone()).collect();
        let names = absent.iter().map(|&i| shape.columns[i].clone()).collect();
        Ok(Filled {
            row: Row::new(columns, values),
            absent: names,
            recalled,
        })
    }

    fn text<'b>(&self, shape: &TableShape, i: usize, b: &'b Bytes) -> Result<&'b str, Error> {
        std::str::from_utf8(b).map_err(|_| Error::InvalidUtf8 {
            table: shape.table.to_string(),
            column: shape.columns[i].clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use tributary_core::TableRef;
    use tributary_state::StateStore;

    use super::*;
    use crate::toast::StoredRowImages;
    use crate::value_mapping::Mapping;

    /// `docs (id int8 PRIMARY KEY, n int8, body text)`, `body` stored out of line.
    fn shape() -> TableShape {
        TableShape {
            table: Arc::new(TableRef::new("public", "docs")),
            columns: vec!["id".to_owned(), "n".to_owned(), "body".to_owned()].into(),
            mappings: [20, 20, 25]
                .iter()
                .map(|&oid| Mapping::builtin(oid).unwrap())
                .collect(),
            key: vec![0],
            key_columns: vec!["id".to_owned()].into(),
            schema: tributary_core::TableSchema::untyped(&["id", "n", "body"], 1),
        }
    }

    fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn decoder() -> ChangeDecoder {
        let mut d = ChangeDecoder::new(SourceContext {
            name: "src".into(),
            db: "app".into(),
            encoding: Encoding::default(),
        });
        d.set_relation(1, shape());
        d
    }

    fn tx(d: &mut ChangeDecoder, commit_lsn: u64) {
        d.begin(TxContext {
            xid: 1,
            commit_lsn,
            commit_time_us: 0,
            last_committed: 0,
        });
    }

    fn body(event: &ChangeEvent) -> Option<Value> {
        let after = event.after.as_ref().unwrap();
        let i = after.columns().iter().position(|c| c == "body")?;
        Some(after.values()[i].clone())
    }

    /// A large value is written once in full, then the row's key changes
    /// twice (K1 → K2 → K1) and its other column once, each time with the
    /// value left unchanged (a TOAST marker). Every event must carry the
    /// value, and the newest one: after K1 → K2 the old K1 image is stale.
    #[test]
    fn unchanged_toast_follows_the_row_through_key_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut images = StoredRowImages::new(store, "src");
        let mut d = decoder();
        let (v1, v2) = ("a".repeat(5000), "b".repeat(5000));

        tx(&mut d, 100);
        d.insert(1, &vec![text("1"), text("0"), text(&v1)], 90, &mut images)
            .unwrap();
        d.commit();

        // K1 → K2, body unchanged: the create of K2 takes K1's value.
        tx(&mut d, 200);
        let old = OldTuple::Key(vec![text("1"), Datum::Null, Datum::Null]);
        let new = vec![text("2"), text("0"), Datum::UnchangedToast];
        let events = d.update(1, Some(&old), &new, 190, &mut images).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].op, Op::Create);
        assert_eq!(body(&events[1]), Some(Value::Text(v1.as_str().into())));
        assert!(events[1].source.unchanged_toast.is_empty());
        d.commit();

        // K2 gets a new body, written in full.
        tx(&mut d, 300);
        let new = vec![text("2"), text("1"), text(&v2)];
        d.update(1, None, &new, 290, &mut images).unwrap();
        d.commit();

        // K2 → K1 with the body unchanged: the value is K2's (v2), not the
        // stale one remembered under K1 (v1).
        tx(&mut d, 400);
        let old = OldTuple::Key(vec![text("2"), Datum::Null, Datum::Null]);
        let new = vec![text("1"), text("1"), Datum::UnchangedToast];
        let events = d.update(1, Some(&old), &new, 390, &mut images).unwrap();
        assert_eq!(body(&events[1]), Some(Value::Text(v2.as_str().into())));
        d.commit();

        // An update of K1 that leaves the body unchanged, in a later
        // transaction and in the same one as a key change.
        tx(&mut d, 500);
        let new = vec![text("1"), text("2"), Datum::UnchangedToast];
        let events = d.update(1, None, &new, 490, &mut images).unwrap();
        assert_eq!(body(&events[0]), Some(Value::Text(v2.as_str().into())));
        let old = OldTuple::Key(vec![text("1"), Datum::Null, Datum::Null]);
        let new = vec![text("3"), text("2"), Datum::UnchangedToast];
        d.update(1, Some(&old), &new, 491, &mut images).unwrap();
        let new = vec![text("3"), text("3"), Datum::UnchangedToast];
        let events = d.update(1, None, &new, 492, &mut images).unwrap();
        assert_eq!(body(&events[0]), Some(Value::Text(v2.as_str().into())));
        assert!(events[0].source.unchanged_toast.is_empty());
        d.commit();
    }

    /// A value never seen in full stays out of the row and is named, never
    /// filled with a placeholder or null.
    #[test]
    fn a_value_never_seen_is_named_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut images = StoredRowImages::new(store, "src");
        let mut d = decoder();
        tx(&mut d, 100);
        let new = vec![text("9"), text("0"), Datum::UnchangedToast];
        let events = d.update(1, None, &new, 90, &mut images).unwrap();
        assert_eq!(body(&events[0]), None);
        assert_eq!(events[0].source.unchanged_toast, vec!["body".to_owned()]);
    }
}
