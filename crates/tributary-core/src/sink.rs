//! The contract between the pipeline and a sink: one shape for every
//! target (files, brokers, databases, and the view engine's inputs later).
//!
//! A sink makes batches durable, in the order it is handed them. The
//! pipeline's lane drives it: it hands over batches with
//! [`Sink::submit`], waits for each to become durable, and after a
//! failure writes the failed batch and every later one again with
//! [`Sink::write`], retrying while the error is
//! [`Transient`](FailureKind::Transient). A sink that can refuse single
//! events for good (a poison row) reports them as [`Rejection`]s; every
//! other event of that batch is durable.

use std::fmt;

use crate::check::Finding;
pub use crate::source::BoxFuture;
use crate::source::Diagnose;
use crate::ChangeEvent;

/// What the lane may do with a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Submitted batches that may await durability at once (the file sink
    /// encodes the next while the last is fsynced); at least 1.
    pub depth: usize,
    /// Several queued batches may be written as one (one fsync for all).
    /// Sinks that can refuse single events write each batch on its own, so
    /// a retry never repeats an acknowledged one.
    pub coalesces: bool,
    /// The target drops an event it already has (by event id or by its
    /// stored position), so a redelivery after a crash leaves no duplicate.
    pub deduplicates: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            depth: 1,
            coalesces: false,
            deduplicates: false,
        }
    }
}

/// An event the target refused for good, by its index across the parts
/// of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    pub reason: String,
}

/// What a write came to: the events refused for good, or why it failed.
pub type Written = Result<Vec<Rejection>, SinkError>;

/// A submitted batch: resolves once it is durable.
pub type Pending = BoxFuture<'static, Written>;

/// A target that makes change events durable.
pub trait Sink: Send {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Writes one part; returns once every event is durable or rejected.
    fn write_part<'a>(&'a mut self, events: &'a [ChangeEvent]) -> BoxFuture<'a, Written>;

    /// Writes parts in order; rejection indices count across all of them.
    fn write<'a>(&'a mut self, parts: &'a [&'a [ChangeEvent]]) -> BoxFuture<'a, Written> {
        Box::pin(async move {
            let (mut all, mut base) = (Vec::new(), 0);
            for part in parts {
                for r in self.write_part(part).await? {
                    all.push(Rejection {
                        index: base + r.index,
                        reason: r.reason,
                    });
                }
                base += part.len();
            }
            Ok(all)
        })
    }

    /// Hands a batch over. It is durable once the returned [`Pending`]
    /// resolves without error; batches become durable in the order they
    /// were submitted. After a failure, write the failed batch and every
    /// later one again with [`Sink::write`] once nothing submitted is
    /// outstanding. By default the write happens here, in full.
    // Yielding a future is the point: the hand-over (which may wait for
    // room) and the durability are two separate waits.
    #[allow(clippy::async_yields_async)]
    fn submit<'a>(&'a mut self, parts: &'a [&'a [ChangeEvent]]) -> BoxFuture<'a, Pending> {
        Box::pin(async move {
            let written = self.write(parts).await;
            Box::pin(std::future::ready(written)) as Pending
        })
    }
}

/// A configured sink before it is opened: `tributary check` probes it,
/// `tributary run` opens it. Each kind of sink implements it once, so the
/// pipeline never matches on sink types.
pub trait Connector: Send + Sync {
    /// Whether the target can take events, without writing or creating
    /// anything: what answered, or why nothing did and what to check.
    fn probe(&self) -> BoxFuture<'_, Finding>;

    /// Connects and creates what the sink needs (a stream, topics, a
    /// positions table); the sink then takes events.
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, SinkError>>;
}

/// Whether trying the same write again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The target is unreachable, restarting or out of resources: retried
    /// with backoff, the source waits.
    Transient,
    /// Retrying cannot help (bad configuration, a refused definition): the
    /// pipeline stops with the error.
    Permanent,
}

/// Why a write failed: the sink's own error, with the kind it was given
/// where it arose.
pub struct SinkError {
    kind: FailureKind,
    error: Box<dyn Diagnose>,
}

impl SinkError {
    pub fn new(kind: FailureKind, error: impl Diagnose) -> Self {
        Self {
            kind,
            error: Box::new(error),
        }
    }

    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }

    pub fn detail(&self) -> Option<String> {
        self.error.detail()
    }

    pub fn hint(&self) -> Option<String> {
        self.error.hint()
    }
}

impl fmt::Debug for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkError")
            .field("kind", &self.kind)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}
