//! The NATS JetStream sink (async-nats, the NATS project's own client).
//!
//! Each event is published to the subject of the template with payload = the
//! Debezium value JSON and headers `Nats-Msg-Id` = the event id and
//! `Tributary-Key` = the key JSON. JetStream drops a message whose id it saw
//! within the stream's duplicate window, so a batch redelivered after a crash
//! lands once. A batch is published pipelined (all publishes first, then all
//! acks), and `write` returns only when JetStream acknowledged every message
//! as stored; a duplicate ack counts as stored. There are no tombstones on
//! NATS: a tombstone would carry the delete's id and be dropped as its
//! duplicate, and JetStream has no compaction that needs one.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use tributary_core::{debezium, ChangeEvent};

use tributary_core::check::Finding;
use tributary_core::sink::{
    BoxFuture, Capabilities, Connector, Rejection, Sink, SinkError, Written,
};

use crate::settings::{finding, secret, Invalid, SinkContext};
use crate::{Error, FailureKind};

/// Settings of a NATS sink.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub stream: String,
    /// Subject template: `{source}`, `{schema}`, `{table}`.
    pub subject: String,
    /// Per-table subject templates (routing).
    pub routes: crate::Routes,
    /// The sources whose events this sink receives (for the stream subjects).
    pub sources: Vec<String>,
    /// File (default) or memory storage, when the stream is created.
    pub memory_storage: bool,
    /// JetStream's duplicate window, when the stream is created.
    pub duplicate_window: Duration,
    /// The server and how to log in to it.
    pub login: tributary_nats::NatsLogin,
}

/// Publishes at most this many messages before awaiting their acks.
const IN_FLIGHT: usize = 4096;

pub struct NatsSink {
    context: jetstream::Context,
    subject: String,
    routes: crate::Routes,
    stream: String,
    /// Reused per event: subject, id, key and value.
    scratch: String,
    /// Reuses the encoded `source` block while it stays the same.
    envelopes: debezium::EnvelopeWriter,
    id: String,
    buf: Vec<u8>,
}

fn nats_error(what: &'static str, kind: FailureKind, e: impl std::fmt::Display) -> Error {
    Error::Nats {
        what,
        reason: e.to_string(),
        kind,
    }
}

/// The stream subjects of a template: placeholders other than `{source}`
/// become single-token wildcards, one subject per source.
/// Routed tables add their own subjects.
fn stream_subjects(template: &str, routes: &crate::Routes, sources: &[String]) -> Vec<String> {
    let generic = template.replace("{schema}", "*").replace("{table}", "*");
    let mut subjects: Vec<String> = sources
        .iter()
        .map(|s| generic.replace("{source}", s))
        .collect();
    for (table, route) in routes {
        let routed = route
            .replace("{schema}", &table.schema)
            .replace("{table}", &table.table);
        subjects.extend(sources.iter().map(|s| routed.replace("{source}", s)));
    }
    subjects.sort();
    subjects.dedup();
    subjects
}

/// Connects with the sink's credentials and TLS settings.
async fn connect(options: &NatsOptions) -> Result<jetstream::Context, Error> {
    let client = options.login.connect("tributary").await.map_err(|e| {
        let kind = match e {
            tributary_nats::ConnectError::Credentials { .. } => FailureKind::Permanent,
            tributary_nats::ConnectError::Unreachable { .. } => FailureKind::Transient,
        };
        nats_error("connecting", kind, e)
    })?;
    Ok(jetstream::new(client))
}

/// An existing stream must capture every subject the sink publishes to.
async fn check_subjects(
    existing: &mut stream::Stream,
    name: &str,
    subjects: &[String],
) -> Result<(), Error> {
    let info = existing
        .info()
        .await
        .map_err(|e| nats_error("reading the stream", FailureKind::Permanent, e))?;
    let missing: Vec<&str> = subjects
        .iter()
        .filter(|s| {
            !info
                .config
                .subjects
                .iter()
                .any(|p| tributary_nats::covers(p, s))
        })
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::StreamSubjects {
        stream: name.to_owned(),
        subjects: missing.join(", "),
    })
}

