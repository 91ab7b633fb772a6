//! A NATS JetStream subject as a source: a durable pull consumer whose
//! messages become the rows of the declared table.
//!
//! The consumer acknowledges with `AckPolicy::All`: acknowledging one
//! message acknowledges every earlier one, so one ack per durable
//! checkpoint confirms everything before it, as a replication slot's
//! confirmed position does. A message is acknowledged only once the
//! pipeline reports its checkpoint durable (in every sink and in the views'
//! state).
//!
//! The source's own checkpoint, not the consumer's state, decides where
//! reading resumes: messages are passed on in stream order from it, each
//! once per session. JetStream hands a consumer's unacknowledged messages
//! back only after `ack_wait`, behind newer ones, so a consumer that has
//! delivered past the checkpoint (before a crash) or lost a delivery (a
//! server restart) is created again at the first message needed (see
//! [`NatsSource::open`]). What a consumer kept before a crash is skipped by
//! that consumer (its checkpoint travels with its state), so each message
//! takes effect once.
//!
//! Streams with `interest` retention drop messages no consumer is
//! interested in: recreating the consumer can drop the unacknowledged ones,
//! so `check` refuses such a stream.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use futures_util::{FutureExt, StreamExt};
use tributary_core::check::Finding;
use tributary_core::source::{
    BoxFuture, Checkpoint, Source, SourceError, SourceHealth, SourceItem, SourceLinks, TableShapes,
};
use tributary_core::{Position, TableRef, TableSchema, Value};
use tributary_nats::NatsLogin;

use crate::dead_letter::{DeadLetters, Letter};
use crate::error::{jetstream as js_error, Error};
use crate::message::{Format, Mode};
use crate::table::{DeclaredTable, Origin};

/// The settings of one NATS source.
#[derive(Debug, Clone)]
pub struct NatsSourceSettings {
    /// The source's name: the event ids' prefix and `source.name`.
    pub name: String,
    pub login: NatsLogin,
    pub stream: String,
    /// Only the stream's messages on these subjects; `None`: all of them.
    pub subject: Option<String>,
    /// The durable consumer's name.
    pub consumer: String,
    pub table: TableRef,
    /// The declared columns and key (append mode: `_seq` first, the key).
    pub schema: Arc<TableSchema>,
    pub mode: Mode,
    pub format: Format,
    /// Where refused messages go; `None`: a refused message stops the source.
    pub dead_letters: Option<PathBuf>,
}

/// Messages taken from the consumer for one batch, at most.
const BATCH_MESSAGES: usize = 1024;
/// How long JetStream waits for an ack before redelivering: longer than a
/// checkpoint takes to become durable under load (a view's keep of a large
/// batch), so redeliveries are rare; they are skipped anyway.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Messages delivered and not yet acknowledged, at most: the consumer
/// then waits (back-pressure), as the pipeline's bounded channel does.
const MAX_ACK_PENDING: i64 = 65_536;
/// The header a message's key travels in (what Tributary's NATS sink
/// writes): a JSON object of the key columns.
pub const KEY_HEADER: &str = "Tributary-Key";

pub struct NatsSource {
    settings: NatsSourceSettings,
    table: DeclaredTable,
    db: Arc<str>,
}

impl NatsSource {
    pub fn new(settings: NatsSourceSettings) -> Result<Self, Error> {
        let table = DeclaredTable::new(
            &settings.name,
            &settings.table,
            Arc::clone(&settings.schema),
            settings.mode,
            settings.format,
            1,
        )?;
        Ok(Self {
            db: settings.stream.as_str().into(),
            table,
            settings,
        })
    }

    async fn connect(&self) -> Result<(async_nats::Client, jetstream::stream::Stream), Error> {
        let client = self
            .settings
            .login
            .connect(&format!("tributary source {}", self.settings.name))
            .await?;
        let context = jetstream::new(client.clone());
        let stream = context
            .get_stream(&self.settings.stream)
            .await
            .map_err(|source| Error::StreamMissing {
                stream: self.settings.stream.clone(),
                source,
            })?;
        if stream.cached_info().config.retention == jetstream::stream::RetentionPolicy::Interest {
            return Err(Error::InterestRetention {
                stream: self.settings.stream.clone(),
            });
        }
        if let Some(subject) = &self.settings.subject {
            let captured = &stream.cached_info().config.subjects;
            if !captured.iter().any(|s| tributary_nats::covers(s, subject)) {
                return Err(Error::SubjectNotInStream {
                    stream: self.settings.stream.clone(),
                    subject: subject.clone(),
                });
            }
        }
        Ok((client, stream))
    }

