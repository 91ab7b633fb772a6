//! Sinks: where change events are made durable.
//!
//! Each sink is one module implementing [`tributary_core::sink::Sink`]: a
//! write returns only once the whole batch is durable at the target, in
//! order. The pipeline confirms a source position only after every sink
//! made every event before it durable, so a crash can cause redelivery
//! (each event keeps its id) but never loss.

mod error;
mod file;
mod http;
mod kafka;
mod nats;
mod postgres;
mod record;
mod settings;
mod stdout;

use tributary_core::ChangeEvent;

pub use error::{Error, FailureKind, SinkError};

pub use file::{FileSettings, FileSink};
pub use http::{signature as http_signature, HttpOptions, HttpSettings, HttpSink};
pub use kafka::{KafkaOptions, KafkaSettings, KafkaSink};
pub use nats::{NatsOptions, NatsSettings, NatsSink};
pub use postgres::{PostgresOptions, PostgresSettings, PostgresSink};
pub use record::RecordEncoder;
pub use settings::{Invalid, SinkContext};
pub use stdout::{StdoutSettings, StdoutSink};

/// The topic (or subject) template unless one is set.
pub const DEFAULT_TOPIC: &str = "{source}.{schema}.{table}";

/// Options of the Debezium record encoding shared by the file-like sinks.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Topic template: `{source}`, `{schema}`, `{table}`.
    pub topic: String,
    /// Per-table templates that replace `topic` (routing).
    pub routes: Routes,
    /// Emit a tombstone (same key, `null` value) after each delete.
    pub tombstones: bool,
}

/// Per-table topic (or subject) templates: the routing transform.
pub type Routes = std::collections::HashMap<tributary_core::TableRef, String>;

/// The template for `event`: its table's route, else `default`.
pub(crate) fn template_for<'a>(
    routes: &'a Routes,
    default: &'a str,
    event: &ChangeEvent,
) -> &'a str {
    routes.get(&*event.table).map_or(default, String::as_str)
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            topic: DEFAULT_TOPIC.into(),
            routes: Routes::new(),
            tombstones: true,
        }
    }
}
