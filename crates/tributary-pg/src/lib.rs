//! How Tributary connects to PostgreSQL, for the source and the sink alike.
//!
//! Both ends read the same libpq-style URL (`sslmode`, `sslrootcert`,
//! `sslcert`, `sslkey`), open sessions with the same fixed settings (so text
//! forms of values are stable) and quote identifiers the same way. Keeping
//! that here lets the PostgreSQL sink depend on the client, not on the
//! source: the query connection is tokio-postgres with rustls
//! (`tokio-postgres-rustls`), the replication connection's settings are
//! `pgwire-replication`'s, and both get one TLS policy from `tls`.

mod connection;
mod error;
mod tls;

pub use connection::{quote_ident, quote_literal, quote_table, ConnectionConfig, SESSION_OPTIONS};
pub use error::{is_connection_lost, is_tls_failure, Error};
