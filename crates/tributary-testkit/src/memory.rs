//! In-memory parts for unit tests of the pipeline: a scripted source, a
//! sink that keeps what it was given, and a sink wrapper that fails or
//! refuses on cue. They implement the same contracts as the real ones
//! (`tributary_core::source::Source`, `tributary_core::sink::Sink`), so the
//! delivery loop, lanes and checkpoints run unchanged against them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tributary_core::check::Finding;
use tributary_core::debezium::Encoding;
use tributary_core::sink::{
    BoxFuture, Capabilities, FailureKind, Pending, Rejection, Sink, SinkError, Written,
};
use tributary_core::source::{Checkpoint, Diagnose, Source, SourceError, SourceItem, SourceLinks};
use tributary_core::{
    ChangeEvent, Column, EventId, Op, Position, Row, SnapshotMarker, SourceInfo, TableRef,
    TableSchema, Value,
};

/// An event of table `public.t` with key `id`, committed at `commit`.
pub fn event(source: &str, commit: u64, ordinal: u64, id: i64) -> ChangeEvent {
    let columns: Arc<[String]> = vec!["id".to_string()].into();
    let row = Row::new(Arc::clone(&columns), vec![Value::Int(id)]);
    ChangeEvent {
        id: EventId {
            source: source.into(),
            commit: Position::new(commit),
            ordinal,
        },
        table: Arc::new(TableRef::new("public", "t")),
        schema: Arc::new(TableSchema::new(
            vec![Column {
                name: "id".into(),
                sql_type: "bigint".into(),
                nullable: false,
            }],
            vec![0],
        )),
        op: Op::Create,
        key: Some(row.clone()),
        before: None,
        after: Some(row),
        source: SourceInfo {
            name: source.into(),
            connector: "memory",
            db: "memory".into(),
            ts_us: 0,
            snapshot: SnapshotMarker::False,
            tx_id: None,
            lsn: Some(commit),
            sequence: None,
            unchanged_toast: Vec::new(),
            encoding: Encoding::default(),
        },
    }
}

/// A checkpoint at `position` with the snapshot done.
pub fn checkpoint(position: u64) -> Checkpoint {
    Checkpoint {
        position: Position::new(position),
        snapshot_complete: true,
        last_commit: None,
    }
}

/// One step of a [`MemorySource`]'s script.
#[derive(Debug)]
pub enum Step {
    Events(Vec<ChangeEvent>),
    /// A checkpoint at this position (snapshot done).
    Checkpoint(u64),
    /// Waits until the pipeline reports this position durable (or ends),
    /// so that what follows is a batch of its own.
    AwaitDurable(u64),
}

/// A source that plays a script, then waits for shutdown (or ends, if
/// told to), and records every durable position the pipeline reported.
pub struct MemorySource {
    script: Mutex<Option<Vec<Step>>>,
    end_after_script: bool,
    reported: watch::Sender<Position>,
    resumed_from: Mutex<Option<Option<Checkpoint>>>,
}

impl MemorySource {
    /// Plays `script` in order; with `end_after_script` the source ends
    /// after it (as at shutdown), else it waits for the shutdown signal.
    pub fn new(script: Vec<Step>, end_after_script: bool) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(Some(script)),
            end_after_script,
            reported: watch::channel(Position::START).0,
            resumed_from: Mutex::new(None),
        })
    }

    /// The newest position the pipeline reported durable.
    pub fn reported(&self) -> watch::Receiver<Position> {
        self.reported.subscribe()
    }

    /// The checkpoint `run` was given (`None` until it ran).
    pub fn resumed_from(&self) -> Option<Option<Checkpoint>> {
        *self.resumed_from.lock().unwrap()
    }
}

/// The failures of the memory parts.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("the memory source ran twice")]
    RanTwice,
    /// What a [`FaultySink`] fails with.
    #[error("injected sink failure")]
    Injected,
}

impl Diagnose for MemoryError {
    fn detail(&self) -> Option<String> {
        None
    }
    fn hint(&self) -> Option<String> {
        None
    }
}

