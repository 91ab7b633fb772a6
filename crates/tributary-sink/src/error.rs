//! What can go wrong in a sink, each error with the [`FailureKind`] it was
//! given where it arose (never read back from its text).

pub use tributary_core::sink::{FailureKind, SinkError};

use std::path::PathBuf;

/// Errors of a sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    Nats {
        what: &'static str,
        reason: String,
        kind: FailureKind,
    },
    #[error("JetStream stream \"{stream}\" does not capture the subjects {subjects}")]
    StreamSubjects { stream: String, subjects: String },
    #[error("HTTP receiver failed while {what}: {reason}")]
    Http {
        what: &'static str,
        reason: String,
        kind: FailureKind,
    },
    #[error("Kafka failed while {what}: {reason}")]
    Kafka {
        what: &'static str,
        reason: String,
        kind: FailureKind,
    },
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
    #[error("environment variable {var} is not set")]
    MissingSecret { var: String, key: &'static str },
}

impl Error {
    /// The underlying cause, for the `detail:` line. For the PostgreSQL
    /// target it is the server's message and SQLSTATE, never its DETAIL
    /// field, which can quote row values.
    pub fn detail(&self) -> Option<String> {
        let pg = match self {
            Error::Postgres { source, .. } => Some(source),
            Error::PostgresConnect(tributary_pg::Error::Connect { source, .. }) => Some(source),
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

    /// Whether trying the same write again may succeed: given where the
    /// error arose (the broker clients' errors carry it), or, for the
    /// PostgreSQL target, from the server's SQLSTATE.
    pub fn kind(&self) -> FailureKind {
        use FailureKind::{Permanent, Transient};
        match self {
            Error::Nats { kind, .. } | Error::Http { kind, .. } | Error::Kafka { kind, .. } => {
                *kind
            }
            Error::Write { .. } | Error::PostgresConnect(_) | Error::PostgresClosed => Transient,
            Error::Postgres { source, .. } if postgres_transient(source) => Transient,
            Error::Postgres { .. }
            | Error::Open { .. }
            | Error::Stdout(_)
            | Error::StreamSubjects { .. }
            | Error::PostgresSchema { .. }
            | Error::MissingSecret { .. } => Permanent,
        }
    }
}

impl tributary_core::source::Diagnose for Error {
    fn detail(&self) -> Option<String> {
        Error::detail(self)
    }

    fn hint(&self) -> Option<String> {
        match self {
            Error::MissingSecret { var, key } => {
                Some(format!("export {var}=... before starting, or remove {key}"))
            }
            _ => None,
        }
    }
}

impl From<Error> for SinkError {
    fn from(error: Error) -> Self {
        SinkError::new(error.kind(), error)
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
