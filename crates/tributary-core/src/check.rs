//! What a check before running found: one line of `tributary check`'s
//! report, for sources and sinks alike.
//!
//! Every source's preflight and every sink's probe reports in these terms,
//! so `check` prints them one way and `run` refuses to start on the first
//! failure with its hint.

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, but something the user should know (it does not fail `check`).
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub outcome: Outcome,
    pub message: String,
    pub hint: Option<String>,
}

impl Finding {
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Ok,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warn(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Warn,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn fail(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Fail,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}