    fn filter(&self) -> &str {
        self.settings.subject.as_deref().unwrap_or("")
    }

    /// The durable consumer's messages from stream sequence `next` on.
    ///
    /// JetStream redelivers what a consumer delivered and never saw
    /// acknowledged only after `ack_wait`, behind newer messages: a consumer
    /// that delivered `next` or later (before a crash, or in a delivery
    /// lost while the server restarted) would hand those over out of order,
    /// and this source passes messages on in order only. Such a consumer is
    /// deleted and created again at `next`; one that has not come that far
    /// is kept (what it delivers before `next` is acknowledged and skipped).
    async fn open(
        &self,
        stream: &jetstream::stream::Stream,
        next: u64,
    ) -> Result<pull::Stream, Error> {
        let name = &self.settings.consumer;
        if let Ok(mut existing) = stream.get_consumer::<pull::Config>(name).await {
            let info = existing
                .info()
                .await
                .map_err(|e| js_error("reading the consumer", e))?;
            if info.config.filter_subject != self.filter() {
                return Err(Error::ConsumerMismatch {
                    consumer: name.clone(),
                    filter: info.config.filter_subject.clone(),
                    subject: self.filter().to_owned(),
                });
            }
            if info.delivered.stream_sequence < next {
                return existing
                    .messages()
                    .await
                    .map_err(|e| js_error("starting to consume", e));
            }
            stream
                .delete_consumer(name)
                .await
                .map_err(|e| js_error("deleting the consumer to restart it", e))?;
        }
        let config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("Tributary source {}", self.settings.name)),
            deliver_policy: if next <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                }
            },
            ack_policy: AckPolicy::All,
            ack_wait: ACK_WAIT,
            filter_subject: self.filter().to_owned(),
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| js_error("creating the durable consumer", e))?;
        tracing::info!(source = %self.settings.name, consumer = %name, next, "JetStream consumer (re)created");
        consumer
            .messages()
            .await
            .map_err(|e| js_error("starting to consume", e))
    }

    async fn stream_messages(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        mut links: SourceLinks,
    ) -> Result<(), Error> {
        let (client, stream) = self.connect().await?;
        // The next sequence to pass on; everything before it is durable
        // (as of the checkpoint) or was passed on in this session.
        let resumed = resume.map_or(1, |c| c.position.get()).max(1);
        let first = stream.cached_info().state.first_sequence;
        if resume.is_some() && first > resumed {
            if self.settings.subject.is_none() {
                return Err(Error::MessagesGone {
                    stream: self.settings.stream.clone(),
                    next: resumed,
                    first,
                });
            }
            // With a filter the missing ones may all be other subjects'.
            tracing::warn!(
                source = %self.settings.name,
                next = resumed,
                first,
                "the stream no longer holds messages from this source's checkpoint on; \
                 those of other subjects are not missed, but any of this subject are"
            );
        }
        let mut messages = self.open(&stream, resumed).await?;
        let mut reader = Reader {
            next: resumed,
            last_commit: resume.map_or(Position::START, |c| c.last_commit()),
            resumed,
            letters: self.settings.dead_letters.as_deref().map(DeadLetters::new),
            unacked: VecDeque::new(),
            stale: Vec::new(),
            consumer_seq: None,
            health: SourceHealth {
                slot: self.settings.consumer.clone(),
                position: Position::new(resumed),
                confirmed: Position::new(resumed),
                snapshot_done: true,
                ..SourceHealth::default()
            },
        };
        links.health.send_replace(reader.health.clone());
        loop {
            tokio::select! {
                changed = links.shutdown.changed() => {
                    if changed.is_err() || *links.shutdown.borrow() {
                        break;
                    }
                }
                changed = links.durable.changed() => {
                    if changed.is_err() {
                        break; // the pipeline is done
                    }
                    let durable = *links.durable.borrow_and_update();
                    reader.confirm(durable).await;
                    links.health.send_replace(reader.health.clone());
                }
                message = messages.next() => {
                    let mut batch = Vec::new();
                    let mut lost = match message {
                        None => true,
                        Some(message) => self.take(message, &mut batch),
                    };
                    while !lost && batch.len() < BATCH_MESSAGES {
                        match messages.next().now_or_never() {
                            Some(Some(message)) => lost = self.take(message, &mut batch),
                            _ => break,
                        }
                    }
                    let (items, gap) = self.read(&mut reader, batch)?;
                    reader.ack_stale().await;
                    if lost || gap {
                        // Deliveries went missing: read again from the
                        // first message not passed on.
                        tracing::info!(source = %self.settings.name, next = reader.next, "JetStream deliveries were lost; consuming again from the next message");
                        messages = self.open(&stream, reader.next).await?;
                        reader.consumer_seq = None;
                    }
                    let Some(items) = items else { continue };
                    for item in items {
                        tokio::select! {
                            sent = links.out.send(item) => {
                                if sent.is_err() {
                                    return Ok(()); // the pipeline is done
                                }
                            }
                            () = stopping(&mut links.shutdown) => {
                                // Not acknowledged: redelivered next time.
                                return finish(&client, reader).await;
                            }
                        }
                    }
                    links.health.send_replace(reader.health.clone());
                }
            }
        }
        finish(&client, reader).await
    }

    /// Adds a message from the consumer to `batch`; `true` when the
    /// consumer is gone (deleted, or its stream ended) and must be opened
    /// again. Other errors are hiccups the client recovers from by itself
    /// (a missed heartbeat while the server restarts).
    fn take(
        &self,
        message: Result<Message, async_nats::jetstream::consumer::pull::MessagesError>,
        batch: &mut Vec<Message>,
    ) -> bool {
        use async_nats::jetstream::consumer::pull::MessagesErrorKind;
        match message {
            Ok(message) => {
                batch.push(message);
                false
            }
            Err(e) => {
                tracing::warn!(source = %self.settings.name, error = %e, "JetStream consumer");
                e.kind() == MessagesErrorKind::ConsumerDeleted
            }
        }
    }

    /// A batch of messages as the items to send: their events, then the
    /// checkpoint past them. `None` when every message was a redelivery.
    ///
    /// Each delivery has the next consumer sequence: a jump means one was
    /// lost (in flight while the server restarted). The batch then stops
    /// before it (`true`), and the caller consumes again from the first
    /// message not passed on.
    fn read(
        &self,
        reader: &mut Reader,
        batch: Vec<Message>,
    ) -> Result<(Option<Vec<SourceItem>>, bool), Error> {
        let mut events = Vec::with_capacity(batch.len());
        let mut last = None;
        let mut gap = false;
        for message in batch {
            let info = message
                .info()
                .map_err(|e| js_error("reading a message's metadata", e))?;
            let seq = info.stream_sequence;
            let delivery = info.consumer_sequence;
            let published_us = (info.published.unix_timestamp_nanos() / 1000) as i64;
            if reader.consumer_seq.is_some_and(|last| delivery > last + 1) {
                gap = true;
                break;
            }
            reader.consumer_seq = Some(delivery);
            if seq < reader.next {
                if seq < reader.resumed {
                    // Durable before this session: acknowledge it now (a
                    // later ack would cover it, but none may come).
                    reader.stale.push(message);
                }
                continue;
            }
            let key = message
                .headers
                .as_ref()
                .and_then(|h| h.get(KEY_HEADER))
                .map(|v| v.as_str().as_bytes().to_vec());
            match self.table.decode(&message.payload, key.as_deref()) {
                Ok(change) => {
                    let origin = Origin {
                        commit: Position::new(seq),
                        ordinal: 0,
                        connector: "nats",
                        db: Arc::clone(&self.db),
                        ts_us: published_us,
                        lsn: seq,
                    };
                    // Sequences fit: JetStream's are far below 2^63.
                    let event = self
                        .table
                        .event(origin, change, |row| row[0] = Value::Int(seq as i64));
                    events.push(event);
                }
                Err(reason) => self.table.refuse(
                    reader.letters.as_mut(),
                    &Letter {
                        subject: message.subject.as_str(),
                        seq,
                        reason: &reason,
                        payload: &message.payload,
                    },
                )?,
            }
            reader.next = seq + 1;
            last = Some((seq, published_us, message));
        }
        let Some((seq, published_us, message)) = last else {
            return Ok((None, gap));
        };
        if let Some(letters) = reader.letters.as_mut() {
            letters.sync().map_err(|source| Error::DeadLetter {
                path: letters.path().display().to_string(),
                source,
            })?;
        }
        reader.last_commit = Position::new(seq);
        let checkpoint = Checkpoint {
            position: Position::new(reader.next),
            snapshot_complete: true,
            last_commit: Some(reader.last_commit),
        };
        reader.unacked.push_back(Unacked {
            position: checkpoint.position,
            published_us,
            message,
        });
        reader.health.position = checkpoint.position;
        let mut items = Vec::with_capacity(2);
        if !events.is_empty() {
            items.push(SourceItem::Events(events));
        }
        items.push(SourceItem::Checkpoint(checkpoint));
        Ok((Some(items), gap))
    }
}

