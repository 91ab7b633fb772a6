//! Kafka topics as a source: every partition of the listed topics assigned
//! to one consumer, offsets committed under a consumer group once durable.
//!
//! A topic's partitions are each ordered, not together, so positions are
//! this source's own: it numbers its batches, and before a batch goes out
//! it records in the state store the offset each partition reached at the
//! batch's end (`StateStore::record_remap`; Materialize calls this
//! reclocking). After a restart the recorded batches are read again exactly
//! as they were: the same messages in the same order under the same event
//! ids (`<source>:<batch>:<n>`), so a sink or view that kept some skips
//! them and nothing is applied twice. Only then do new batches form.
//!
//! Where reading starts is this source's checkpoint, not the group's
//! committed offsets (those are for Kafka's own tooling, lag monitoring):
//! a new state directory reads the topics from their start, as a view over
//! them needs every row.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_core::check::Finding;
use tributary_core::source::{
    BoxFuture, Checkpoint, Source, SourceError, SourceHealth, SourceItem, SourceLinks, TableShapes,
};
use tributary_core::{Position, TableRef, TableSchema, Value};
use tributary_state::StateStore;

use crate::dead_letter::{DeadLetters, Letter};
use crate::error::Error;
use crate::message::{Format, Mode};
use crate::table::{DeclaredTable, Origin};

/// The settings of one Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSourceSettings {
    pub name: String,
    pub brokers: String,
    pub topics: Vec<String>,
    /// The consumer group offsets are committed under.
    pub group: String,
    /// librdkafka properties (SASL, TLS, tuning); never logged.
    pub properties: BTreeMap<String, String>,
    pub table: TableRef,
    /// The declared columns and key (append mode: `_topic`, `_partition`,
    /// `_offset` first, the key).
    pub schema: Arc<TableSchema>,
    pub mode: Mode,
    pub format: Format,
    /// Where refused messages go; `None`: a refused message stops the source.
    pub dead_letters: Option<PathBuf>,
}

/// A partition: (topic, partition number).
type Partition = (String, i32);
/// Per partition, the offset to read next.
type Offsets = BTreeMap<Partition, i64>;

/// Messages in one batch, at most.
const BATCH_MESSAGES: usize = 4096;
/// Position columns of an append-mode table.
const POSITION_COLUMNS: usize = 3;

pub struct KafkaSource {
    settings: KafkaSourceSettings,
    table: DeclaredTable,
    store: StateStore,
}

/// librdkafka's own log lines at debug level: every reconnect attempt while
/// a broker is away would otherwise flood the log.
struct QuietContext;

impl rdkafka::ClientContext for QuietContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, "librdkafka: {log_message}");
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, "librdkafka: {reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

type KafkaConsumer = StreamConsumer<QuietContext>;

fn kafka(doing: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Kafka {
        doing,
        reason: e.to_string(),
    }
}

impl KafkaSource {
    pub fn new(settings: KafkaSourceSettings, store: StateStore) -> Result<Self, Error> {
        let table = DeclaredTable::new(
            &settings.name,
            &settings.table,
            Arc::clone(&settings.schema),
            settings.mode,
            settings.format,
            POSITION_COLUMNS,
        )?;
        Ok(Self {
            table,
            store,
            settings,
        })
    }

