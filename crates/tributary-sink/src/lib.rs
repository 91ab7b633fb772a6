//! Sinks: where change events are made durable.
//!
//! The contract every sink keeps: [`Sink::write`] returns only once the whole
//! batch is durable at the target, in order. The pipeline confirms a source
//! position only after every sink returned for every event before it, so a
//! crash can cause redelivery (each event keeps its id) but never loss.

mod file;
mod nats;
mod record;

use std::path::PathBuf;

use tributary_core::ChangeEvent;

pub use file::FileSink;
pub use nats::{probe as probe_nats, NatsOptions, NatsSink};
pub use record::RecordEncoder;

/// Errors of a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("could not open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write to standard output")]
    Stdout(#[source] std::io::Error),
    #[error("NATS failed while {what}: {reason}")]
    Nats { what: &'static str, reason: String },
    #[error("JetStream stream \"{stream}\" does not capture the subjects {subjects}")]
    StreamSubjects { stream: String, subjects: String },
}

impl SinkError {
    /// Whether trying the same write again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Write { .. } => true,
            SinkError::Nats { what, .. } => {
                matches!(
                    *what,
                    "publishing" | "waiting for the publish ack" | "connecting"
                )
            }
            SinkError::Open { .. } | SinkError::Stdout(_) | SinkError::StreamSubjects { .. } => {
                false
            }
        }
    }
}

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

/// A configured sink.
pub enum Sink {
    File(FileSink),
    Stdout(StdoutSink),
    Nats(Box<NatsSink>),
}

/// An event the target refused for good (a poison event), by its index in
/// the batch; every other event of the batch is durable.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub index: usize,
    pub reason: String,
}

impl Sink {
    /// Writes a batch; returns once every event is durable or rejected.
    pub async fn write(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, SinkError> {
        match self {
            Sink::File(s) => s.write(events).await.map(|()| Vec::new()),
            Sink::Stdout(s) => s.write(events).await.map(|()| Vec::new()),
            Sink::Nats(s) => s.write(events).await,
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

    pub async fn write(&mut self, events: &[ChangeEvent]) -> Result<(), SinkError> {
        use tokio::io::AsyncWriteExt;
        let buf = self.encoder.encode(events);
        let mut out = tokio::io::stdout();
        out.write_all(buf).await.map_err(SinkError::Stdout)?;
        out.flush().await.map_err(SinkError::Stdout)
    }
}
