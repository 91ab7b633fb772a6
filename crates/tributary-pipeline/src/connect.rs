//! How a configured `[[source]]` becomes a [`Source`].
//!
//! The pipeline knows no source kind by name: the binary, which links every
//! source crate, hands it a [`SourceKinds`] that builds one from its config.
//! So the pipeline (and the sinks) build without any source crate, and a
//! new source kind is a crate plus one arm at the binary's edge.

use std::sync::Arc;

use tributary_core::source::Source;
use tributary_state::StateStore;

use crate::config::SourceConfig;
use crate::PipelineError;

/// Builds sources from their config. Building connects to nothing; the
/// pipeline runs the source's preflight next.
pub trait SourceKinds: Send + Sync {
    /// The source a `[[source]]` section describes, keeping what it must
    /// remember across restarts (besides checkpoints) in `store`.
    fn open(
        &self,
        cfg: &SourceConfig,
        store: &StateStore,
    ) -> Result<Arc<dyn Source>, PipelineError>;
}