    fn consumer(&self) -> Result<Arc<KafkaConsumer>, Error> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.settings.brokers)
            .set("client.id", format!("tributary-{}", self.settings.name))
            .set("group.id", &self.settings.group)
            .set("isolation.level", "read_committed")
            // librdkafka waits up to 500 ms for a fetch to fill: a view
            // would be that stale. Overridable in `properties`.
            .set("fetch.wait.max.ms", "10");
        for (key, value) in &self.settings.properties {
            config.set(key, value);
        }
        // Not overridable: offsets move only when this source says so.
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: KafkaConsumer = config
            .create_with_context(QuietContext)
            .map_err(|e| kafka("configuring the consumer", e))?;
        Ok(Arc::new(consumer))
    }

    /// Every partition of the topics, from the brokers' metadata.
    async fn partitions(&self, consumer: &Arc<KafkaConsumer>) -> Result<Vec<Partition>, Error> {
        let mut all = Vec::new();
        for topic in &self.settings.topics {
            let (consumer, name) = (Arc::clone(consumer), topic.clone());
            let metadata = tokio::task::spawn_blocking(move || {
                consumer.fetch_metadata(Some(&name), Duration::from_secs(10))
            })
            .await
            .map_err(|e| kafka("reading the topics' metadata", e))?
            .map_err(|e| Error::KafkaUnreachable {
                brokers: self.settings.brokers.clone(),
                reason: e.to_string(),
            })?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    all.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
                }
                _ => {
                    return Err(Error::TopicMissing {
                        topic: topic.clone(),
                    })
                }
            }
        }
        Ok(all)
    }

    async fn consume(
        &self,
        resume: Option<Checkpoint>,
        mut links: SourceLinks,
    ) -> Result<(), Error> {
        let consumer = self.consumer()?;
        let partitions = self.partitions(&consumer).await?;
        // The batch to form next, and where each partition stands before it.
        let next_batch = resume.map_or(0, |c| c.position.get());
        let recorded = self.remaps(next_batch.saturating_sub(1))?;
        let mut at: Offsets = partitions.iter().map(|p| (p.clone(), -1)).collect();
        let mut replay = VecDeque::new();
        for (batch, uppers) in recorded {
            if batch + 1 == next_batch {
                at.extend(uppers);
            } else if batch >= next_batch {
                replay.push_back((batch, uppers));
            }
        }
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), offset) in &at {
            let offset = if *offset < 0 {
                Offset::Beginning
            } else {
                Offset::Offset(*offset)
            };
            assignment
                .add_partition_offset(topic, *partition, offset)
                .map_err(|e| kafka("assigning the partitions", e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka("assigning the partitions", e))?;
        tracing::info!(source = %self.settings.name, partitions = at.len(), batch = next_batch, replayed = replay.len(), "consuming Kafka partitions");
        let mut reader = Reader {
            batch: next_batch,
            at,
            replay,
            sent: VecDeque::new(),
            buffered: BTreeMap::new(),
            letters: self.settings.dead_letters.as_deref().map(DeadLetters::new),
            unformable: None,
            health: SourceHealth {
                slot: format!("group {}", self.settings.group),
                position: Position::new(next_batch),
                confirmed: Position::new(next_batch),
                snapshot_done: true,
                ..SourceHealth::default()
            },
        };
        links.health.send_replace(reader.health.clone());
        loop {
            tokio::select! {
                changed = links.shutdown.changed() => {
                    if changed.is_err() || *links.shutdown.borrow() {
                        return Ok(());
                    }
                }
                changed = links.durable.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let durable = *links.durable.borrow_and_update();
                    self.confirm(&consumer, &mut reader.sent, durable)?;
                    reader.health.confirmed = durable;
                    links.health.send_replace(reader.health.clone());
                }
                received = consumer.recv() => {
                    reader.take(received.map(|m| m.detach()), &self.settings.name);
                    let mut more = 0;
                    while more < BATCH_MESSAGES {
                        match consumer.recv().now_or_never() {
                            Some(received) => reader.take(received.map(|m| m.detach()), &self.settings.name),
                            None => break,
                        }
                        more += 1;
                    }
                    while let Some(items) = self.cut(&mut reader).await? {
                        for item in items {
                            if links.out.send(item).await.is_err() {
                                return Ok(());
                            }
                        }
                        links.health.send_replace(reader.health.clone());
                    }
                }
            }
        }
    }

    /// The recorded batches from `from` on, with their partitions' offsets.
    fn remaps(&self, from: u64) -> Result<Vec<(u64, Offsets)>, Error> {
        self.store
            .remaps(&self.settings.name, from)?
            .into_iter()
            .map(|(batch, bytes)| {
                let offsets: Vec<(String, i32, i64)> =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Declaration(format!("a recorded batch is unreadable: {e}"))
                    })?;
                Ok((
                    batch,
                    offsets.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
                ))
            })
            .collect()
    }

    /// Every sink has made everything before batch `durable` durable:
    /// commit the offsets after it to the group, forget older batches.
    /// The batches formed in this session are at hand in `sent`; the state
    /// store is read only for a checkpoint from before it.
    fn confirm(
        &self,
        consumer: &KafkaConsumer,
        sent: &mut VecDeque<(u64, Offsets)>,
        durable: Position,
    ) -> Result<(), Error> {
        let Some(last) = durable.get().checked_sub(1) else {
            return Ok(());
        };
        let mut offsets = None;
        while sent.front().is_some_and(|(b, _)| *b <= last) {
            offsets = sent.pop_front().filter(|(b, _)| *b == last).map(|(_, o)| o);
        }
        let offsets = match offsets {
            Some(offsets) => offsets,
            None => match self.remaps(last)?.into_iter().find(|(b, _)| *b == last) {
                Some((_, offsets)) => offsets,
                None => return Ok(()),
            },
        };
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            if *offset >= 0 {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| kafka("committing offsets", e))?;
            }
        }
        if list.count() > 0 {
            if let Err(e) = consumer.commit(&list, CommitMode::Async) {
                // Only Kafka's tooling reads them: this source resumes from
                // its own checkpoint.
                tracing::warn!(source = %self.settings.name, error = %e, "could not commit offsets to the group");
            }
        }
        self.store.prune_remaps(&self.settings.name, last)?;
        Ok(())
    }

    /// The next batch from what is buffered, as the items to send: a
    /// recorded batch once all its messages are here, else what is here
    /// (recorded before it goes out). `None`: wait for more.
    async fn cut(&self, reader: &mut Reader) -> Result<Option<Vec<SourceItem>>, Error> {
        let batch = reader.batch;
        let (messages, uppers) = match reader.replay.front() {
            Some((recorded, uppers)) if *recorded == batch => {
                let uppers = uppers.clone();
                match reader.take_until(&uppers) {
                    Some(messages) => {
                        reader.replay.pop_front();
                        (messages, uppers)
                    }
                    None => {
                        if let Some((topic, partition)) = reader.unformable.take() {
                            return Err(Error::BatchGone {
                                topic,
                                partition,
                                batch,
                            });
                        }
                        return Ok(None);
                    }
                }
            }
            _ => {
                let messages = reader.take_all();
                if messages.is_empty() {
                    return Ok(None);
                }
                let mut uppers = reader.at.clone();
                for m in &messages {
                    uppers.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                }
                let encoded: Vec<(&String, &i32, &i64)> =
                    uppers.iter().map(|((t, p), o)| (t, p, o)).collect();
                let bytes = serde_json::to_vec(&encoded).expect("offsets serialize");
                let (store, name) = (self.store.clone(), self.settings.name.clone());
                tokio::task::spawn_blocking(move || store.record_remap(&name, batch, &bytes))
                    .await
                    .map_err(|e| kafka("recording a batch", e))??;
                (messages, uppers)
            }
        };
        let mut events = Vec::with_capacity(messages.len());
        for message in &messages {
            let payload = message.payload().unwrap_or_default();
            match self.table.decode(payload, message.key()) {
                Ok(change) => {
                    let origin = Origin {
                        commit: Position::new(batch),
                        ordinal: events.len() as u64,
                        connector: "kafka",
                        db: message.topic().into(),
                        ts_us: message
                            .timestamp()
                            .to_millis()
                            .map_or_else(tributary_core::clock::now_us, |ms| ms * 1000),
                        lsn: message.offset().max(0) as u64,
                    };
                    events.push(self.table.event(origin, change, |row| {
                        row[0] = Value::Text(message.topic().into());
                        row[1] = Value::Int(message.partition().into());
                        row[2] = Value::Int(message.offset());
                    }));
                }
                Err(reason) => {
                    let subject = format!(
                        "{}[{}]@{}",
                        message.topic(),
                        message.partition(),
                        message.offset()
                    );
                    self.table.refuse(
                        reader.letters.as_mut(),
                        &Letter {
                            subject: &subject,
                            seq: message.offset().max(0) as u64,
                            reason: &reason,
                            payload,
                        },
                    )?;
                }
            }
        }
        if let Some(letters) = reader.letters.as_mut() {
            letters.sync().map_err(|source| Error::DeadLetter {
                path: letters.path().display().to_string(),
                source,
            })?;
        }
        reader.sent.push_back((batch, uppers.clone()));
        reader.at = uppers;
        reader.batch += 1;
        reader.health.position = Position::new(reader.batch);
        let mut items = Vec::with_capacity(2);
        if !events.is_empty() {
            items.push(SourceItem::Events(events));
        }
        items.push(SourceItem::Checkpoint(Checkpoint {
            position: Position::new(reader.batch),
            snapshot_complete: true,
            last_commit: Some(Position::new(batch)),
        }));
        Ok(Some(items))
    }
}

