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
        use std::error::Error as _;
        let mut cause = self.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if text.contains("certificate") || text.contains("TLS") || text.contains("tls") {
                return true;
            }
            cause = e.source();
        }
        false
    }
}