/// What `tributary check` says about a NATS sink, without creating anything:
/// `Ok(message)` when the server answers and the stream exists and captures
/// the sink's subjects or is missing (then `run` creates it).
async fn probe(options: &NatsOptions) -> Result<String, Error> {
    let context = connect(options).await?;
    let subjects = stream_subjects(&options.subject, &options.routes, &options.sources);
    match context.get_stream(&options.stream).await {
        Ok(mut existing) => {
            check_subjects(&mut existing, &options.stream, &subjects).await?;
            Ok(format!(
                "JetStream stream \"{}\" at {} captures {}",
                options.stream,
                options.login.url,
                subjects.join(", ")
            ))
        }
        Err(_) => Ok(format!(
            "JetStream stream \"{}\" at {} does not exist yet; run creates it",
            options.stream, options.login.url
        )),
    }
}

impl NatsSink {
    /// Connects, and creates the stream if missing or checks that an
    /// existing one captures every subject this sink publishes to.
    pub async fn open(options: &NatsOptions) -> Result<Self, Error> {
        let context = connect(options).await?;
        let subjects = stream_subjects(&options.subject, &options.routes, &options.sources);
        match context.get_stream(&options.stream).await {
            Ok(mut existing) => {
                check_subjects(&mut existing, &options.stream, &subjects).await?;
            }
            Err(_) => {
                context
                    .get_or_create_stream(stream::Config {
                        name: options.stream.clone(),
                        subjects: subjects.clone(),
                        storage: if options.memory_storage {
                            stream::StorageType::Memory
                        } else {
                            stream::StorageType::File
                        },
                        duplicate_window: options.duplicate_window,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| nats_error("creating the stream", FailureKind::Permanent, e))?;
                tracing::info!(stream = %options.stream, subjects = ?subjects, "created JetStream stream");
            }
        }
        Ok(Self {
            context,
            subject: options.subject.clone(),
            routes: options.routes.clone(),
            stream: options.stream.clone(),
            scratch: String::new(),
            envelopes: debezium::EnvelopeWriter::default(),
            id: String::new(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Publishes the batch and waits until JetStream stored every message.
    /// A message larger than the server's `max_payload` is a rejection (it
    /// can never be stored); every other failure fails the whole batch.
    async fn write_events(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, Error> {
        let now_ms = tributary_core::clock::now_ms();
        let mut duplicates = 0;
        let mut rejections = Vec::new();
        for (chunk_no, chunk) in events.chunks(IN_FLIGHT).enumerate() {
            let mut acks = Vec::with_capacity(chunk.len());
            for (i, event) in chunk.iter().enumerate() {
                let template = crate::template_for(&self.routes, &self.subject, event);
                debezium::write_topic(&mut self.scratch, template, event);
                self.id.clear();
                event.id.push_to(&mut self.id);
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", self.id.as_str());
                self.buf.clear();
                debezium::write_key(&mut self.buf, event);
                headers.insert("Tributary-Key", String::from_utf8_lossy(&self.buf).as_ref());
                self.buf.clear();
                self.envelopes.write_value(&mut self.buf, event, now_ms);
                let published = self
                    .context
                    .publish_with_headers(
                        self.scratch.clone(),
                        headers,
                        Bytes::copy_from_slice(&self.buf),
                    )
                    .await;
                match published {
                    Ok(ack) => acks.push(ack),
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        rejections.push(Rejection {
                            index: chunk_no * IN_FLIGHT + i,
                            reason: format!(
                                "{} bytes exceed the server's max_payload",
                                self.buf.len()
                            ),
                        });
                    }
                    Err(e) => return Err(nats_error("publishing", FailureKind::Transient, e)),
                }
            }
            for ack in acks {
                let ack = ack.await.map_err(|e| {
                    nats_error("waiting for the publish ack", FailureKind::Transient, e)
                })?;
                duplicates += usize::from(ack.duplicate);
                if ack.stream != self.stream {
                    return Err(Error::StreamSubjects {
                        stream: self.stream.clone(),
                        subjects: format!("(stored in stream {} instead)", ack.stream),
                    });
                }
            }
        }
        if duplicates > 0 {
            tracing::info!(
                stream = %self.stream,
                duplicates,
                "JetStream dropped redelivered messages as duplicates"
            );
        }
        Ok(rejections)
    }
}

impl Sink for NatsSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            deduplicates: true,
            ..Capabilities::default()
        }
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move { Ok(self.write_events(events).await?) })
    }
}

/// `type = "nats"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    url: String,
    #[serde(default = "default_stream")]
    stream: String,
    /// Subject template: `{source}`, `{schema}`, `{table}`.
    subject: Option<String>,
    /// Storage of the stream, when it is created.
    #[serde(default)]
    storage: Storage,
    /// JetStream's duplicate window, when the stream is created.
    #[serde(default = "default_duplicate_window")]
    duplicate_window: tributary_core::setting::Duration,
    user: Option<String>,
    password_env: Option<String>,
    token_env: Option<String>,
    credentials_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    #[serde(default)]
    require_tls: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Storage {
    #[default]
    File,
    Memory,
}

fn default_stream() -> String {
    "CDC".into()
}

fn default_duplicate_window() -> tributary_core::setting::Duration {
    tributary_core::setting::Duration::from_secs(120)
}

impl NatsSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.url.trim().is_empty() {
            return Err(Invalid::new(
                "url is empty",
                Some("url = \"nats://127.0.0.1:4222\""),
            ));
        }
        Ok(())
    }

    /// The subject template its messages go to.
    pub fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or(crate::DEFAULT_TOPIC)
    }

    /// The sink's options, with its secrets read from the environment.
    pub fn options(&self, context: &SinkContext) -> Result<NatsOptions, Error> {
        Ok(NatsOptions {
            stream: self.stream.clone(),
            subject: self.subject().to_owned(),
            routes: context.routes.clone(),
            sources: context.sources.clone(),
            memory_storage: self.storage == Storage::Memory,
            duplicate_window: self.duplicate_window.get(),
            login: tributary_nats::NatsLogin {
                url: self.url.clone(),
                user: self.user.clone(),
                password: secret(&self.password_env, "password_env")?,
                token: secret(&self.token_env, "token_env")?,
                credentials_file: self.credentials_file.clone(),
                tls_ca: self.tls_ca.clone(),
                require_tls: self.require_tls,
            },
        })
    }

    pub fn connector(&self, context: &SinkContext) -> Result<Box<dyn Connector>, Error> {
        Ok(Box::new(self.options(context)?))
    }
}

impl Connector for NatsOptions {
    fn probe(&self) -> BoxFuture<'_, Finding> {
        Box::pin(async move {
            finding(
                probe(self).await,
                "check url, credentials and TLS of this sink; an existing stream must capture \
                 the sink's subjects (or choose another `stream`)",
            )
        })
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>> {
        Box::pin(async move { Ok(Box::new(NatsSink::open(self).await?) as Box<dyn Sink>) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_per_source_with_wildcards() {
        let sources = vec!["cash".to_owned(), "stock".to_owned()];
        let none = crate::Routes::new();
        assert_eq!(
            stream_subjects("{source}.{schema}.{table}", &none, &sources),
            ["cash.*.*", "stock.*.*"]
        );
        assert_eq!(stream_subjects("cdc.{table}", &none, &sources), ["cdc.*"]);
        let routes = crate::Routes::from([(
            tributary_core::TableRef::new("public", "accounts"),
            "ledger.{source}.{table}".to_owned(),
        )]);
        assert_eq!(
            stream_subjects("cdc.{table}", &routes, &sources[..1]),
            ["cdc.*", "ledger.cash.accounts"]
        );
    }
}