/// What the consuming loop keeps between batches.
struct Reader {
    /// The number of the next batch.
    batch: u64,
    /// Per partition, the offset after the last message in a batch (-1: none yet).
    at: Offsets,
    /// Batches recorded before a restart and not yet formed again.
    replay: VecDeque<(u64, Offsets)>,
    /// Batches sent and not yet durable, with their offsets.
    sent: VecDeque<(u64, Offsets)>,
    /// Messages received and not yet in a batch, per partition in order.
    buffered: BTreeMap<Partition, VecDeque<OwnedMessage>>,
    letters: Option<DeadLetters>,
    health: SourceHealth,
    /// A partition whose part of a recorded batch can no longer be read.
    unformable: Option<Partition>,
}

impl Reader {
    fn take(&mut self, received: Result<OwnedMessage, rdkafka::error::KafkaError>, source: &str) {
        match received {
            Ok(message) => {
                let partition = (message.topic().to_owned(), message.partition());
                // Below what a batch already holds: a redelivery, skipped.
                if self
                    .at
                    .get(&partition)
                    .is_some_and(|&at| message.offset() < at)
                {
                    return;
                }
                self.buffered
                    .entry(partition)
                    .or_default()
                    .push_back(message);
            }
            // The client reconnects by itself; the error is only news.
            Err(e) => tracing::warn!(source, error = %e, "Kafka consumer"),
        }
    }

