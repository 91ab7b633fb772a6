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

use tributary_core::sink::{BoxFuture, Sink, Written};
use tributary_core::ChangeEvent;

pub use error::{Error, FailureKind, SinkError};

pub use file::FileSink;
pub use http::{probe as probe_http, signature as http_signature, HttpOptions, HttpSink};
pub use kafka::{probe as probe_kafka, KafkaOptions, KafkaSink};
pub use nats::{probe as probe_nats, NatsOptions, NatsSink};
pub use postgres::{probe as probe_postgres, PostgresOptions, PostgresSink};
pub use record::RecordEncoder;

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
            topic: "{source}.{schema}.{table}".into(),
            routes: Routes::new(),
            tombstones: true,
        }
    }
}

/// JSON Lines on standard output, for quick looks (durable = flushed).
pub struct StdoutSink {
    encoder: RecordEncoder,
}

impl StdoutSink {
    pub fn new(options: RecordOptions) -> Self {
        Self {
            encoder: RecordEncoder::new(options),
        }
    }

    async fn write_events(&mut self, events: &[ChangeEvent]) -> Result<(), Error> {
        use tokio::io::AsyncWriteExt;
        let buf = self.encoder.encode(events);
        let mut out = tokio::io::stdout();
        out.write_all(buf).await.map_err(Error::Stdout)?;
        out.flush().await.map_err(Error::Stdout)
    }
}

impl Sink for StdoutSink {
    fn capabilities(&self) -> tributary_core::sink::Capabilities {
        tributary_core::sink::Capabilities {
            coalesces: true,
            ..Default::default()
        }
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move {
            self.write_events(events).await?;
            Ok(Vec::new())
        })
    }
}
