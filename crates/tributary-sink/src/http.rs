//! The HTTP webhook sink: POSTs batches of records as a JSON array to a URL
//! (reqwest with rustls, so `https://` works with the system-independent
//! webpki roots or a configured CA).
//!
//! Body: `[{"topic": …, "key": …, "value": …, "id": …}, …]`, the file sink's
//! records in order, without tombstones (there is no compaction to feed).
//! A 2xx answer makes the request's events durable. 5xx, 408, 429, timeouts
//! and connection errors are transient: the pipeline retries the batch with
//! backoff. Any other 4xx refuses events for good; the sink bisects the
//! request to find exactly which, and those become rejections (dead letters
//! or a stop, per `on_error`) while the rest is delivered.
//!
//! Optional `Authorization: Bearer <token>`, and a signature header
//! `Tributary-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>` so the receiver can verify origin and reject replays.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tributary_core::ChangeEvent;

use tributary_core::check::Finding;
use tributary_core::sink::{
    BoxFuture, Capabilities, Connector, Rejection, Sink, SinkError, Written,
};

use crate::settings::{finding, secret, Invalid, SinkContext};
use crate::{Error, FailureKind, RecordEncoder, RecordOptions};

/// Settings of an HTTP sink.
#[derive(Clone)]
pub struct HttpOptions {
    pub url: String,
    pub bearer_token: Option<String>,
    pub hmac_secret: Option<String>,
    pub timeout: Duration,
    /// At most this many events per request.
    pub batch_size: usize,
    pub records: RecordOptions,
    /// A CA file to trust in addition to the public roots.
    pub tls_ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the secret.
        write!(f, "HttpOptions({})", self.url)
    }
}

pub struct HttpSink {
    client: reqwest::Client,
    options: HttpOptions,
    encoder: RecordEncoder,
    body: Vec<u8>,
}

/// How one request came out.
enum Outcome {
    Delivered,
    /// The receiver refused the request's events for good (4xx).
    Refused(String),
}

fn http_error(what: &'static str, reason: impl std::fmt::Display, transient: bool) -> Error {
    Error::Http {
        what,
        reason: reason.to_string(),
        kind: if transient {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        },
    }
}

impl HttpSink {
    pub fn open(options: HttpOptions) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &options.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| {
                http_error("reading tls_ca", format!("{}: {e}", ca.display()), false)
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| http_error("reading tls_ca", e, false))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| http_error("configuring the client", e, false))?;
        let records = RecordOptions {
            tombstones: false,
            ..options.records.clone()
        };
        Ok(Self {
            client,
            encoder: RecordEncoder::new(records),
            options,
            body: Vec::with_capacity(1 << 16),
        })
    }

    /// Delivers the batch in requests of at most `batch_size` events.
    async fn write_events(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, Error> {
        let mut rejections = Vec::new();
        let size = self.options.batch_size.max(1);
        for (n, chunk) in events.chunks(size).enumerate() {
            self.deliver(chunk, n * size, &mut rejections).await?;
        }
        Ok(rejections)
    }

    /// Posts `events`; on a refusal, halves until each refused event is
    /// alone (its index, offset by `base`, becomes a rejection).
    async fn deliver(
        &mut self,
        events: &[ChangeEvent],
        base: usize,
        rejections: &mut Vec<Rejection>,
    ) -> Result<(), Error> {
        // Iterative bisection: a stack of (offset, length) still to send.
        let mut todo = vec![(0, events.len())];
        while let Some((start, len)) = todo.pop() {
            match self.post(&events[start..start + len]).await? {
                Outcome::Delivered => {}
                Outcome::Refused(reason) if len == 1 => rejections.push(Rejection {
                    index: base + start,
                    reason,
                }),
                Outcome::Refused(_) => {
                    let half = len / 2;
                    // Pushed in reverse so the first half goes first: order kept.
                    todo.push((start + half, len - half));
                    todo.push((start, half));
                }
            }
        }
        rejections.sort_by_key(|r| r.index);
        Ok(())
    }

    async fn post(&mut self, events: &[ChangeEvent]) -> Result<Outcome, Error> {
        self.body.clear();
        self.body.push(b'[');
        let lines = self.encoder.encode(events);
        // JSON Lines → a JSON array: every line is one record.
        for (i, line) in lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            if i > 0 {
                self.body.push(b',');
            }
            self.body.extend_from_slice(line);
        }
        self.body.push(b']');
        let mut request = self
            .client
            .post(&self.options.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.options.bearer_token {
            request = request.bearer_auth(token);
        }
        if let Some(secret) = &self.options.hmac_secret {
            request = request.header("Tributary-Signature", signature(secret, &self.body));
        }
        let response = match request.body(self.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "waiting for the response"
                } else {
                    "sending the request"
                };
                return Err(http_error(what, without_url(&e), true));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Outcome::Delivered);
        }
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            return Err(http_error(
                "posting events",
                format!("the receiver answered {status}"),
                true,
            ));
        }
        // The receiver's own words help, but only a little of them.
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Ok(Outcome::Refused(format!(
            "the receiver answered {status}: {text}"
        )))
    }
}

