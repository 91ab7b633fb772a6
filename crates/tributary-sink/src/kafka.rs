//! The Kafka sink, on rdkafka with its bundled librdkafka: the client every
//! Kafka-compatible broker is tested against, with the idempotent producer
//! (no reordering or duplicates from its own retries) that rskafka lacks.
//!
//! Each event goes to the topic of its template with key = the key JSON (so
//! a row always lands on the same partition and stays in order), value = the
//! Debezium value JSON, and a `tributary-id` header holding the event id, by
//! which consumers drop what a crash redelivered (Kafka keeps duplicates; the
//! id makes them recognisable). A delete is followed by a tombstone (same key,
//! null value) so log compaction can drop the row, unless `tombstones = false`.
//! `write` returns once every message's delivery report came back with
//! `acks=all`: the batch is replicated before the position moves.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tributary_core::{debezium, ChangeEvent};

use tributary_core::check::Finding;
use tributary_core::sink::{
    BoxFuture, Capabilities, Connector, Rejection, Sink, SinkError, Written,
};

use crate::settings::{finding, secret, Invalid, SinkContext};
use crate::{Error, FailureKind};

/// Settings of a Kafka sink.
#[derive(Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    /// Topic template: `{source}`, `{schema}`, `{table}`.
    pub topic: String,
    pub routes: crate::Routes,
    pub tombstones: bool,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// Create a missing topic (with `partitions` and `replication_factor`).
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// librdkafka properties passed through (SASL, TLS, tuning); they win
    /// over Tributary's defaults except the delivery guarantees.
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the properties: they may hold `sasl.password`.
        write!(f, "KafkaOptions({})", self.brokers)
    }
}

pub struct KafkaSink {
    producer: FutureProducer<QuietContext>,
    admin: AdminClient<QuietContext>,
    options: KafkaOptions,
    /// Topics known to exist.
    topics: HashSet<String>,
    scratch: String,
    /// Reuses the encoded `source` block while it stays the same.
    envelopes: debezium::EnvelopeWriter,
    id: String,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn kafka_error(what: &'static str, kind: FailureKind, e: impl std::fmt::Display) -> Error {
    Error::Kafka {
        what,
        reason: e.to_string(),
        kind,
    }
}

/// librdkafka's own log lines and "global errors" (every reconnect attempt
/// while a broker is down) at debug level: the sink reports what matters
/// (a failed write, with its cause) once per attempt through the pipeline.
struct QuietContext;

impl rdkafka::ClientContext for QuietContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, "librdkafka: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, "librdkafka: {reason}");
    }
}

/// The client settings: the user's properties, then the guarantees.
fn client_config(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.brokers)
        .set("client.id", "tributary")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "15000")
        .set("compression.type", &options.compression);
    for (key, value) in &options.properties {
        config.set(key, value);
    }
    // Not overridable: what makes a delivery report mean "durable".
    config.set("enable.idempotence", "true").set("acks", "all");
    config
}

/// Whether a failure is the message's own (it can never be stored).
fn is_poison(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidRecord)
    )
}

/// What `tributary check` says about a Kafka sink, creating nothing.
async fn probe(options: &KafkaOptions) -> Result<String, Error> {
    let producer: FutureProducer<QuietContext> = client_config(options)
        .create_with_context(QuietContext)
        .map_err(|e| kafka_error("configuring the client", FailureKind::Permanent, e))?;
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
    })
    .await
    .map_err(|e| kafka_error("reading cluster metadata", FailureKind::Transient, e))?
    .map_err(|e| kafka_error("reading cluster metadata", FailureKind::Transient, e))?;
    Ok(format!(
        "Kafka at {} answers: {} broker(s), {} topic(s)",
        options.brokers,
        metadata.brokers().len(),
        metadata.topics().len()
    ))
}

