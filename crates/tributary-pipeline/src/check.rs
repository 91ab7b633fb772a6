//! `tributary check`, and the same checks at the start of `run`: every
//! source's preflight ([`Source::preflight`](tributary_core::source::Source)) and every sink's
//! reachability, as one finding per line.

use std::path::Path;

use tributary_core::check::{Finding, Outcome};
use tributary_pg::ConnectionConfig;
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
    let subject = format!("sink \"{}\"", sink.name);
    let (probed, hint) = match (sink.kind.as_str(), &sink.path) {
        ("file", Some(path)) => {
            return CheckLine {
                subject,
                finding: file_writable(path),
            }
        }
        ("nats", _) => (
            nats_reachable(sink, sources).await,
            "check url, credentials and TLS of this sink; an existing stream must capture the \
             sink's subjects (or choose another `stream`)",
        ),
        ("postgres", _) => (
            postgres_reachable(sink).await,
            "check url and password of this sink; its role needs CREATE on the target schemas \
             (or existing tables it may write)",
        ),
        ("kafka", _) => (
            kafka_reachable(sink).await,
            "check brokers and the security properties (security.protocol, sasl.*, ssl.*) of \
             this sink",
        ),
        ("http", _) => (
            http_reachable(sink).await,
            "check the url of this sink and that the receiver is running",
        ),
        _ => (Ok("stdout".into()), ""),
    };
    let finding = match probed {
        Ok(message) => Finding {
            outcome: Outcome::Ok,
            message,
            hint: None,
        },
        Err(message) => Finding {
            outcome: Outcome::Fail,
            message,
            hint: Some(hint.into()),
        },
    };
    CheckLine { subject, finding }
}

/// A sink's probe: what answered, or why nothing did.
type Probed = Result<String, String>;

async fn nats_reachable(sink: &SinkConfig, sources: &[String]) -> Probed {
    let options = sink
        .nats_options(sources.to_vec())
        .map_err(|e| e.to_string())?;
    tributary_sink::probe_nats(&options)
        .await
        .map_err(|e| e.to_string())
}

async fn http_reachable(sink: &SinkConfig) -> Probed {
    let options = sink
        .http_options(tributary_sink::RecordOptions::default())
        .map_err(|e| e.to_string())?;
    tributary_sink::probe_http(&options)
        .await
        .map_err(|e| e.to_string())
}

async fn kafka_reachable(sink: &SinkConfig) -> Probed {
    let options = sink.kafka_options().map_err(|e| e.to_string())?;
    tributary_sink::probe_kafka(&options)
        .await
        .map_err(|e| e.to_string())
}

async fn postgres_reachable(sink: &SinkConfig) -> Probed {
    let password = sink.password().map_err(|e| e.to_string())?;
    let connection = ConnectionConfig::parse(sink.url.as_deref().unwrap_or_default(), password)
        .map_err(|e| e.to_string())?;
    tributary_sink::probe_postgres(&connection, &sink.positions_table())
        .await
        .map_err(|e| match e.detail() {
            Some(detail) => format!("{e}: {detail}"),
            None => e.to_string(),
        })
}

fn file_writable(path: &Path) -> Finding {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    let probe = dir.join(format!(".tributary-check-{}", std::process::id()));
    let result = std::fs::File::create(&probe).and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Finding {
            outcome: Outcome::Ok,
            message: format!("file {} is writable", path.display()),
            hint: None,
        },
        Err(e) => Finding {
            outcome: Outcome::Fail,
            message: format!("cannot write in {}: {e}", dir.display()),
            hint: Some("create the directory, or choose another `path`".into()),
        },
    }
}

/// Every check of the config, sources first.
pub async fn check(config: &Config, kinds: &dyn SourceKinds) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    for src in &config.sources {
        lines.extend(check_source(src, kinds).await);
    }
    let sources: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    for sink in &config.sinks {
        lines.push(check_sink(sink, &sources).await);
    }
    lines
}
