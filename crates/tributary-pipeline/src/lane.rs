//! One sink's lane: the batches of one source, written to one sink in
//! order, each checkpoint marked durable in this sink once every event
//! before it is.
//!
//! A lane keeps up to the sink's [`Capabilities::depth`] batches in flight. For the file sink
//! that is two: the next batch is encoded and queued while the disk makes
//! the last one durable, so the fsync is off the lane's path. Checkpoints
//! are still marked strictly in order, each after its own batch is
//! durable. When a batch fails, every batch after it is discarded as well
//! (the file sink refuses them once one failed), and all of them are
//! written again, in order, retrying with backoff. The lane submits nothing
//! new meanwhile, so a retried batch never lands behind a later one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Mutex};
#[cfg(doc)]
use tributary_core::sink::Capabilities;
use tributary_core::sink::{Pending, Rejection, Sink, SinkError};
use tributary_core::source::Checkpoint;
use tributary_core::{fault, ChangeEvent, Position};

use crate::dead_letter::DeadLetters;
use crate::retry::Backoff;
use crate::retry::RetryPolicy;
use crate::status::{self, StatusBoard};
use crate::transform::Transform;
use crate::PipelineError;

/// A sink with what the lane needs to write to it.
pub(crate) struct NamedSink {
    pub(crate) name: String,
    pub(crate) sink: Mutex<Box<dyn Sink>>,
    pub(crate) retry: RetryPolicy,
    /// Tables and columns this sink receives; `None`: everything as is.
    pub(crate) transform: Option<Transform>,
    /// `on_error = "dead_letter"`: where refused events go; `None`: stop.
    pub(crate) dead_letters: Option<std::sync::Mutex<DeadLetters>>,
    pub(crate) topic: String,
}

/// Batches each sink's queue holds: with back-pressure, a slow or down sink
/// lets the others run ahead by at most this many batches.
pub(crate) const SINK_QUEUE: usize = 2;

/// One gathered batch, shared by every sink's lane: the source's own
/// vectors, in order, so gathering moves no event.
pub(crate) struct Batch {
    pub(crate) events: Arc<Vec<Vec<ChangeEvent>>>,
    /// The checkpoint after these events, numbered in the order sent.
    pub(crate) checkpoint: Option<u64>,
    /// That checkpoint itself (the views keep it with their rows).
    pub(crate) boundary: Option<Checkpoint>,
}

/// What a lane reports to and shares with the delivery loop.
pub(crate) struct LaneLinks {
    /// The newest checkpoint this sink made durable.
    pub(crate) done: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) progress: Arc<tokio::sync::Notify>,
    pub(crate) board: Arc<StatusBoard>,
    pub(crate) dropper: Dropper,
}

/// The batches one sink write takes: those that queued up while the last
/// write ran go out together (group commit), transformed for this sink.
struct Group {
    batches: Vec<Batch>,
    /// This sink's view of the events, when it has a transform.
    transformed: Option<Vec<Vec<ChangeEvent>>>,
    /// Events committed before this are durable in the sink already.
    skip_below: Option<Position>,
    /// When it was handed to the sink.
    began: Instant,
}