/// What the consuming loop keeps between batches.
struct Reader {
    /// The next stream sequence to pass on.
    next: u64,
    /// The sequence of the last message passed on.
    last_commit: Position,
    /// Where this session started: everything before it was durable.
    resumed: u64,
    letters: Option<DeadLetters>,
    /// The last message of each checkpoint sent and not yet durable.
    unacked: VecDeque<Unacked>,
    /// Redeliveries of messages durable before this session.
    stale: Vec<Message>,
    /// The consumer sequence of the last delivery seen from the consumer.
    consumer_seq: Option<u64>,
    health: SourceHealth,
}

struct Unacked {
    position: Position,
    published_us: i64,
    message: Message,
}

impl Reader {
    /// `durable` is durable in every consumer: acknowledge the last
    /// message before it (`AckPolicy::All` covers the earlier ones).
    async fn confirm(&mut self, durable: Position) {
        let mut last = None;
        while self.unacked.front().is_some_and(|u| u.position <= durable) {
            last = self.unacked.pop_front();
        }
        if let Some(done) = last {
            if let Err(e) = done.message.ack().await {
                // JetStream redelivers it after ack_wait; it is skipped then.
                tracing::warn!(error = %e, "could not acknowledge a JetStream message");
            }
            self.health.confirmed = done.position;
        }
        self.health.lag_seconds = self.unacked.front().map_or(0.0, |u| {
            (tributary_core::clock::now_us() - u.published_us).max(0) as f64 / 1e6
        });
    }

