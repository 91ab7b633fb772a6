//! The source's query connection while it streams, reopened when the server
//! restarts or fails over.
//!
//! Streaming needs a regular connection beside the replication one: catalog
//! look-ups when a Relation message arrives (a new table or a schema
//! change), heartbeats and slot-lag measurement. When the server restarts
//! both connections die. The stream notices (the connection's end is
//! watched, so an idle connection that the server terminated counts too),
//! closes its replication session at once, and reopens both with the same
//! backoff. Closing at once matters on a server shutdown: PostgreSQL
//! terminates regular connections first, then waits for every WAL sender to
//! have its sent WAL confirmed; a client that kept its replication session
//! open while it could not make that WAL durable would hold the shutdown.

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::Error;
use tributary_pg::ConnectionConfig;

/// A query connection that can be replaced, and tells when it has ended.
pub(crate) struct QuerySession {
    connection: ConnectionConfig,
    client: Client,
    ended: watch::Receiver<bool>,
}

impl QuerySession {
    pub(crate) async fn open(connection: &ConnectionConfig) -> Result<Self, Error> {
        let (client, ended) = connection.connect_watched().await?;
        Ok(Self {
            connection: connection.clone(),
            client,
            ended,
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the connection has ended.
    pub(crate) fn is_lost(&self) -> bool {
        *self.ended.borrow() || self.client.is_closed()
    }

    /// Resolves once the connection has ended (at once if it has). Polled on
    /// every pass of the stream loop, so it waits on the session's own
    /// receiver rather than a clone.
    pub(crate) async fn lost(&mut self) {
        // An error means the driver task is gone: the connection with it.
        let _ = self.ended.wait_for(|&e| e).await;
    }

    /// Opens a new connection if this one has ended.
    pub(crate) async fn reopen_if_lost(&mut self) -> Result<(), Error> {
        if self.is_lost() {
            *self = Self::open(&self.connection).await?;
        }
        Ok(())
    }
}
