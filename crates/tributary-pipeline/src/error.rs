//! What can stop a pipeline, each with its detail and hint lines.

use tributary_core::check::Finding;
use tributary_core::sink::SinkError;
use tributary_core::source::SourceError;
use tributary_state::StateError;

use crate::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("source \"{source_name}\": {error}")]
    Source {
        source_name: String,
        #[source]
        error: SourceError,
    },
    #[error("sink \"{sink}\": {error}")]
    Sink {
        sink: String,
        #[source]
        error: SinkError,
    },
    #[error("source \"{0}\" stopped unexpectedly")]
    SourceStopped(String),
    #[error("sink \"{sink}\" refused event {id}: {reason}")]
    Rejected {
        sink: String,
        id: String,
        reason: String,
    },
    #[error("sink \"{sink}\": could not write dead letters to {path}")]
    DeadLetter {
        sink: String,
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("could not start the {name} thread")]
    Thread {
        name: &'static str,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    View(#[from] tributary_views::ViewError),
    #[error(transparent)]
    Server(tributary_server::ServerError),
    /// A fed source's checkpoint is past what its views kept.
    #[error("the views of source \"{source_name}\" are behind its checkpoint")]
    ViewsBehind { source_name: String },
    #[error("{subject}: {}", .failures[0].message)]
    Preflight {
        subject: String,
        failures: Vec<Finding>,
    },
}

impl PipelineError {
    /// Detail line (the underlying cause).
    pub fn detail(&self) -> Option<String> {
        match self {
            PipelineError::Source { error, .. } => error.detail(),
            PipelineError::Sink { error, .. } => error.detail(),
            PipelineError::State(e) => std::error::Error::source(e).map(ToString::to_string),
            PipelineError::Thread { error, .. } => Some(error.to_string()),
            PipelineError::View(e) => e.detail(),
            PipelineError::Server(e) => e.detail(),
            PipelineError::ViewsBehind { .. } => Some(
                "the source ran without these views (or they were added later), so the rows \
                 they keep miss changes the source will not send again"
                    .into(),
            ),
            PipelineError::Preflight { failures, .. } if failures.len() > 1 => Some(format!(
                "also: {}",
                failures[1..]
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            _ => None,
        }
    }

    /// Hint line (what to do).
    pub fn hint(&self) -> Option<String> {
        match self {
            PipelineError::Config(e) => e.hint().map(str::to_owned),
            PipelineError::Source { error, .. } => error.hint(),
            PipelineError::Preflight { failures, .. } => {
                let mut hint = failures[0].hint.clone()?;
                if failures.len() > 1 {
                    hint.push_str("; `tributary check` lists every problem");
                }
                Some(hint)
            }
            PipelineError::View(e) => e.hint(),
            PipelineError::Server(e) => e.hint(),
            PipelineError::ViewsBehind { .. } => Some(
                "start with a new state_dir (each source then takes a new snapshot that feeds \
                 the views), or remove the [[view]]s that read this source"
                    .into(),
            ),
            PipelineError::Rejected { .. } => Some(
                "set on_error = \"dead_letter\" on this sink to keep such events in a file \
                 with the reason and go on"
                    .into(),
            ),
            PipelineError::Sink { error, .. } if error.is_transient() => Some(
                "nothing after the last durable batch was confirmed to the source; after a \
                 restart it is delivered again (same event ids)"
                    .into(),
            ),
            PipelineError::State(StateError::InUse { .. }) => {
                Some("stop the other process, or give this one its own state_dir".into())
            }
            _ => None,
        }
    }

    /// Whether it is a config problem (exit 2) rather than a runtime one (exit 1).
    pub fn is_config(&self) -> bool {
        use tributary_views::ViewError;
        matches!(
            self,
            PipelineError::Config(_)
                | PipelineError::View(
                    ViewError::Plan { .. } | ViewError::Duplicate(_) | ViewError::NoKey { .. }
                )
        )
    }
}