    async fn ack_stale(&mut self) {
        for message in self.stale.drain(..) {
            if let Err(e) = message.ack().await {
                tracing::warn!(error = %e, "could not acknowledge a redelivered JetStream message");
            }
        }
    }
}

/// Returns once shutdown is asked for (or can no longer be).
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sends the acknowledgements still buffered in the client before the
/// connection goes.
async fn finish(client: &async_nats::Client, mut reader: Reader) -> Result<(), Error> {
    reader.ack_stale().await;
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "could not flush the last acknowledgements to NATS");
    }
    Ok(())
}

impl Source for NatsSource {
    fn preflight(&self) -> BoxFuture<'_, Result<Vec<Finding>, SourceError>> {
        Box::pin(async move {
            let mut findings = Vec::new();
            let (_client, stream) = match self.connect().await {
                Ok(connected) => connected,
                Err(e @ Error::Connect(_)) => return Err(SourceError::new(e)),
                Err(e) => {
                    findings.push(Finding::fail(e.to_string(), e.hint().unwrap_or_default()));
                    return Ok(findings);
                }
            };
            let state = &stream.cached_info().state;
            findings.push(Finding::ok(format!(
                "JetStream stream \"{}\" at {} holds {} messages (sequences {} to {}){}",
                self.settings.stream,
                self.settings.login.url,
                state.messages,
                state.first_sequence,
                state.last_sequence,
                match &self.settings.subject {
                    Some(subject) => format!("; reading subject \"{subject}\""),
                    None => String::new(),
                }
            )));
            let name = &self.settings.consumer;
            match stream.get_consumer::<pull::Config>(name).await {
                Ok(mut consumer) => match consumer.info().await {
                    Ok(info) if info.config.filter_subject != self.filter() => {
                        let e = Error::ConsumerMismatch {
                            consumer: name.clone(),
                            filter: info.config.filter_subject.clone(),
                            subject: self.filter().to_owned(),
                        };
                        findings.push(Finding::fail(e.to_string(), e.hint().unwrap_or_default()));
                    }
                    Ok(info) => findings.push(Finding::ok(format!(
                        "durable consumer \"{name}\": acknowledged up to sequence {}, {} \
                         messages pending",
                        info.ack_floor.stream_sequence, info.num_pending
                    ))),
                    Err(e) => {
                        let e = js_error("reading the consumer", e);
                        findings.push(Finding::fail(e.to_string(), e.hint().unwrap_or_default()));
                    }
                },
                Err(_) => findings.push(Finding::ok(format!(
                    "durable consumer \"{name}\" does not exist yet; run creates it"
                ))),
            }
            Ok(findings)
        })
    }

    fn describe(&self) -> BoxFuture<'_, Result<TableShapes, SourceError>> {
        let shape = vec![(
            self.settings.table.clone(),
            Arc::clone(&self.settings.schema),
        )];
        Box::pin(std::future::ready(Ok(shape)))
    }

    fn run(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        links: SourceLinks,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            self.stream_messages(resume, links)
                .await
                .map_err(SourceError::new)
        })
    }
}
