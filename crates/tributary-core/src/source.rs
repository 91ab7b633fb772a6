//! The contract between a source and the pipeline: the [`Source`] trait, what
//! a source sends, the channels it is given, the checkpoint it resumes from,
//! and what it reports about itself.
//!
//! The pipeline knows sources only through this module: it is handed
//! `Arc<dyn Source>` values built at the binary's edge, so adding a source
//! (MySQL, a stream) touches neither the pipeline nor the sinks.
//!
//! A source never confirms a position on its own. It sends events and
//! checkpoints over a bounded channel (so a slow sink slows capture); the
//! pipeline reports back, on `durable`, the position every sink has made
//! durable, and only that may be confirmed to the server. Positions are the
//! source's own (a PostgreSQL LSN today), totally ordered per source.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::check::Finding;
use crate::{ChangeEvent, Op, Position, TableRef, TableSchema};

/// A boxed future, so that [`Source`] is usable as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A database (or stream) whose changes Tributary captures.
///
/// One value per configured `[[source]]`. The pipeline runs its
/// [`preflight`](Source::preflight) before anything starts, then
/// [`run`](Source::run) once. Sinks never ask a source anything: what they
/// need to know of a table travels with its events ([`crate::TableSchema`]).
/// The tables a source captures, each with its shape.
pub type TableShapes = Vec<(TableRef, Arc<TableSchema>)>;

pub trait Source: Send + Sync {
    /// The checks of `tributary check` (and of `run`, which refuses to
    /// start on a failure). An error means the checks could not even be
    /// made (an unreachable server); everything else is a finding.
    fn preflight(&self) -> BoxFuture<'_, Result<Vec<Finding>, SourceError>>;

    /// The shape of every table this source captures, as its events will
    /// carry it: what views are planned against before any event flows.
    /// Sources that cannot tell before they run describe nothing (views
    /// cannot read them).
    fn describe(&self) -> BoxFuture<'_, Result<TableShapes, SourceError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Captures changes until `links.shutdown` becomes true or a fatal
    /// error, resuming after `resume` (`None`: from the very start, with the
    /// initial snapshot if configured).
    fn run(
        self: Arc<Self>,
        resume: Option<Checkpoint>,
        links: SourceLinks,
    ) -> BoxFuture<'static, Result<(), SourceError>>;
}

/// What a source's own error tells a user besides its one-line message.
pub trait Diagnose: std::error::Error + Send + Sync + 'static {
    /// The underlying cause (PostgreSQL's `detail:` line).
    fn detail(&self) -> Option<String>;
    /// What to do about it (PostgreSQL's `hint:` line).
    fn hint(&self) -> Option<String>;
}

/// Why a source stopped or could not be checked: the source's own error
/// behind a neutral face, with its message, detail and hint intact.
pub struct SourceError(Box<dyn Diagnose>);

impl SourceError {
    pub fn new(error: impl Diagnose) -> Self {
        Self(Box::new(error))
    }

    pub fn detail(&self) -> Option<String> {
        self.0.detail()
    }

    pub fn hint(&self) -> Option<String> {
        self.0.hint()
    }
}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What a source needs to resume: the position durable in every sink. The
/// state store keeps it per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Source position (PostgreSQL: end LSN of the last durable transaction,
    /// or the slot's consistent point right after the snapshot).
    pub position: Position,
    /// The initial snapshot finished and is durable in every sink.
    pub snapshot_complete: bool,
    /// End of the last transaction the source sent before `position` (or
    /// the snapshot's point when none followed it): what the next
    /// transaction names as its predecessor (Debezium's `sequence[0]`). It
    /// is stored so that a replay after a crash writes the same event
    /// payloads as the first delivery. `None` in state written before it
    /// was kept; a resume then takes `position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<Position>,
}

impl Checkpoint {
    /// Whether every event of the transaction that committed at `commit`
    /// (an event's `id.commit`, with its `op`) has been sent once this
    /// checkpoint has: a consumer that applies whole transactions (the view
    /// engine) may apply it. A streamed transaction commits before the
    /// checkpoint's position; the snapshot's reads are at its point and
    /// are whole only once a checkpoint says the snapshot is complete.
    pub fn completes(&self, commit: Position, op: Op) -> bool {
        commit < self.position
            || (op == Op::Read && self.snapshot_complete && commit == self.position)
    }

    /// The predecessor the next transaction after this checkpoint names.
    pub fn last_commit(&self) -> Position {
        self.last_commit.unwrap_or(self.position)
    }
}

/// What the source hands the pipeline, in order.
#[derive(Debug)]
pub enum SourceItem {
    Events(Vec<ChangeEvent>),
    /// Every event of every transaction committed up to its `position` has
    /// been sent; once durable in all sinks, `position` may be confirmed.
    Checkpoint(Checkpoint),
}

/// Channels between the source and the pipeline.
pub struct SourceLinks {
    pub out: mpsc::Sender<SourceItem>,
    /// Position durable in every sink (closed when the pipeline is done).
    pub durable: watch::Receiver<Position>,
    /// Becomes `true` on SIGINT/SIGTERM.
    pub shutdown: watch::Receiver<bool>,
    /// Positions, lag and snapshot progress, for `/status`.
    pub health: watch::Sender<SourceHealth>,
}

/// What the source reports about itself, for `/status` and `tributary status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceHealth {
    /// The source's cursor on the server (PostgreSQL: the replication slot).
    pub slot: String,
    /// Position of the last transaction (or heartbeat) sent to the pipeline.
    pub position: Position,
    /// Position durable in every sink, confirmed to the server.
    pub confirmed: Position,
    /// Log the server has written but this source has not confirmed, in bytes.
    pub lag_bytes: u64,
    /// Age of the oldest commit not yet durable in every sink.
    pub lag_seconds: f64,
    /// Log the server keeps for this source (PostgreSQL: from the slot's
    /// `restart_lsn`), in bytes.
    pub retained_bytes: u64,
    /// `max_lag_bytes` exceeded at the last measurement.
    pub lag_alarm: bool,
    /// Rows read per table during the snapshot: (table, rows, estimated rows).
    pub snapshot: Vec<(String, u64, u64)>,
    pub snapshot_done: bool,
}
