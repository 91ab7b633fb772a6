//! Tributary's one change model, shared by every source, sink and transform.
//!
//! A source turns its log into [`ChangeEvent`]s; a sink encodes them at the edge
//! (today: Debezium-compatible JSON, see [`debezium`]). Keeping the model free of
//! any wire format is what lets one pipeline serve brokers, files and databases.

pub mod check;
pub mod clock;
pub mod debezium;
mod event;
pub mod fault;
mod lsn;
mod position;
pub mod schema;
pub mod setting;
pub mod sink;
pub mod source;
pub mod value;

pub use event::{ChangeEvent, EventId, Op, Row, SnapshotMarker, SourceInfo, TableRef};
pub use lsn::{Lsn, LsnParseError};
pub use position::Position;
pub use schema::{Column, TableSchema};
pub use value::{CompactString, Value};
