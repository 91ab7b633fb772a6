//! Tributary's view engine: SQL views kept incrementally over the change
//! streams of every source, on timely dataflow and differential dataflow.
//!
//! Each source transaction becomes one logical time on one timeline across
//! all sources ([`Time`]); a view's readable state only ever moves from one
//! complete time to the next, so a read sees whole transactions. The
//! operators are differential dataflow's own (`join`, `reduce`,
//! `distinct`), which stay exact under retractions; this crate plans and
//! renders, it does not compute increments by hand.
//!
//! - [`datum`]: values with PostgreSQL's order, exact numerics.
//! - [`expr`]: scalar expressions with PostgreSQL's NULL semantics.
//! - [`dataflow`]: the plan operators and their rendering.
//! - [`engine`]: the timely worker, its inputs, and the views' read state.
//! - [`ViewSet`]: the declared views, planned over the sources' tables.
//! - [`SourceFeed`]: one source's changes into the views, kept durably
//!   with the checkpoint they reflect, restored after a restart.
//! - [`Changefeed`]: a view's changes as change events, for sinks.

mod changefeed;
pub mod dataflow;
pub mod datum;
pub mod engine;
mod error;
pub mod expr;
mod feed;
mod set;
pub mod sql;

/// A logical time: the position of one source transaction on the one
/// timeline of all sources.
pub type Time = u64;

pub use changefeed::{Changefeed, FeedBatch};
pub use dataflow::{Aggregate, Plan};
pub use datum::{Datum, Row};
pub use engine::{Engine, Snapshot};
pub use error::ViewError;
pub use expr::{BinaryOp, Expr};
pub use feed::{Applied, Keep, Restored, SourceFeed};
pub use set::{DeclaredView, SourceTable, ViewDecl, ViewSet};
