//! What every kind of sink's `[[sink]]` settings share: the context the
//! pipeline gives them, secrets read from the environment, and the shape
//! of an invalid setting.
//!
//! Each sink module owns its settings struct (`serde`, unknown keys
//! refused, durations already parsed) and turns it into a
//! [`Connector`](tributary_core::sink::Connector), so adding a sink is that
//! module plus one config variant.

use tributary_core::check::Finding;

use crate::{Error, Routes};

/// What a sink's settings need from the rest of the config.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The sink's `name`.
    pub name: String,
    /// The names of the sources whose events it receives.
    pub sources: Vec<String>,
    /// The routing transform: per-table topic/subject/target templates.
    pub routes: Routes,
}

/// A setting that is present but unusable, found when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub hint: Option<String>,
}

impl Invalid {
    pub(crate) fn new(message: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// The value of the environment variable `var` names, if one is named;
/// `key` is the setting that names it, for the hint.
pub(crate) fn secret(var: &Option<String>, key: &'static str) -> Result<Option<String>, Error> {
    match var {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(Some)
            .map_err(|_| Error::MissingSecret {
                var: var.clone(),
                key,
            }),
    }
}

/// `serde` default of settings that are on unless turned off.
pub(crate) fn yes() -> bool {
    true
}

/// A probe's outcome as one line of `tributary check`: what answered, or
/// the error with its cause and `hint`.
pub(crate) fn finding(probed: Result<String, Error>, hint: &str) -> Finding {
    match probed {
        Ok(message) => Finding::ok(message),
        Err(e) => Finding::fail(
            match e.detail() {
                Some(detail) => format!("{e}: {detail}"),
                None => e.to_string(),
            },
            hint,
        ),
    }
}
