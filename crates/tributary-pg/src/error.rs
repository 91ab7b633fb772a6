//! Errors of connecting to PostgreSQL.

/// A URL that cannot be used, or a connection that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid PostgreSQL URL: {reason}")]
    InvalidUrl { reason: String },

    #[error("could not connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    /// Whether the cause is the TLS handshake or certificate check.
    pub fn is_tls_failure(&self) -> bool {
        is_tls_failure(self)
    }
}

/// Whether anywhere in `error`'s chain of causes is a TLS failure, told by
/// type (a `rustls::Error`, also inside an I/O error as tokio-rustls wraps
/// it, or pgwire-replication's TLS error), never by the message's text.
pub fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<rustls::Error>()
            || matches!(
                e.downcast_ref::<pgwire_replication::PgWireError>(),
                Some(pgwire_replication::PgWireError::Tls(_))
            )
        {
            return true;
        }
        // An I/O error's `source()` skips the error it carries.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls_failure(inner) {
                return true;
            }
        }
        cause = e.source();
    }
    false
}
