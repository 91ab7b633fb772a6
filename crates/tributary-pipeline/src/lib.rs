//! The pipeline: runs each source into every sink and keeps checkpoints.
//!
//! Per source, one loop receives what the source sends, writes each batch to
//! every sink (each returns only once the batch is durable), then records the
//! source's checkpoint in the state store and only after that reports the
//! position back to the source, which confirms it to the server. So the
//! position a server forgets WAL up to is always durable everywhere.
//!
//! A view followed by sinks (`[[sink]] view = "…"`) is one more source
//! (`changefeed`): its change events go through the same lanes.

mod changefeed;
pub mod check;
pub mod config;
mod confirm;
mod connect;
mod dead_letter;
mod error;
mod lane;
pub mod retry;
mod run;
pub mod status;
pub mod transform;
mod views;

pub use config::{Config, ConfigError};
pub use connect::SourceKinds;
pub use error::PipelineError;
pub use run::run;
pub use status::StatusBoard;
