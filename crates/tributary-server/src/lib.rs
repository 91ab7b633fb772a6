//! Tributary's query endpoint: the views, read over the PostgreSQL wire
//! protocol, so `psql`, psycopg, tokio-postgres and any PostgreSQL driver
//! can `SELECT` from them.
//!
//! The protocol itself (startup, simple and extended query, SCRAM-SHA-256,
//! TLS) is the `pgwire` crate's; hand-writing it would repeat what that
//! crate does well. This crate answers queries:
//!
//! - [`query`]: a client's SELECT over one view, planned with the views'
//!   own SQL planner, read from the view's ordered rows under one read lock
//!   (one SELECT sees one logical time); ORDER BY on the view's leading
//!   columns and keyset bounds walk the ordered index instead of sorting.
//! - [`catalog`]: the `pg_catalog` queries psql's `\d` sends.
//! - [`encode`]: values in PostgreSQL's text and binary formats.
//! - [`handler`]: the pgwire handlers tying them together.

mod catalog;
mod encode;
mod handler;
mod query;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tributary_views::ViewSet;

use crate::handler::Handlers;

/// How the endpoint listens and whom it admits.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `(user, password)`: clients must log in as this user with this
    /// password (SCRAM-SHA-256); `None`: any user, no password.
    pub login: Option<(String, String)>,
    /// PEM certificate chain and private key: TLS for clients that ask.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for Settings {
    // The password is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("user", &self.login.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("[server] could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
    #[error("[server] could not load the TLS certificate and key")]
    Tls {
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("[server] stopped accepting connections")]
    Accept(#[source] std::io::Error),
}

impl ServerError {
    pub fn detail(&self) -> Option<String> {
        match self {
            ServerError::Bind { error, .. } | ServerError::Accept(error) => Some(error.to_string()),
            ServerError::Tls { error } => Some(error.to_string()),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ServerError::Bind { .. } => Some(
                "another process may hold the port: stop it or set [server] listen to another"
                    .into(),
            ),
            ServerError::Tls { .. } => Some(
                "tls_cert must be a PEM certificate chain and tls_key its PEM private key".into(),
            ),
            ServerError::Accept(_) => None,
        }
    }
}

/// A bound endpoint, not yet accepting.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handlers: Arc<Handlers>,
}

impl Server {
    pub async fn bind(settings: Settings, views: Arc<ViewSet>) -> Result<Self, ServerError> {
        let tls = settings
            .tls
            .as_ref()
            .map(|(cert, key)| tls_acceptor(cert, key))
            .transpose()
            .map_err(|error| ServerError::Tls { error })?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|error| ServerError::Bind {
                    addr: settings.listen,
                    error,
                })?;
        tracing::info!(listen = %settings.listen, tls = tls.is_some(), password = settings.login.is_some(), "serving views over the PostgreSQL protocol");
        Ok(Self {
            listener,
            tls,
            handlers: Arc::new(Handlers::new(views, settings.login)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` becomes true; each runs in its
    /// own task.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
        loop {
            let (socket, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // A client that went away before accept: keep serving.
                    Err(e) if is_per_connection(&e) => continue,
                    Err(e) => return Err(ServerError::Accept(e)),
                },
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let _ = socket.set_nodelay(true);
            let (tls, handlers) = (self.tls.clone(), Arc::clone(&self.handlers));
            tokio::spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
            });
        }
    }
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, Box<dyn std::error::Error + Send + Sync>> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