impl Group {
    /// The non-empty parts the sink writes.
    fn parts(&self) -> Vec<&[ChangeEvent]> {
        let parts: Vec<&[ChangeEvent]> = match &self.transformed {
            Some(t) => t.iter().map(Vec::as_slice).collect(),
            None => self
                .batches
                .iter()
                .flat_map(|b| b.events.iter())
                .map(Vec::as_slice)
                .collect(),
        };
        parts
            .into_iter()
            .map(|part| match self.skip_below {
                // Positions only grow along a source's events: what the
                // sink has is a prefix.
                Some(below) => &part[part.partition_point(|e| e.id.commit < below)..],
                None => part,
            })
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// Whether the group reaches `position`: after it, nothing is skipped.
    fn reaches(&self, position: Position) -> bool {
        self.batches
            .iter()
            .flat_map(|b| b.events.iter())
            .filter_map(|part| part.last())
            .any(|e| e.id.commit >= position)
    }
}

/// What the lane waits for next.
enum Next {
    /// The oldest batch in flight became durable, or failed.
    Durable(Result<Vec<Rejection>, SinkError>),
    /// A new batch from the delivery loop (`None`: the source is done).
    Batch(Option<Batch>),
}

/// One sink's lane: writes batches in order (retrying), then marks each
/// batch's checkpoint as durable in this sink.
///
/// `skip_below`: this sink's own durable position when it is ahead of the
/// source's checkpoint (another sink was behind when the process stopped);
/// the replayed events committed before it are not written again.
pub(crate) async fn lane(
    source: String,
    sink: Arc<NamedSink>,
    mut batches: mpsc::Receiver<Batch>,
    links: LaneLinks,
    mut shutdown: watch::Receiver<bool>,
    mut skip_below: Option<Position>,
) -> Result<(), PipelineError> {
    if let Some(position) = skip_below {
        tracing::info!(source, sink = %sink.name, %position, "sink is ahead of the source's checkpoint; skipping what it has");
    }
    let done = Done {
        sink: Arc::clone(&sink),
        latency: status::latency_histogram(&source, &sink.name),
        links,
    };
    let capabilities = sink.sink.lock().await.capabilities();
    let (coalesces, depth) = (capabilities.coalesces, capabilities.depth.max(1));
    let mut in_flight: VecDeque<(Group, Pending)> = VecDeque::with_capacity(depth);
    let mut open = true;
    while open || !in_flight.is_empty() {
        let next = std::future::poll_fn(|cx| {
            if let Some((_, submitted)) = in_flight.front_mut() {
                if let Poll::Ready(result) = submitted.as_mut().poll(cx) {
                    return Poll::Ready(Next::Durable(result));
                }
            }
            if open && in_flight.len() < depth {
                if let Poll::Ready(batch) = batches.poll_recv(cx) {
                    return Poll::Ready(Next::Batch(batch));
                }
            }
            Poll::Pending
        })
        .await;
        match next {
            Next::Batch(None) => open = false,
            Next::Batch(Some(first)) => {
                let mut group = vec![first];
                if coalesces {
                    while let Ok(more) = batches.try_recv() {
                        group.push(more);
                    }
                }
                let transformed = sink.transform.as_ref().map(|t| {
                    group
                        .iter()
                        .flat_map(|b| b.events.iter())
                        .map(|part| t.apply(part))
                        .collect()
                });
                let group = Group {
                    batches: group,
                    transformed,
                    skip_below,
                    began: Instant::now(),
                };
                if skip_below.is_some_and(|p| group.reaches(p)) {
                    skip_below = None;
                }
                let parts = group.parts();
                let submitted: Pending = if parts.is_empty() {
                    Box::pin(std::future::ready(Ok(Vec::new())))
                } else {
                    sink.sink.lock().await.submit(&parts).await
                };
                drop(parts);
                in_flight.push_back((group, submitted));
            }
            Next::Durable(Ok(rejections)) => {
                let Some((group, _)) = in_flight.pop_front() else {
                    continue;
                };
                let took = group.began.elapsed();
                done.finish(group, &rejections, took)?;
            }
            Next::Durable(Err(error)) => {
                // This batch and every later one in flight go again, in
                // order (the later ones were refused or will be).
                let mut again = Vec::with_capacity(in_flight.len());
                while let Some((group, submitted)) = in_flight.pop_front() {
                    if !again.is_empty() {
                        let _ = submitted.await;
                    }
                    again.push(group);
                }
                let mut failure = Some(error);
                for group in again {
                    let parts = group.parts();
                    let (rejections, took) = write_with_retry(
                        &sink,
                        &parts,
                        &done.links.board,
                        &mut shutdown,
                        failure.take(),
                    )
                    .await?;
                    drop(parts);
                    done.finish(group, &rejections, took)?;
                }
            }
        }
    }
    Ok(())
}

/// What the lane does with a batch once it is durable in its sink.
struct Done {
    sink: Arc<NamedSink>,
    latency: metrics::Histogram,
    links: LaneLinks,
}

impl Done {
    /// Counts the batch, diverts what the sink refused, records the
    /// commit→sink latency, frees the batch and marks its checkpoint.
    fn finish(
        &self,
        group: Group,
        rejections: &[Rejection],
        took: Duration,
    ) -> Result<(), PipelineError> {
        let parts = group.parts();
        if !parts.is_empty() {
            let count = parts.iter().map(|p| p.len()).sum();
            self.links.board.sink_wrote(&self.sink.name, count, took);
            divert(&self.sink, &parts, rejections, &self.links.board)?;
            for part in &parts {
                status::record_latency(&self.latency, part);
            }
            fault::point(fault::SINK_WRITTEN);
        }
        drop(parts);
        let checkpoint = group.batches.iter().rev().find_map(|b| b.checkpoint);
        drop(group.transformed);
        self.links.dropper.drop_later(group.batches);
        if let Some(seq) = checkpoint {
            self.links
                .done
                .store(seq, std::sync::atomic::Ordering::Release);
            self.links.progress.notify_one();
        }
        Ok(())
    }
}

/// Writes one batch to one sink, retrying transient failures with backoff
/// until it is durable, the retry budget is spent, or shutdown. `failed`:
/// the error of an attempt already made, so the first step is the backoff.
/// Returns what the sink refused and how long the successful write took.
async fn write_with_retry(
    sink: &NamedSink,
    parts: &[&[ChangeEvent]],
    board: &StatusBoard,
    shutdown: &mut watch::Receiver<bool>,
    mut failed: Option<SinkError>,
) -> Result<(Vec<Rejection>, Duration), PipelineError> {
    let mut backoff = Backoff::new(sink.retry);
    loop {
        if let Some(error) = failed.take() {
            let transient = error.is_transient();
            board.sink_failed(
                &sink.name,
                if transient { "transient" } else { "permanent" },
                &error.to_string(),
            );
            let delay = if transient { backoff.delay() } else { None };
            let Some(delay) = delay.filter(|_| !*shutdown.borrow()) else {
                return Err(PipelineError::Sink {
                    sink: sink.name.clone(),
                    error,
                });
            };
            tracing::warn!(
                sink = %sink.name,
                error = %error,
                detail = error.detail().unwrap_or_default(),
                retry_in = ?delay,
                "sink write failed; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
        }
        let began = Instant::now();
        match sink.sink.lock().await.write(parts).await {
            Ok(rejections) => return Ok((rejections, began.elapsed())),
            Err(error) => failed = Some(error),
        }
    }
}

/// Applies the sink's `on_error` to the events it refused for good: stop
/// with the first one, or write them all as dead letters (fsynced) first.
fn divert(
    sink: &NamedSink,
    parts: &[&[ChangeEvent]],
    rejections: &[Rejection],
    board: &StatusBoard,
) -> Result<(), PipelineError> {
    let Some(first) = rejections.first() else {
        return Ok(());
    };
    let events: Vec<&ChangeEvent> = parts.iter().flat_map(|p| p.iter()).collect();
    for r in rejections {
        board.sink_failed(&sink.name, "rejected", &r.reason);
    }
    let Some(letters) = &sink.dead_letters else {
        return Err(PipelineError::Rejected {
            sink: sink.name.clone(),
            id: events[first.index].id.to_string(),
            reason: first.reason.clone(),
        });
    };
    let rejected: Vec<(&ChangeEvent, &str)> = rejections
        .iter()
        .map(|r| (events[r.index], r.reason.as_str()))
        .collect();
    let mut letters = letters.lock().unwrap_or_else(|e| e.into_inner());
    letters
        .write(&sink.name, &sink.topic, &rejected)
        .map_err(|error| PipelineError::DeadLetter {
            sink: sink.name.clone(),
            path: letters.path().display().to_string(),
            error,
        })?;
    for (event, reason) in &rejected {
        tracing::warn!(sink = %sink.name, id = %event.id, reason, "event refused; written as a dead letter");
    }
    Ok(())
}

/// Frees written batches on a thread of its own: dropping a large batch
/// (every row, key and value of thousands of events) would otherwise sit
/// on the lane's path between two writes. The hand-off holds at most
/// `DROP_QUEUE` groups; when it is full the lane frees the group itself,
/// so memory stays bounded. Small groups are freed by the lane at once:
/// for them the hand-off (a thread wake-up) costs more than the freeing.
#[derive(Clone)]
pub(crate) struct Dropper(std::sync::mpsc::SyncSender<Vec<Batch>>);

const DROP_QUEUE: usize = 2;
/// Groups of fewer events are freed on the lane.
const DROP_INLINE_EVENTS: usize = 1024;

impl Dropper {
    pub(crate) fn start() -> Result<Self, PipelineError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Batch>>(DROP_QUEUE);
        std::thread::Builder::new()
            .name("tributary-drop".into())
            .spawn(move || while rx.recv().is_ok() {})
            .map_err(|error| PipelineError::Thread {
                name: "batch freeing",
                error,
            })?;
        Ok(Dropper(tx))
    }

    pub(crate) fn drop_later(&self, group: Vec<Batch>) {
        let events: usize = group
            .iter()
            .flat_map(|b| b.events.iter())
            .map(Vec::len)
            .sum();
        if events < DROP_INLINE_EVENTS {
            return;
        }
        // Full or gone: drop it here (the `Err` holds the group).
        let _ = self.0.try_send(group);
    }
}
