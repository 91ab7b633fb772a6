//! `tributary check`, and the same checks at the start of `run`: every
//! source's preflight ([`Source::preflight`](tributary_core::source::Source)) and every sink's
//! reachability, as one finding per line.

use tributary_core::check::{Finding, Outcome};
use tributary_state::StateStore;

use crate::config::{Config, SinkConfig, SourceConfig};
use crate::{PipelineError, SourceKinds};

/// One line of the report: what was checked, and how it came out.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub subject: String,
    pub finding: Finding,
}

/// Runs the preflight of one source. A source that cannot even be reached
/// gives one failed line with the connection error's detail and hint.
pub async fn check_source(src: &SourceConfig, kinds: &dyn SourceKinds) -> Vec<CheckLine> {
    let subject = format!("source \"{}\"", src.name);
    let line = |finding| CheckLine {
        subject: subject.clone(),
        finding,
    };
    let failure = |e: &PipelineError| Finding {
        outcome: Outcome::Fail,
        message: match e.detail() {
            Some(detail) => format!("{}: {detail}", strip_subject(&e.to_string())),
            None => strip_subject(&e.to_string()),
        },
        hint: e.hint(),
    };
    // Only the checks run: the state directory belongs to the pipeline,
    // which may be running.
    let source = match StateStore::in_memory()
        .map_err(PipelineError::from)
        .and_then(|store| kinds.open(src, &store))
    {
        Ok(source) => source,
        Err(e) => return vec![line(failure(&e))],
    };
    match source.preflight().await {
        Ok(findings) => findings.into_iter().map(line).collect(),
        Err(error) => vec![line(failure(&PipelineError::Source {
            source_name: src.name.clone(),
            error,
        }))],
    }
}

/// `source "x": message` → `message` (the subject is printed separately).
fn strip_subject(text: &str) -> String {
    match text.split_once("\": ") {
        Some((head, rest)) if head.starts_with("source \"") => rest.to_owned(),
        _ => text.to_owned(),
    }
}

/// Whether a sink can take events, without sending or creating anything.
pub async fn check_sink(sink: &SinkConfig, sources: &[String]) -> CheckLine {
    let finding = match sink.connector(sources) {
        Ok(connector) => connector.probe().await,
        Err(e) => Finding {
            outcome: Outcome::Fail,
            message: strip_sink(&e.to_string()),
            hint: e.hint().map(str::to_owned),
        },
    };
    CheckLine {
        subject: format!("sink \"{}\"", sink.name),
        finding,
    }
}

/// `sink "x": message` → `message` (the subject is printed separately).
fn strip_sink(text: &str) -> String {
    match text.split_once("\": ") {
        Some((head, rest)) if head.starts_with("sink \"") => rest.to_owned(),
        _ => text.to_owned(),
    }
}

/// Every check of the config, sources first.
pub async fn check(config: &Config, kinds: &dyn SourceKinds) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    for src in &config.sources {
        lines.extend(check_source(src, kinds).await);
    }
    for sink in &config.sinks {
        lines.push(check_sink(sink, &config.feeding(sink)).await);
    }
    lines
}
