//! Positions of a source whose log has no one order, mapped to where each
//! of its parts was: a Kafka topic's partitions are ordered each, not
//! together, so the source numbers its batches itself and records, before
//! a batch goes out, the offset each partition had reached at its end.
//! After a restart the recorded batches are read again exactly as they
//! were (same messages, same order, same event ids), so consumers that
//! kept some of them skip those and nothing is applied twice. Materialize
//! calls this reclocking.
//!
//! An entry is (source, position) → the source's own bytes (its offsets).
//! Entries below the durable checkpoint are pruned once it moves on.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::{StateError, StateStore};

pub(crate) const REMAP: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("remap");

impl StateStore {
    /// Durably records what position `position` of `source` stands for.
    pub fn record_remap(
        &self,
        source: &str,
        position: u64,
        value: &[u8],
    ) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        tx.open_table(REMAP)?.insert((source, position), value)?;
        tx.commit()?;
        Ok(())
    }

    /// Every recorded entry of `source` from `from` on, in position order.
    pub fn remaps(&self, source: &str, from: u64) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(REMAP)?;
        let mut entries = Vec::new();
        for entry in table.range((source, from)..=(source, u64::MAX))? {
            let (k, v) = entry?;
            entries.push((k.value().1, v.value().to_vec()));
        }
        Ok(entries)
    }

    /// Forgets the entries of `source` below `below`. Not fsynced: an
    /// entry below the durable checkpoint is never read again, so a prune
    /// lost in a crash only leaves it to the next one (a later durable
    /// commit makes it durable too).
    pub fn prune_remaps(&self, source: &str, below: u64) -> Result<(), StateError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StateError::Storage(e.into()))?;
        {
            let mut table = tx.open_table(REMAP)?;
            let old: Vec<u64> = table
                .range((source, 0)..(source, below))?
                .map(|e| e.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()?;
            for position in old {
                table.remove((source, position))?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_per_source_in_order_and_pruned() {
        let store = StateStore::in_memory().unwrap();
        for p in [3, 1, 2] {
            store.record_remap("k", p, &[p as u8]).unwrap();
        }
        store.record_remap("other", 1, b"x").unwrap();
        assert_eq!(store.remaps("k", 2).unwrap(), [(2, vec![2]), (3, vec![3])]);
        store.prune_remaps("k", 3).unwrap();
        assert_eq!(store.remaps("k", 0).unwrap(), [(3, vec![3])]);
        assert_eq!(store.remaps("other", 0).unwrap(), [(1, b"x".to_vec())]);
    }
}
