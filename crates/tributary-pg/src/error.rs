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

/// Whether a query error says the connection is gone: closed, an I/O
/// failure, or the server's own word (SQLSTATE class 08 connection
/// exception, 57P operator intervention such as `admin_shutdown` or
/// `cannot_connect_now`, 53300 too many connections). The source then
/// reconnects; the sink retries the batch.
pub fn is_connection_lost(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    if e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) {
        return true;
    }
    e.code().is_some_and(|c| {
        let code = c.code();
        code.starts_with("08") || code.starts_with("57P") || code == "53300"
    })
}