impl KafkaSink {
    pub async fn open(options: KafkaOptions) -> Result<Self, Error> {
        let config = client_config(&options);
        let producer = config
            .create_with_context(QuietContext)
            .map_err(|e| kafka_error("configuring the producer", FailureKind::Permanent, e))?;
        let admin = config
            .create_with_context(QuietContext)
            .map_err(|e| kafka_error("configuring the admin client", FailureKind::Permanent, e))?;
        // Fail early when no broker answers (the write path would only time out).
        probe(&options).await?;
        Ok(Self {
            producer,
            admin,
            options,
            topics: HashSet::new(),
            scratch: String::new(),
            envelopes: debezium::EnvelopeWriter::default(),
            id: String::new(),
            key: Vec::with_capacity(256),
            value: Vec::with_capacity(4096),
        })
    }

    /// Creates the topics of `events` that are not known yet.
    async fn ensure_topics(&mut self, events: &[ChangeEvent]) -> Result<(), Error> {
        if !self.options.create_topics {
            return Ok(());
        }
        let mut missing = Vec::new();
        for event in events {
            let template = crate::template_for(&self.options.routes, &self.options.topic, event);
            debezium::write_topic(&mut self.scratch, template, event);
            if !self.topics.contains(&self.scratch) && !missing.contains(&self.scratch) {
                missing.push(self.scratch.clone());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.options.partitions,
                    TopicReplication::Fixed(self.options.replication_factor),
                )
            })
            .collect();
        let results = self
            .admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .map_err(|e| kafka_error("creating topics", FailureKind::Transient, e))?;
        for result in results {
            match result {
                Ok(topic) => {
                    tracing::info!(topic, "created Kafka topic");
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(kafka_error(
                        "creating topics",
                        FailureKind::Transient,
                        format!("{topic}: {code}"),
                    ))
                }
            }
        }
        self.topics.extend(missing);
        Ok(())
    }

    /// Produces the batch and waits for every delivery report.
    async fn write_events(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, Error> {
        let result = self.try_write(events).await;
        if result.is_err() {
            // A restarted broker may have lost topics and forgotten this
            // producer's id (its idempotence state): check the topics again
            // and retry with a new producer, which starts a fresh session.
            self.topics.clear();
            if let Some((code, reason)) = self.producer.client().fatal_error() {
                tracing::warn!(%code, reason, "Kafka producer failed fatally");
            }
            self.producer = client_config(&self.options)
                .create_with_context(QuietContext)
                .map_err(|e| kafka_error("configuring the producer", FailureKind::Permanent, e))?;
        }
        result
    }

    async fn try_write(&mut self, events: &[ChangeEvent]) -> Result<Vec<Rejection>, Error> {
        self.ensure_topics(events).await?;
        let now_ms = tributary_core::clock::now_ms();
        let mut pending: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(events.len());
        let mut rejections = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let tombstone = self.options.tombstones && debezium::has_tombstone(event);
            for is_tombstone in [false, true].into_iter().take(1 + usize::from(tombstone)) {
                match self
                    .send(event, is_tombstone, now_ms, &mut pending, index)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if is_poison(&e) => rejections.push(Rejection {
                        index,
                        reason: format!("Kafka refused the message: {e}"),
                    }),
                    Err(e) => return Err(kafka_error("producing", FailureKind::Transient, e)),
                }
            }
        }
        for (index, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if is_poison(&e) => rejections.push(Rejection {
                    index,
                    reason: format!("Kafka refused the message: {e}"),
                }),
                Ok(Err((e, _))) => {
                    return Err(kafka_error(
                        "waiting for delivery reports",
                        FailureKind::Transient,
                        e,
                    ))
                }
                Err(_) => {
                    return Err(kafka_error(
                        "waiting for delivery reports",
                        FailureKind::Transient,
                        "the producer was dropped",
                    ))
                }
            }
        }
        rejections.sort_by_key(|r| r.index);
        rejections.dedup_by_key(|r| r.index);
        Ok(rejections)
    }

    /// Enqueues one message; when librdkafka's queue is full (only with a
    /// lowered `queue.buffering.max.messages`: a batch is smaller than the
    /// default), waits for deliveries to make room (back-pressure).
    async fn send(
        &mut self,
        event: &ChangeEvent,
        tombstone: bool,
        now_ms: i64,
        pending: &mut Vec<(usize, DeliveryFuture)>,
        index: usize,
    ) -> Result<(), KafkaError> {
        let template = crate::template_for(&self.options.routes, &self.options.topic, event);
        debezium::write_topic(&mut self.scratch, template, event);
        self.id.clear();
        event.id.push_to(&mut self.id);
        self.key.clear();
        debezium::write_key(&mut self.key, event);
        self.value.clear();
        if !tombstone {
            self.envelopes.write_value(&mut self.value, event, now_ms);
        }
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: "tributary-id",
                value: Some(self.id.as_bytes()),
            });
            let mut record = FutureRecord::to(&self.scratch).headers(headers);
            if event.key.is_some() {
                record = record.key(&self.key[..]);
            }
            if !tombstone {
                record = record.payload(&self.value[..]);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    pending.push((index, delivery));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

impl Sink for KafkaSink {
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

/// `type = "kafka"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port[,host:port…]`.
    brokers: String,
    /// Topic template: `{source}`, `{schema}`, `{table}`.
    topic: Option<String>,
    /// A tombstone (same key, `null` value) after each delete.
    #[serde(default = "crate::settings::yes")]
    tombstones: bool,
    #[serde(default)]
    compression: Compression,
    /// Create missing topics.
    #[serde(default = "crate::settings::yes")]
    create_topics: bool,
    /// Partitions of created topics.
    #[serde(default = "one")]
    partitions: i32,
    /// Replication factor of created topics.
    #[serde(default = "one")]
    replication_factor: i32,
    /// librdkafka properties passed through (SASL, TLS, tuning).
    #[serde(default)]
    properties: BTreeMap<String, String>,
    /// `sasl.username`.
    user: Option<String>,
    /// `sasl.password`, from this environment variable.
    sasl_password_env: Option<String>,
    /// `ssl.ca.location`; sets `security.protocol = "ssl"` unless given.
    tls_ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// librdkafka's `compression.type`.
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn one() -> i32 {
    1
}

impl KafkaSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.brokers.trim().is_empty() {
            return Err(Invalid::new(
                "brokers is empty",
                Some("brokers = \"127.0.0.1:9092\""),
            ));
        }
        if self.partitions < 1 || self.replication_factor < 1 {
            return Err(Invalid::new(
                "partitions and replication_factor must be at least 1",
                None,
            ));
        }
        Ok(())
    }

    /// The topic template its records go to.
    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or(crate::DEFAULT_TOPIC)
    }

    /// The sink's options, with its secret read from the environment.
    pub fn options(&self, context: &SinkContext) -> Result<KafkaOptions, Error> {
        let mut properties = self.properties.clone();
        if let Some(password) = secret(&self.sasl_password_env, "sasl_password_env")? {
            properties.insert("sasl.password".into(), password);
        }
        if let Some(ca) = &self.tls_ca {
            properties.insert("ssl.ca.location".into(), ca.display().to_string());
            properties
                .entry("security.protocol".into())
                .or_insert_with(|| "ssl".into());
        }
        if let Some(user) = &self.user {
            properties.insert("sasl.username".into(), user.clone());
        }
        Ok(KafkaOptions {
            brokers: self.brokers.clone(),
            topic: self.topic().to_owned(),
            routes: context.routes.clone(),
            tombstones: self.tombstones,
            compression: self.compression.name().to_owned(),
            create_topics: self.create_topics,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            properties,
        })
    }

    pub fn connector(&self, context: &SinkContext) -> Result<Box<dyn Connector>, Error> {
        Ok(Box::new(self.options(context)?))
    }
}

impl Connector for KafkaOptions {
    fn probe(&self) -> BoxFuture<'_, Finding> {
        Box::pin(async move {
            finding(
                probe(self).await,
                "check brokers and the security properties (security.protocol, sasl.*, ssl.*) \
                 of this sink",
            )
        })
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>> {
        Box::pin(async move { Ok(Box::new(KafkaSink::open(self.clone()).await?) as Box<dyn Sink>) })
    }
}
