//! Source checkpoints and per-sink positions, committed together.
//!
//! A sink's position is the newest checkpoint durable in that sink; the
//! source's checkpoint is the minimum over its sinks. A sink can be ahead
//! (another sink was slower or failing when the process stopped): on the
//! next start the source resumes from its checkpoint, and that sink skips
//! what its own position says it already has.

use redb::{ReadableDatabase, TableDefinition};

pub use tributary_core::source::Checkpoint;
use tributary_core::Position;

use crate::{StateError, StateStore};

pub(crate) const CHECKPOINTS: TableDefinition<&str, &str> = TableDefinition::new("checkpoints");
pub(crate) const SINK_POSITIONS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("sink_positions");

impl StateStore {
    pub fn checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(CHECKPOINTS)?;
        match table.get(source)? {
            Some(v) => Ok(Some(serde_json::from_str(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn sink_position(&self, source: &str, sink: &str) -> Result<Option<Position>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SINK_POSITIONS)?;
        Ok(table.get((source, sink))?.map(|v| Position::new(v.value())))
    }

    /// Durably records the sinks' positions and, when it moved, the
    /// source's checkpoint (fsynced before it returns; this also makes
    /// earlier non-durable row-image writes durable).
    pub fn commit(
        &self,
        source: &str,
        checkpoint: Option<Checkpoint>,
        sinks: &[(&str, Position)],
    ) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        {
            if let Some(checkpoint) = checkpoint {
                let mut table = tx.open_table(CHECKPOINTS)?;
                let text = serde_json::to_string(&checkpoint)?;
                table.insert(source, text.as_str())?;
            }
            let mut positions = tx.open_table(SINK_POSITIONS)?;
            for (sink, pos) in sinks {
                positions.insert((source, *sink), pos.get())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets everything about a source (before a fresh snapshot).
    pub fn reset_source(&self, source: &str) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(CHECKPOINTS)?.remove(source)?;
            let mut positions = tx.open_table(SINK_POSITIONS)?;
            positions.retain(|(src, _), _| src != source)?;
            crate::row_images::forget_source(&tx, source)?;
            crate::view_inputs::forget_source(&tx, source)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_survives_reopen_and_reset_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path()).unwrap();
            assert_eq!(store.checkpoint("a").unwrap(), None);
            let cp = Checkpoint {
                position: Position::new(42),
                snapshot_complete: true,
                last_commit: Some(Position::new(40)),
            };
            store
                .commit("a", Some(cp), &[("file", Position::new(42))])
                .unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        let read = store.checkpoint("a").unwrap().unwrap();
        assert_eq!(
            (read.position, read.last_commit()),
            (Position::new(42), Position::new(40))
        );
        assert_eq!(
            store.sink_position("a", "file").unwrap(),
            Some(Position::new(42))
        );
        store.reset_source("a").unwrap();
        assert_eq!(store.checkpoint("a").unwrap(), None);
        assert_eq!(store.sink_position("a", "file").unwrap(), None);
    }

    #[test]
    fn a_checkpoint_written_before_last_commit_was_kept_still_reads() {
        let old: Checkpoint =
            serde_json::from_str(r#"{"position":7,"snapshot_complete":true}"#).unwrap();
        assert_eq!(old.last_commit, None);
        assert_eq!(old.last_commit(), Position::new(7));
    }

    #[test]
    fn second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path()).unwrap();
        assert!(matches!(
            StateStore::open(dir.path()),
            Err(StateError::InUse { .. })
        ));
    }
}
