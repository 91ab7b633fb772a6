//! Connection settings of one PostgreSQL server, shared by the query
//! connection (tokio-postgres) and the replication connection
//! (pgwire-replication).

use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{self, TlsOptions};
use crate::Error;

/// Startup options for every session whose text output is parsed or
/// written: ISO dates, ISO-8601 intervals, UTC, hex bytea, C-locale money,
/// round-trip floats, UTF-8.
pub const SESSION_OPTIONS: &str = "-c datestyle=ISO,YMD -c intervalstyle=iso_8601 -c timezone=UTC \
     -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C -c client_encoding=UTF8";

/// A parsed `postgres://` URL, with the password kept out of `Debug` output.
#[derive(Clone)]
pub struct ConnectionConfig {
    pg: tokio_postgres::Config,
    host: String,
    port: u16,
    user: String,
    password: String,
    dbname: String,
    tls: TlsOptions,
    connector: MakeRustlsConnect,
}

impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionConfig({})", self.target())
    }
}

impl ConnectionConfig {
    /// Parses a URL; `password` (from `password_env` or a file) overrides the URL's.
    /// TLS follows libpq's `sslmode`/`sslrootcert`/`sslcert`/`sslkey` options.
    pub fn parse(url: &str, password: Option<String>) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidUrl { reason };
        let (url, tls) = tls::split_url(url)?;
        let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| invalid(e.to_string()))?;
        pg.ssl_mode(tls.negotiation());
        let connector = MakeRustlsConnect::new(tls.client_config()?);
        let host = match pg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => return Err(invalid("no host".into())),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let user = pg
            .get_user()
            .ok_or_else(|| invalid("no user".into()))?
            .to_owned();
        let dbname = pg.get_dbname().unwrap_or(&user).to_owned();
        if let Some(p) = password {
            pg.password(p);
        }
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        pg.options(SESSION_OPTIONS);
        pg.application_name("tributary");
        Ok(Self {
            pg,
            host,
            port,
            user,
            password,
            dbname,
            tls,
            connector,
        })
    }

    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// `user@host:port/db`, for messages; never includes the password.
    pub fn target(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// Opens a query connection; its driver task runs in the background.
    pub async fn connect(&self) -> Result<Client, Error> {
        Ok(self.connect_watched().await?.0)
    }

    /// [`ConnectionConfig::connect`], with a flag that turns `true` once the
    /// connection has ended (closed by the server, or broken).
    pub async fn connect_watched(
        &self,
    ) -> Result<(Client, tokio::sync::watch::Receiver<bool>), Error> {
        let (client, connection) =
            self.pg
                .connect(self.connector.clone())
                .await
                .map_err(|source| Error::Connect {
                    target: self.target(),
                    source,
                })?;
        let (ended, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "query connection closed");
            }
            let _ = ended.send(true);
        });
        Ok((client, watch))
    }

    /// Settings for a replication session on `slot` with `publication`.
    pub fn replication(
        &self,
        slot: &str,
        publication: &str,
        start_lsn: u64,
    ) -> pgwire_replication::ReplicationConfig {
        pgwire_replication::ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.clone(),
            self.dbname.clone(),
            slot.to_owned(),
            publication.to_owned(),
        )
        .with_port(self.port)
        .with_options(SESSION_OPTIONS)
        .with_application_name("tributary")
        .with_start_lsn(pgwire_replication::Lsn::from_u64(start_lsn))
        .with_tls(self.tls.replication(&self.host))
        // A durable position reaches the server within 100 ms (feedback is
        // rate-limited to this interval), so WAL is released promptly.
        .with_status_interval(std::time::Duration::from_millis(100))
        // Messages read ahead of the decoder (default 8192): each pins its
        // slice of the read buffer, so fewer keep memory flat.
        .with_buffer_size(256)
    }
}

/// Quotes an identifier for SQL (`"my ""odd"" name"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table's schema-qualified name, quoted for SQL.
pub fn quote_table(table: &tributary_core::TableRef) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.table)
    )
}

/// Quotes a string literal for SQL.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
