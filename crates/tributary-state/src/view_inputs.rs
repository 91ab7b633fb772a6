//! The current rows of every table views read, per source, with the
//! checkpoint they reflect: what rebuilds the views after a restart without
//! reading the sources' tables again.
//!
//! The rows and their checkpoint are written in one transaction, so after a
//! crash the stored rows are exactly those of the checkpoint next to them:
//! never half a source transaction, never rows the checkpoint does not
//! cover. Keys and rows are opaque bytes here; the view engine encodes them.

use redb::{ReadableDatabase, TableDefinition};

use tributary_core::source::Checkpoint;

use crate::{StateError, StateStore};

/// (source, table, encoded key) → encoded row.
pub(crate) const VIEW_ROWS: TableDefinition<(&str, &str, &[u8]), &[u8]> =
    TableDefinition::new("view_rows");
/// source → checkpoint (JSON) the stored rows reflect.
pub(crate) const VIEW_POSITIONS: TableDefinition<&str, &str> =
    TableDefinition::new("view_positions");

/// One stored row change: `row` `None` removes the key.
pub struct RowWrite<'a> {
    pub table: &'a str,
    pub key: &'a [u8],
    pub row: Option<&'a [u8]>,
}

/// One stored row: table, encoded key, encoded row.
pub type StoredRow = (String, Vec<u8>, Vec<u8>);

impl StateStore {
    /// The checkpoint the stored view rows of `source` reflect.
    pub fn view_position(&self, source: &str) -> Result<Option<Checkpoint>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(VIEW_POSITIONS)?;
        match table.get(source)? {
            Some(v) => Ok(Some(serde_json::from_str(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every stored row of `source`, in key order per table.
    pub fn view_rows(&self, source: &str) -> Result<Vec<StoredRow>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(VIEW_ROWS)?;
        let mut rows = Vec::new();
        for entry in table.range((source, "", &[][..])..)? {
            let (k, v) = entry?;
            let (src, name, key) = k.value();
            if src != source {
                break;
            }
            rows.push((name.to_owned(), key.to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }

    /// Durably applies `writes` and records `checkpoint` as what the view
    /// rows of `source` reflect, in one transaction.
    pub fn commit_view_rows(
        &self,
        source: &str,
        checkpoint: &Checkpoint,
        writes: &[RowWrite<'_>],
    ) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        {
            let mut rows = tx.open_table(VIEW_ROWS)?;
            for w in writes {
                match w.row {
                    Some(row) => {
                        rows.insert((source, w.table, w.key), row)?;
                    }
                    None => {
                        rows.remove((source, w.table, w.key))?;
                    }
                }
            }
            let text = serde_json::to_string(checkpoint)?;
            tx.open_table(VIEW_POSITIONS)?
                .insert(source, text.as_str())?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Forgets a source's view rows (with its checkpoint, before a fresh snapshot).
pub(crate) fn forget_source(tx: &redb::WriteTransaction, source: &str) -> Result<(), StateError> {
    tx.open_table(VIEW_ROWS)?
        .retain(|(src, _, _), _| src != source)?;
    tx.open_table(VIEW_POSITIONS)?.remove(source)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::Position;

    #[test]
    fn rows_and_position_survive_reopen_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let cp = |p| Checkpoint {
            position: Position::new(p),
            snapshot_complete: true,
            last_commit: None,
        };
        {
            let store = StateStore::open(dir.path()).unwrap();
            assert_eq!(store.view_position("a").unwrap(), None);
            let w = |table, key: &'static [u8], row: Option<&'static [u8]>| RowWrite {
                table,
                key,
                row,
            };
            store
                .commit_view_rows(
                    "a",
                    &cp(10),
                    &[w("t", b"1", Some(b"one")), w("t", b"2", Some(b"two"))],
                )
                .unwrap();
            store
                .commit_view_rows("b", &cp(5), &[w("t", b"1", Some(b"other"))])
                .unwrap();
            store
                .commit_view_rows("a", &cp(20), &[w("t", b"1", None), w("u", b"", Some(b"x"))])
                .unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.view_position("a").unwrap(), Some(cp(20)));
        let rows = store.view_rows("a").unwrap();
        assert_eq!(
            rows,
            vec![
                ("t".into(), b"2".to_vec(), b"two".to_vec()),
                ("u".into(), Vec::new(), b"x".to_vec()),
            ]
        );
        store.reset_source("a").unwrap();
        assert_eq!(store.view_position("a").unwrap(), None);
        assert!(store.view_rows("a").unwrap().is_empty());
        assert_eq!(store.view_rows("b").unwrap().len(), 1);
    }
}
