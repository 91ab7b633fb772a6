//! PostgreSQL source for Tributary: a consistent snapshot over the slot's
//! exported snapshot, then logical replication with `pgoutput`.
//!
//! Layout, in the order data flows:
//! - `tributary_pg` (a crate of its own, shared with the PostgreSQL sink):
//!   URL parsing, TLS, query and replication session settings; here,
//!   `query_session`: the streaming source's query connection, reopened
//!   after a server restart;
//! - [`slot`]: the publication and the replication slot;
//! - [`catalog`]: table shapes, key columns, type resolution;
//! - [`snapshot`] (with [`copy_text`]): the initial read, in parallel
//!   chunks over the slot's exported snapshot;
//! - [`pgoutput`]: the protocol decoder (fuzzed);
//! - [`changes`] (with [`value_mapping`] and [`toast`]): messages → events;
//! - [`source`]: the orchestration the pipeline runs (which slot, which
//!   snapshot, decided by `start`'s pure plan), then `stream`: the streaming phase, also the bounded
//!   catch-up before a later snapshot, with [`wal_retention`] (heartbeats,
//!   slot lag) keeping retained WAL bounded;
//! - [`preflight`] and [`setup`]: the checks of `check`/`run` and the
//!   least-privilege SQL of `setup postgres`.

pub mod catalog;
pub mod changes;
pub mod copy_text;
mod error;
pub mod pgoutput;
pub mod preflight;
mod query_session;
pub mod settings;
pub mod setup;
pub mod slot;
pub mod snapshot;
pub mod source;
mod start;
mod stream;
pub mod toast;
pub mod value_mapping;
pub mod wal_retention;

pub use error::Error;
pub use snapshot::SnapshotOptions;
pub use source::{
    PostgresSource, PostgresSourceConfig, SlotLost, SnapshotMode, SourceItem, SourceLinks,
};
pub use tributary_pg::{quote_ident, quote_literal, quote_table, ConnectionConfig};
pub use wal_retention::SourceHealth;