    /// Everything buffered (up to a batch's worth), partition by partition.
    fn take_all(&mut self) -> Vec<OwnedMessage> {
        let mut out = Vec::new();
        for queue in self.buffered.values_mut() {
            while out.len() < BATCH_MESSAGES {
                match queue.pop_front() {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
        out
    }

    /// The messages of a recorded batch, once every partition has reached
    /// its recorded offset; `None` until then (nothing is taken).
    fn take_until(&mut self, uppers: &Offsets) -> Option<Vec<OwnedMessage>> {
        for (partition, &upper) in uppers {
            let from = self.at.get(partition).copied().unwrap_or(-1);
            if upper <= from {
                continue;
            }
            let queue = self.buffered.get(partition);
            let reached =
                queue.and_then(|q| q.iter().map(|m| m.offset()).filter(|&o| o < upper).max());
            if reached != Some(upper - 1) {
                let past = queue.is_some_and(|q| q.iter().any(|m| m.offset() >= upper));
                if past {
                    // Its last message is gone (retention, compaction).
                    self.unformable = Some(partition.clone());
                }
                return None;
            }
        }
        let mut out = Vec::new();
        for (partition, queue) in &mut self.buffered {
            let upper = uppers.get(partition).copied().unwrap_or(-1);
            while queue.front().is_some_and(|m| m.offset() < upper) {
                out.extend(queue.pop_front());
            }
        }
        Some(out)
    }
}

impl Source for KafkaSource {
    fn preflight(&self) -> BoxFuture<'_, Result<Vec<Finding>, SourceError>> {
        Box::pin(async move {
            let consumer = self.consumer().map_err(SourceError::new)?;
            match self.partitions(&consumer).await {
                Ok(partitions) => Ok(vec![Finding::ok(format!(
                    "Kafka at {}: topics {} ({} partitions); offsets committed under group \"{}\"",
                    self.settings.brokers,
                    self.settings.topics.join(", "),
                    partitions.len(),
                    self.settings.group
                ))]),
                Err(e @ Error::KafkaUnreachable { .. }) => Err(SourceError::new(e)),
                Err(e) => Ok(vec![Finding::fail(
                    e.to_string(),
                    e.hint().unwrap_or_default(),
                )]),
            }
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
        Box::pin(async move { self.consume(resume, links).await.map_err(SourceError::new) })
    }
}
