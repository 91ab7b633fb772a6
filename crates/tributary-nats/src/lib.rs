//! How Tributary reaches a NATS server, for the NATS sink (which publishes
//! to JetStream) and the NATS source (which consumes from it).
//!
//! Both take the same connection settings (`url`, `user` + `password_env`,
//! `token_env`, `credentials_file`, `tls_ca`, `require_tls`) and must treat
//! them alike, so they are applied in one place. async-nats, the NATS
//! project's own client, does the protocol; nothing here speaks it.

use std::path::PathBuf;
use std::time::Duration;

/// Where a NATS server is and how to log in to it.
#[derive(Debug, Clone, Default)]
pub struct NatsLogin {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A CA file; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    pub require_tls: bool,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not read the NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not connect to NATS at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

impl NatsLogin {
    /// Connects with these settings, naming the connection `name` (what
    /// `nats server report connections` shows).
    pub async fn connect(&self, name: &str) -> Result<async_nats::Client, ConnectError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(10));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &self.credentials_file {
            options = options.credentials_file(path).await.map_err(|source| {
                ConnectError::Credentials {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        } else if self.require_tls {
            options = options.require_tls(true);
        }
        options
            .connect(self.url.as_str())
            .await
            .map_err(|source| ConnectError::Unreachable {
                url: self.url.clone(),
                source,
            })
    }
}

/// NATS subject matching: whether `pattern` (`*` one token, `>` the rest)
/// covers every subject `subject` (itself possibly a pattern) covers.
pub fn covers(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(b)) if b != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_wildcards() {
        assert!(covers("cash.*.*", "cash.*.*"));
        assert!(covers("cash.>", "cash.*.*"));
        assert!(covers(">", "cash.public.accounts"));
        assert!(covers("coupons.>", "coupons.>"));
        assert!(!covers("coupons.*", "coupons.>"));
        assert!(!covers("cash.*", "cash.*.*"));
        assert!(!covers("stock.*.*", "cash.*.*"));
    }
}
