//! Errors of the PostgreSQL source, each with what the user can do about it.

/// What went wrong in the PostgreSQL source. `Display` is the primary message;
/// [`Error::detail`] and [`Error::hint`] follow PostgreSQL's error style.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An unusable URL, or a query connection that could not be opened.
    #[error(transparent)]
    Client(#[from] tributary_pg::Error),

    #[error("could not open a replication connection to {target}")]
    ReplicationConnect {
        target: String,
        #[source]
        source: pgwire_replication::PgWireError,
    },

    #[error("query failed while {doing}")]
    Query {
        doing: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("table {table} does not exist or has no columns")]
    TableMissing { table: String },

    #[error("publication \"{publication}\" does not exist and could not be created")]
    PublicationMissing {
        publication: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("publication \"{publication}\" publishes ALL TABLES")]
    PublicationAllTables { publication: String },

    #[error("setup step failed: {step}")]
    SetupStep {
        step: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("publication \"{publication}\" does not publish {tables}")]
    PublicationIncomplete { publication: String, tables: String },

    #[error("replication slot \"{slot}\" was invalidated by the server")]
    SlotInvalidated { slot: String },

    #[error("replication slot \"{slot}\" is missing, but this source has streamed from it before")]
    SlotMissing { slot: String },

    #[error("could not create replication slot \"{slot}\"")]
    SlotCreate {
        slot: String,
        #[source]
        source: pgwire_replication::PgWireError,
    },

    #[error("replication stream failed")]
    Stream {
        #[source]
        source: pgwire_replication::PgWireError,
    },

    #[error(transparent)]
    Protocol(#[from] crate::pgoutput::ProtocolError),

    #[error("a change refers to relation {oid}, which no Relation message described")]
    UnknownRelation { oid: u32 },

    #[error("a value in column \"{column}\" of {table} is not valid UTF-8")]
    InvalidUtf8 { table: String, column: String },

    #[error("state store failed")]
    State(#[source] tributary_state::StateError),

    #[error("the pipeline stopped before the source")]
    PipelineClosed,

    #[error(transparent)]
    CopyFormat(#[from] crate::copy_text::CopyFormatError),

    #[error("a snapshot worker stopped: {reason}")]
    SnapshotWorker { reason: String },

    #[error("the query connection to {target} was lost")]
    QueryConnectionLost { target: String },
}

impl Error {
    pub(crate) fn query(doing: &'static str, source: tokio_postgres::Error) -> Self {
        Error::Query { doing, source }
    }

    /// Whether the connection is what failed, not the data or the setup: the
    /// server went away (restart, failover, shutdown) or the network broke.
    /// A stream rides these out, reconnecting with backoff.
    pub(crate) fn is_connection_loss(&self) -> bool {
        match self {
            Error::Stream { .. }
            | Error::ReplicationConnect { .. }
            | Error::QueryConnectionLost { .. } => true,
            Error::Client(tributary_pg::Error::Connect { source, .. })
            | Error::Query { source, .. } => tributary_pg::is_connection_lost(source),
            // The connection broke while the slot was being created; a
            // refusal by the server (no free slot, no grant) is not this.
            Error::SlotCreate { source, .. } => matches!(
                source,
                pgwire_replication::PgWireError::Io(_) | pgwire_replication::PgWireError::Task(_)
            ),
            _ => false,
        }
    }

    /// The underlying cause, for the `detail:` line.
    pub fn detail(&self) -> Option<String> {
        use std::error::Error as _;
        let source = self.source()?;
        // tokio_postgres puts the server's message one level down.
        let mut text = source.to_string();
        if let Some(db) = source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
        {
            text = db.message().to_string();
            if let Some(d) = db.detail() {
                text.push_str(": ");
                text.push_str(d);
            }
        } else if let Some(inner) = source.source() {
            text = format!("{text}: {inner}");
        }
        Some(text)
    }

    /// Whether the cause is the TLS handshake or certificate check.
    fn is_tls_failure(&self) -> bool {
        tributary_pg::is_tls_failure(self)
    }

    /// What to do about it, for the `hint:` line.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Client(tributary_pg::Error::InvalidUrl { .. }) => {
                "use the form postgres://USER@HOST:PORT/DATABASE".into()
            }
            Error::Client(_) | Error::ReplicationConnect { .. } if self.is_tls_failure() => {
                "check the URL's sslmode and sslrootcert (the CA file that signed the server's \
                 certificate); verify-full also needs the host name in the certificate"
                    .into()
            }
            Error::Client(_) | Error::ReplicationConnect { .. } => {
                "check that the server is running, the URL is right and pg_hba.conf admits this \
                 user (with \"replication\" access for the replication connection)"
                    .into()
            }
            Error::TableMissing { .. } => "check the `tables` list of this source".into(),
            Error::PublicationMissing { publication, .. } => format!(
                "create it as the tables' owner: CREATE PUBLICATION {publication} FOR TABLE ...; \
                 or run `tributary setup postgres`"
            ),
            Error::PublicationIncomplete {
                publication,
                tables,
            } => {
                format!("as the tables' owner: ALTER PUBLICATION {publication} ADD TABLE {tables}")
            }
            Error::SlotInvalidated { .. } | Error::SlotMissing { .. } => {
                "WAL this source needed is gone, so changes were missed; to start over with a \
                 fresh snapshot, set on_slot_lost = \"resnapshot\" (or snapshot = \"always\" \
                 for one run)"
                    .into()
            }
            Error::SlotCreate { .. } => {
                "check max_replication_slots and max_wal_senders (a snapshot on a kept slot \
                 needs one more of each while it runs: a temporary slot exports it) and that \
                 the role has REPLICATION"
                    .into()
            }
            Error::PublicationAllTables { .. } => {
                "Tributary publishes exactly its tables; choose another name with --publication \
                 (or the source's `publication`)"
                    .into()
            }
            Error::SetupStep { .. } => {
                "nothing was applied (one transaction); run the printed SQL as a superuser or \
                 as the tables' owner"
                    .into()
            }
            Error::InvalidUtf8 { .. } => {
                "Tributary reads UTF-8 databases; check the database's encoding".into()
            }
            _ => return None,
        })
    }
}

impl tributary_core::source::Diagnose for Error {
    fn detail(&self) -> Option<String> {
        Error::detail(self)
    }

    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pgwire_replication::PgWireError;

    use super::*;

    #[test]
    fn connection_losses_are_told_from_refusals() {
        let io = || PgWireError::Io(Arc::new(std::io::Error::other("reset")));
        let slot = |source| Error::SlotCreate {
            slot: "s".into(),
            source,
        };
        assert!(Error::Stream { source: io() }.is_connection_loss());
        assert!(Error::QueryConnectionLost { target: "t".into() }.is_connection_loss());
        assert!(slot(io()).is_connection_loss());
        assert!(slot(PgWireError::Task("worker ended".into())).is_connection_loss());
        // The server said no: starting over would not help.
        assert!(!slot(PgWireError::Server(
            "all replication slots are in use".into()
        ))
        .is_connection_loss());
        assert!(!Error::TableMissing { table: "t".into() }.is_connection_loss());
        assert!(!Error::SlotMissing { slot: "s".into() }.is_connection_loss());
        let url = Error::Client(tributary_pg::Error::InvalidUrl {
            reason: "no host".into(),
        });
        assert!(!url.is_connection_loss());
    }
}
