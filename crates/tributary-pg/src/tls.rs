//! TLS to PostgreSQL, configured the way libpq users already know:
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey` in the source URL.
//!
//! Both connections of a source must agree on what "verified" means, so this
//! module is the one place that reads those options. The query connection
//! (tokio-postgres) gets a rustls `ClientConfig` built here, through
//! `tokio-postgres-rustls`; the replication connection gets the equivalent
//! `pgwire_replication::TlsConfig`, which builds its own rustls config from
//! the same mode and files. We do not hand-write the TLS handshake: rustls
//! does it; we only choose the certificate policy per mode.
//!
//! Modes follow libpq: `disable`, `prefer` (the default: TLS when the server
//! offers it, unverified), `require` (TLS, unverified), `verify-ca` (TLS, the
//! chain checked against `sslrootcert`), `verify-full` (also the host name).
//! Without `sslrootcert`, the verifying modes trust the Mozilla root set,
//! as the replication crate does, so both connections trust the same roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

use crate::Error;

/// libpq's `sslmode`, minus `allow` (plain first, TLS on refusal), which
/// no one should choose for change data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, Error> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::InvalidUrl {
                    reason: format!(
                        "sslmode \"{other}\" is not one of disable, prefer, require, \
                         verify-ca, verify-full"
                    ),
                })
            }
        })
    }

    fn verifies_chain(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS options of one source, taken out of its URL.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    mode: SslMode,
    root_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// The URL's TLS options, and the URL without them (tokio-postgres knows
/// neither `sslrootcert` nor the `verify-*` modes).
pub(crate) fn split_url(url: &str) -> Result<(String, TlsOptions), Error> {
    let mut opts = TlsOptions {
        mode: SslMode::Prefer,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), opts));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match key {
            "sslmode" => opts.mode = SslMode::parse(&value)?,
            "sslrootcert" => opts.root_cert = Some(PathBuf::from(value)),
            "sslcert" => opts.client_cert = Some(PathBuf::from(value)),
            "sslkey" => opts.client_key = Some(PathBuf::from(value)),
            _ => kept.push(pair),
        }
    }
    if opts.client_cert.is_some() != opts.client_key.is_some() {
        return Err(Error::InvalidUrl {
            reason: "sslcert and sslkey must be given together".into(),
        });
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, opts))
}

fn percent_decode(text: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(Error::InvalidUrl {
                    reason: format!("bad percent-escape in \"{text}\""),
                });
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidUrl {
        reason: "a URL option is not valid UTF-8".into(),
    })
}

impl TlsOptions {
    /// The mode tokio-postgres negotiates with (it only knows the first three;
    /// verification is the rustls config's business).
    pub(crate) fn negotiation(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self.mode {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }

    /// The same policy for the replication connection.
    pub(crate) fn replication(&self, host: &str) -> pgwire_replication::TlsConfig {
        use pgwire_replication::{SslMode as Repl, TlsConfig};
        let mode = match self.mode {
            SslMode::Disable => Repl::Disable,
            SslMode::Prefer => Repl::Prefer,
            SslMode::Require => Repl::Require,
            SslMode::VerifyCa => Repl::VerifyCa,
            SslMode::VerifyFull => Repl::VerifyFull,
        };
        let mut tls = TlsConfig {
            mode,
            ca_pem_path: self.root_cert.clone(),
            ..TlsConfig::default()
        };
        // pgwire-replication refuses verify-full to an IP literal unless a
        // name is given; rustls checks IP SANs itself, so pass the host on.
        if mode == Repl::VerifyFull {
            tls.sni_hostname = Some(host.to_owned());
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.with_client_cert(cert, key);
        }
        tls
    }

    /// The rustls config of the query connection.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, Error> {
        let provider = provider();
        let roots = Arc::new(self.roots()?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("no usable TLS protocol version", e))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| tls_error("could not build the certificate verifier", e))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::VerifyFull => webpki,
            mode => Arc::new(Relaxed {
                inner: webpki,
                check_chain: mode == SslMode::VerifyCa,
            }),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| file_error("sslcert", cert, e))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("sslkey", key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error("sslcert and sslkey do not form a usable pair", e))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    fn roots(&self) -> Result<RootCertStore, Error> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) if self.mode.verifies_chain() => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| file_error("sslrootcert", path, e))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::InvalidUrl {
                        reason: format!(
                            "sslrootcert {} holds no usable certificate",
                            path.display()
                        ),
                    });
                }
            }
            _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(roots)
    }
}

/// One crypto provider for the process: rustls is built with both ring
/// (which pgwire-replication selects) and aws-lc-rs (a default feature of a
/// dependency), and then refuses to guess. ring is installed as the process
/// default so the replication crate's `ClientConfig::builder()` finds it.
fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidUrl {
        reason: format!("{what}: {e}"),
    }
}

fn file_error(option: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidUrl {
        reason: format!("could not read {option} {}: {e}", path.display()),
    }
}

/// The certificate policy of `prefer`/`require` (encrypted, the certificate
/// not checked) and `verify-ca` (the chain must lead to a trusted root, the
/// name may differ), as libpq defines them. Handshake signatures are always
/// checked, by the wrapped webpki verifier.
#[derive(Debug)]
struct Relaxed {
    inner: Arc<WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url_and_others_stay() {
        let (url, opts) = split_url(
            "postgres://u@h:5/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h:5/db?connect_timeout=3");
        assert_eq!(opts.mode, SslMode::VerifyFull);
        assert_eq!(opts.root_cert.as_deref(), Some(Path::new("/tmp/ca.pem")));

        let (url, opts) = split_url("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(opts.mode, SslMode::Prefer);
    }

    #[test]
    fn bad_tls_options_are_url_errors() {
        for url in [
            "postgres://u@h/db?sslmode=allow",
            "postgres://u@h/db?sslcert=/a.pem",
            "postgres://u@h/db?sslrootcert=%zz",
        ] {
            assert!(
                matches!(split_url(url), Err(Error::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn missing_root_file_is_named() {
        let (_, opts) =
            split_url("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .unwrap();
        let err = opts.client_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