impl Source for MemorySource {
    fn preflight(&self) -> BoxFuture<'_, Result<Vec<Finding>, SourceError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn run(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        mut links: SourceLinks,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            *self.resumed_from.lock().unwrap() = Some(resume);
            let script = self
                .script
                .lock()
                .unwrap()
                .take()
                .ok_or_else(|| SourceError::new(MemoryError::RanTwice))?;
            let mut durable = links.durable.clone();
            let this = Arc::clone(&self);
            let watcher = tokio::spawn(async move {
                while durable.changed().await.is_ok() {
                    let p = *durable.borrow_and_update();
                    this.reported.send_replace(p);
                }
            });
            for step in script {
                let item = match step {
                    Step::Events(events) => SourceItem::Events(events),
                    Step::Checkpoint(position) => SourceItem::Checkpoint(checkpoint(position)),
                    Step::AwaitDurable(position) => {
                        let target = Position::new(position);
                        let _ = links.durable.wait_for(|&p| p >= target).await;
                        continue;
                    }
                };
                if links.out.send(item).await.is_err() {
                    break;
                }
            }
            if !self.end_after_script {
                let _ = links.shutdown.wait_for(|&stop| stop).await;
            }
            // As a real source at shutdown: let the pipeline drain.
            drop(links.out);
            let _ = watcher.await;
            Ok(())
        })
    }
}

/// What a [`MemorySink`] holds; shared with the test.
pub type Received = Arc<Mutex<Vec<ChangeEvent>>>;

/// A sink that keeps every event it made "durable".
pub struct MemorySink {
    received: Received,
    capabilities: Capabilities,
}

impl MemorySink {
    pub fn new(capabilities: Capabilities) -> (Self, Received) {
        let received = Received::default();
        let sink = Self {
            received: Arc::clone(&received),
            capabilities,
        };
        (sink, received)
    }
}

impl Sink for MemorySink {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        self.received.lock().unwrap().extend_from_slice(events);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// What a [`FaultySink`] does to one write, in the order of writes.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Passes the write through.
    Pass,
    /// Fails the write before anything reaches the inner sink.
    Fail(FailureKind),
    /// Refuses the events with these event ordinals for good and writes
    /// the rest.
    Reject(Vec<u64>),
}

/// Wraps a sink and applies one [`Fault`] per write (`write_part`, or a
/// whole `write`/`submit`); after the list, writes pass.
pub struct FaultySink<S> {
    inner: S,
    faults: VecDeque<Fault>,
}

impl<S: Sink> FaultySink<S> {
    pub fn new(inner: S, faults: Vec<Fault>) -> Self {
        Self {
            inner,
            faults: faults.into(),
        }
    }

    async fn faulty_write(&mut self, parts: &[&[ChangeEvent]]) -> Written {
        match self.faults.pop_front().unwrap_or(Fault::Pass) {
            Fault::Pass => self.inner.write(parts).await,
            Fault::Fail(kind) => Err(SinkError::new(kind, MemoryError::Injected)),
            Fault::Reject(ordinals) => {
                let all: Vec<&ChangeEvent> = parts.iter().flat_map(|p| p.iter()).collect();
                let (mut kept, mut rejections) = (Vec::new(), Vec::new());
                for (index, e) in all.iter().enumerate() {
                    if ordinals.contains(&e.id.ordinal) {
                        rejections.push(Rejection {
                            index,
                            reason: "injected rejection".into(),
                        });
                    } else {
                        kept.push((*e).clone());
                    }
                }
                self.inner.write(&[&kept]).await?;
                Ok(rejections)
            }
        }
    }
}

impl<S: Sink> Sink for FaultySink<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written> {
        Box::pin(async move { self.faulty_write(&[events]).await })
    }

    fn write<'a>(&'a mut self, parts: &'a [&'a [ChangeEvent]]) -> BoxFuture<'a, Written> {
        Box::pin(self.faulty_write(parts))
    }

    #[allow(clippy::async_yields_async)]
    fn submit<'a>(&'a mut self, parts: &'a [&'a [ChangeEvent]]) -> BoxFuture<'a, Pending> {
        Box::pin(async move {
            let written = self.faulty_write(parts).await;
            Box::pin(std::future::ready(written)) as Pending
        })
    }
}
