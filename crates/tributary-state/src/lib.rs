//! Embedded, crash-safe state in `state_dir`, on redb.
//!
//! Why redb: a pure-Rust B-tree with ACID transactions that fsyncs on commit
//! by default and has a stable file format; fjall needs explicit persistence
//! calls and rocksdb a long C++ build. One file, `state.redb`, holds:
//! - per source, the checkpoint: the position every sink has made durable,
//!   and whether the initial snapshot finished;
//! - per source and sink, the newest checkpoint position durable in that
//!   sink (the source's checkpoint is the minimum of them); a sink ahead of
//!   the checkpoint skips on restart what it already has (`checkpoint`);
//! - remembered row images of large values, so an unchanged TOASTed value is
//!   filled instead of reaching a sink as a placeholder (see `row_images`);
//! - per source, the current rows of the tables views read and the
//!   checkpoint they reflect, so views restart without a re-snapshot
//!   (see `view_inputs`);
//! - per source whose log has no one order (Kafka), what each of its
//!   positions stands for (see `remap`).
//!
//! redb takes an exclusive lock on the file, so two processes can never share
//! one `state_dir`.

mod checkpoint;
mod remap;
mod row_images;
mod view_inputs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use checkpoint::Checkpoint;
pub use view_inputs::{RowWrite, StoredRow};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path} is in use by another tributary process")]
    InUse { path: PathBuf },
    #[error("could not open the state store in {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("could not create the state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store operation failed")]
    Storage(#[from] redb::Error),
    #[error("stored checkpoint is unreadable")]
    Corrupt(#[from] serde_json::Error),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                StateError::Storage(e.into())
            }
        }
    )*};
}
storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Handle on the store; cheap to clone and shared by sources and the pipeline.
#[derive(Clone)]
pub struct StateStore {
    db: Arc<redb::Database>,
}

impl StateStore {
    /// Opens (or creates) `dir/state.redb`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("state.redb");
        let db = redb::Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StateError::InUse {
                path: dir.to_owned(),
            },
            source => StateError::Open {
                path: path.clone(),
                source,
            },
        })?;
        let store = Self { db: Arc::new(db) };
        store.create_tables()?;
        Ok(store)
    }

    /// A store that lives only as long as the process: for unit tests, and
    /// for `tributary check`, which builds sources only to run their checks
    /// (the state directory belongs to the pipeline that may be running).
    pub fn in_memory() -> Result<Self, StateError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| StateError::Open {
                path: PathBuf::from(":memory:"),
                source,
            })?;
        let store = Self { db: Arc::new(db) };
        store.create_tables()?;
        Ok(store)
    }

    fn create_tables(&self) -> Result<(), StateError> {
        let tx = self.db.begin_write()?;
        tx.open_table(checkpoint::CHECKPOINTS)?;
        tx.open_table(checkpoint::SINK_POSITIONS)?;
        tx.open_table(row_images::ROW_IMAGES)?;
        tx.open_table(view_inputs::VIEW_ROWS)?;
        tx.open_table(view_inputs::VIEW_POSITIONS)?;
        tx.open_table(remap::REMAP)?;
        tx.commit()?;
        Ok(())
    }
}