impl Sink for HttpSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            deduplicates: false,
            ..Capabilities::default()
        }
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move { Ok(self.write_events(events).await?) })
    }
}

/// What `tributary check` says about an HTTP sink, sending nothing: the
/// URL's host accepts TCP connections.
async fn probe(options: &HttpOptions) -> Result<String, Error> {
    let url =
        reqwest::Url::parse(&options.url).map_err(|e| http_error("parsing the url", e, false))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(format!(
            "HTTP receiver {}://{host}:{port} accepts connections",
            url.scheme()
        )),
        Ok(Err(e)) => Err(http_error(
            "connecting",
            format!("{host}:{port}: {e}"),
            true,
        )),
        Err(_) => Err(http_error(
            "connecting",
            format!("{host}:{port}: timed out"),
            true,
        )),
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("t={t},v1={}", sign(secret, t, body))
}

fn sign(secret: &str, t: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// reqwest's message without the URL (it may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// `type = "http"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    url: String,
    /// Topic template of the records: `{source}`, `{schema}`, `{table}`.
    topic: Option<String>,
    /// `Authorization: Bearer` token, from this environment variable.
    bearer_token_env: Option<String>,
    /// HMAC-SHA256 signing secret, from this environment variable.
    hmac_secret_env: Option<String>,
    /// How long one request may take.
    #[serde(default = "default_timeout")]
    timeout: tributary_core::setting::Duration,
    /// At most this many events per request.
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    tls_ca: Option<std::path::PathBuf>,
}

fn default_timeout() -> tributary_core::setting::Duration {
    tributary_core::setting::Duration::from_secs(10)
}

fn default_batch_size() -> usize {
    1000
}

impl HttpSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(Invalid::new(
                format!("url \"{}\" is not an http:// or https:// url", self.url),
                Some("url = \"https://hooks.example.com/cdc\""),
            ));
        }
        if self.batch_size == 0 {
            return Err(Invalid::new("batch_size must be at least 1", None));
        }
        if self.timeout.get().is_zero() {
            return Err(Invalid::new(
                "timeout must be longer than 0s",
                Some("timeout = \"10s\""),
            ));
        }
        Ok(())
    }

    /// The topic template its records carry.
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or(crate::DEFAULT_TOPIC)
    }

    /// The sink's options, with its secrets read from the environment.
    pub fn options(&self, context: &SinkContext) -> Result<HttpOptions, Error> {
        Ok(HttpOptions {
            url: self.url.clone(),
            bearer_token: secret(&self.bearer_token_env, "bearer_token_env")?,
            hmac_secret: secret(&self.hmac_secret_env, "hmac_secret_env")?,
            timeout: self.timeout.get(),
            batch_size: self.batch_size,
            records: RecordOptions {
                topic: self.topic().to_owned(),
                routes: context.routes.clone(),
                tombstones: false,
            },
            tls_ca: self.tls_ca.clone(),
        })
    }

    pub fn connector(&self, context: &SinkContext) -> Result<Box<dyn Connector>, Error> {
        Ok(Box::new(self.options(context)?))
    }
}

impl Connector for HttpOptions {
    fn probe(&self) -> BoxFuture<'_, Finding> {
        Box::pin(async move {
            finding(
                probe(self).await,
                "check the url of this sink and that the receiver is running",
            )
        })
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>> {
        let opened = HttpSink::open(self.clone());
        Box::pin(std::future::ready(
            opened
                .map(|s| Box::new(s) as Box<dyn Sink>)
                .map_err(SinkError::from),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // The expected value comes from `openssl dgst`:
        // printf '1700000000.[]' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", 1_700_000_000, b"[]"),
            "74f76d8933679a54d6be8c7560a5233b124658241ca5a3b0f09af80d3ea60d78"
        );
    }
}
