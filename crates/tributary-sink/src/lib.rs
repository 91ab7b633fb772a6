//! Sinks: where change events are made durable.
//!
//! The contract every sink keeps: [`Sink::write`] returns only once the whole
//! batch is durable at the target, in order. The pipeline confirms a source
//! position only after every sink returned for every event before it, so a
//! crash can cause redelivery (each event keeps its id) but never loss.

mod file;
mod http;
mod kafka;
mod nats;
mod postgres;
mod record;

use std::path::PathBuf;

use tributary_core::ChangeEvent;

pub use file::FileSink;
pub use http::{probe as probe_http, signature as http_signature, HttpOptions, HttpSink};
pub use kafka::{probe as probe_kafka, KafkaOptions, KafkaSink};
pub use nats::{probe as probe_nats, NatsOptions, NatsSink};
pub use postgres::{
    probe as probe_postgres, PostgresOptions, PostgresSink, SchemaSource, TableDefinition,
};
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
    #[error("HTTP receiver failed while {what}: {reason}")]
    Http {
        what: &'static str,
        reason: String,
        transient: bool,
    },
    #[error("Kafka failed while {what}: {reason}")]
    Kafka { what: &'static str, reason: String },
    #[error("PostgreSQL target failed while {what}")]
    Postgres {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("could not connect to the PostgreSQL target")]
    PostgresConnect(#[source] tributary_pg::Error),
    #[error("the PostgreSQL target connection is closed")]
    PostgresClosed,
    #[error("no definition for target table of {table}: {reason}")]
    PostgresSchema { table: String, reason: String },
}

impl SinkError {
    /// The underlying cause, for the `detail:` line. For the PostgreSQL
    /// target it is the server's message and SQLSTATE, never its DETAIL
    /// field, which can quote row values.
    pub fn detail(&self) -> Option<String> {
        let pg = match self {
            SinkError::Postgres { source, .. } => Some(source),
            SinkError::PostgresConnect(tributary_pg::Error::Connect { source, .. }) => Some(source),
            _ => None,
        };
        if let Some(db) = pg.and_then(|e| e.as_db_error()) {
            return Some(format!("{} (SQLSTATE {})", db.message(), db.code().code()));
        }
        let mut cause = std::error::Error::source(self)?;
        let mut text = cause.to_string();
        while let Some(next) = cause.source() {
            text = format!("{text}: {next}");
            cause = next;
        }
        Some(text)
    }

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
            SinkError::Postgres { source, .. } => postgres_transient(source),
            SinkError::Http { transient, .. } => *transient,
            SinkError::Kafka { what, .. } => {
                *what != "configuring the client"
                    && *what != "configuring the producer"
                    && *what != "configuring the admin client"
            }
            SinkError::PostgresConnect(_) | SinkError::PostgresClosed => true,
            SinkError::Open { .. }
            | SinkError::Stdout(_)
            | SinkError::StreamSubjects { .. }
            | SinkError::PostgresSchema { .. } => false,
        }
    }
}

/// Whether a PostgreSQL error may pass by itself: a lost connection or a
/// server shutting down (as the source tells them), or out of resources, or
/// a serialization failure.
fn postgres_transient(e: &tokio_postgres::Error) -> bool {
    // Any error without a SQLSTATE counts (a write is retried with backoff;
    // a permanent one is bounded by `retry_max_elapsed`).
    e.code().is_none()
        || tributary_pg::is_connection_lost(e)
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("40") || code.starts_with("53")
        })
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
    Postgres(Box<PostgresSink>),
    Kafka(Box<KafkaSink>),
    Http(Box<HttpSink>),
}

/// An event the target refused for good (a poison event), by its index in
/// the batch; every other event of the batch is durable.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub index: usize,
    pub reason: String,
}

/// A batch handed to a sink by [`Sink::submit`]: resolves once it is durable,
/// with the events the target refused for good.
pub enum Submitted {
    /// Durable (or failed) when `submit` returned.
    Done(Option<Result<Vec<Rejection>, SinkError>>),
    /// The file sink's writer thread has yet to fsync it.
    Queued {
        path: PathBuf,
        reply: tokio::sync::oneshot::Receiver<std::io::Result<()>>,
    },
}

impl Submitted {
    pub fn done(result: Result<Vec<Rejection>, SinkError>) -> Self {
        Submitted::Done(Some(result))
    }
}

impl std::future::Future for Submitted {
    type Output = Result<Vec<Rejection>, SinkError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Submitted::Done(result) => {
                std::task::Poll::Ready(result.take().unwrap_or_else(|| Ok(Vec::new())))
            }
            Submitted::Queued { path, reply } => std::pin::Pin::new(reply).poll(cx).map(|r| {
                r.unwrap_or_else(|_| Err(file::writer_gone()))
                    .map(|()| Vec::new())
                    .map_err(|source| SinkError::Write {
                        path: path.clone(),
                        source,
                    })
            }),
        }
    }
}

impl Sink {
    /// Whether several queued batches may be written as one (one fsync for
    /// all: group commit). Sinks that can refuse single events write each
    /// batch on its own, so a retry never repeats an acknowledged one.
    pub fn coalesces(&self) -> bool {
        matches!(self, Sink::File(_) | Sink::Stdout(_))
    }

    /// How many submitted batches may wait for durability at once: the
    /// file sink encodes the next batch while the last one is fsynced;
    /// every other sink finishes a batch before it takes the next.
    pub fn depth(&self) -> usize {
        match self {
            Sink::File(_) => 2,
            _ => 1,
        }
    }

    /// Hands a batch to the sink. The file sink returns once it is encoded
    /// and queued; the others once it is durable. Either way the batch is
    /// durable when the result resolves without error, and batches become
    /// durable in the order they were submitted. After a failure, write the
    /// failed batch and every later one again, in order, with
    /// [`Sink::write_parts`], once no submitted batch is outstanding.
    pub async fn submit(&mut self, parts: &[&[ChangeEvent]]) -> Submitted {
        match self {
            Sink::File(s) => s.submit(parts),
            other => Submitted::Done(Some(other.write_parts(parts).await)),
        }
    }

    /// Writes batches in order; rejection indices count across all of them.
    pub async fn write_parts(
        &mut self,
        parts: &[&[ChangeEvent]],
    ) -> Result<Vec<Rejection>, SinkError> {
        match (self, parts) {
            (Sink::File(s), _) => s.write_parts(parts).await.map(|()| Vec::new()),
            (sink, [one]) => sink.write(one).await,
            (sink, _) => {
                let (mut all, mut base) = (Vec::new(), 0);
                for part in parts {
                    for r in sink.write(part).await? {
                        all.push(Rejection {
                            index: base + r.index,
                            reason: r.reason,
                        });
                    }
                    base += part.len();
                }
                Ok(all)
            }
        }
    }

    /// Writes a batch; returns once every event is durable or rejected.
    pub async fn write(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, SinkError> {
        match self {
            Sink::File(s) => s.write(events).await.map(|()| Vec::new()),
            Sink::Stdout(s) => s.write(events).await.map(|()| Vec::new()),
            Sink::Nats(s) => s.write(events).await,
            Sink::Postgres(s) => s.write(events).await,
            Sink::Kafka(s) => s.write(events).await,
            Sink::Http(s) => s.write(events).await,
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
