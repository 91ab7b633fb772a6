//! The settings of one PostgreSQL source, as the pipeline hands them over.
//!
//! Kept apart from `source` (what a start does) and `stream` (the streaming
//! phase), which both read them, so neither imports the other for them.

use tributary_core::TableRef;
use tributary_pg::ConnectionConfig;

use crate::snapshot::SnapshotOptions;
use tributary_core::debezium::Encoding;

/// When to take a snapshot (`snapshot` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Once, before the first stream; again only if it was interrupted.
    #[default]
    Initial,
    /// Never: stream changes from the slot's position only.
    Never,
    /// At every start (also the explicit way to recover from a lost slot).
    Always,
}

/// Settings of one PostgreSQL source.
#[derive(Debug, Clone)]
pub struct PostgresSourceConfig {
    pub name: String,
    pub connection: ConnectionConfig,
    pub tables: Vec<TableRef>,
    pub slot: String,
    pub publication: String,
    pub snapshot: SnapshotMode,
    /// How the snapshot spreads over sessions and chunks.
    pub snapshot_options: SnapshotOptions,
    /// How values are written as Debezium JSON (carried by the events).
    pub encoding: Encoding,
    /// Interval of heartbeat messages; `None`: none.
    pub heartbeat: Option<std::time::Duration>,
    /// Slot lag above which a warning is logged and the alarm metric set.
    pub max_lag_bytes: Option<u64>,
    pub on_slot_lost: SlotLost,
}

/// What to do when the slot was invalidated or dropped after streaming
/// began (`on_slot_lost`): changes in between are gone either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotLost {
    /// Stop with an error (the default: a human decides).
    #[default]
    Fail,
    /// Log an error, create a new slot and take a fresh snapshot.
    Resnapshot,
}
