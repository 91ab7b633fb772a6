//! Error output in PostgreSQL's style: `error:`, then `detail:` and `hint:`
//! lines on stderr, and the exit code of `interface.md`.

use std::process::ExitCode;

use tributary_pipeline::{ConfigError, PipelineError};

fn print(primary: &str, detail: Option<String>, hint: Option<String>) {
    eprintln!("error: {primary}");
    if let Some(detail) = detail {
        eprintln!("detail: {detail}");
    }
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

/// A pipeline failure: exit 2 for config problems, else 1.
pub fn pipeline(e: &PipelineError) -> ExitCode {
    print(&e.to_string(), e.detail(), e.hint());
    ExitCode::from(if e.is_config() { 2 } else { 1 })
}

/// An invalid config: exit 2.
pub fn config(e: &ConfigError) -> ExitCode {
    pipeline(&PipelineError::Config(e.clone()))
}

/// Bad usage: exit 2.
pub fn usage(primary: &str, hint: &str) -> ExitCode {
    print(primary, None, Some(hint.to_owned()));
    ExitCode::from(2)
}

/// A PostgreSQL error with the given exit code.
pub fn postgres(e: &tributary_postgres::Error, code: u8) -> ExitCode {
    print(&e.to_string(), e.detail(), e.hint());
    ExitCode::from(code)
}

/// The admin endpoint could not start: exit 1.
pub fn admin(e: &tributary_admin::AdminError) -> ExitCode {
    let detail = std::error::Error::source(e).map(ToString::to_string);
    print(
        &e.to_string(),
        detail,
        Some("choose a free address in [admin] listen".into()),
    );
    ExitCode::from(1)
}
