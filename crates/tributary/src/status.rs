//! `tributary status --config FILE`: asks the running process's admin
//! endpoint for `/status` and renders it as tables (sources, sinks, and
//! views when the config declares any).
//! hyper's client speaks the HTTP; only the rendering is ours.

use std::path::Path;
use std::process::ExitCode;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tributary_pipeline::Config;

use crate::report;

pub fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report::config(&e),
    };
    let Some(admin) = &config.admin else {
        return report::usage(
            "this config has no [admin] section, so a running tributary serves no status",
            "add [admin] with listen = \"127.0.0.1:8080\" and restart `tributary run`",
        );
    };
    let url = format!("http://{}/status", admin.address());
    let runtime = match crate::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let fetched = runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri = url.parse().map_err(|e| format!("{e}"))?;
        let response = client.get(uri).await.map_err(|e| format!("{e}"))?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e}"))?
            .to_bytes();
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("{e}"))
    });
    match fetched {
        Ok(status) => {
            print!("{}", render(&status));
            ExitCode::SUCCESS
        }
        Err(detail) => {
            eprintln!("error: could not read {url}");
            eprintln!("detail: {detail}");
            eprintln!(
                "hint: is `tributary run --config {}` running?",
                path.display()
            );
            ExitCode::from(1)
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn bytes(v: &Value) -> String {
    tributary_postgres::preflight::human_bytes(v.as_u64().unwrap_or(0))
}

/// Left-aligned columns wide enough for every cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

fn render(status: &Value) -> String {
    let now_ms = tributary_core::clock::now_ms();
    let empty = serde_json::Map::new();
    let sources: Vec<Vec<String>> = status["sources"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, s)| {
            let tables = s["snapshot"]["tables"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let progress: Vec<String> = tables
                .iter()
                .map(|t| {
                    format!(
                        "{} {}/{}",
                        text(&t["table"]),
                        t["rows"].as_u64().unwrap_or(0),
                        t["estimated_rows"].as_u64().unwrap_or(0)
                    )
                })
                .collect();
            let snapshot = match (s["snapshot"]["done"].as_bool(), progress.is_empty()) {
                (Some(true), true) => "done".into(),
                (Some(true), false) => format!("done ({})", progress.join(", ")),
                _ => format!("running ({})", progress.join(", ")),
            };
            vec![
                name.clone(),
                text(&s["slot"]),
                text(&s["position"]),
                text(&s["confirmed"]),
                bytes(&s["lag_bytes"]),
                format!("{:.1}", s["lag_seconds"].as_f64().unwrap_or(0.0)),
                bytes(&s["retained_wal_bytes"]),
                if s["lag_alarm"].as_bool() == Some(true) {
                    "ALARM"
                } else {
                    "ok"
                }
                .into(),
                snapshot,
            ]
        })
        .collect();
    let sinks: Vec<Vec<String>> = status["sinks"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, s)| {
            let last_ack = match s["last_ack_ms"].as_i64() {
                Some(ms) => format!("{:.1}s ago", (now_ms - ms).max(0) as f64 / 1000.0),
                None => "-".into(),
            };
            vec![
                name.clone(),
                text(&s["events"]),
                text(&s["errors"]),
                last_ack,
                text(&s["last_error"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SOURCE",
            "SLOT",
            "POSITION",
            "CONFIRMED",
            "LAG",
            "LAG S",
            "RETAINED WAL",
            "ALARM",
            "SNAPSHOT",
        ],
        &sources,
    );
    out.push('\n');
    out.push_str(&table(
        &["SINK", "EVENTS", "ERRORS", "LAST ACK", "LAST ERROR"],
        &sinks,
    ));
    let views = &status["views"];
    if let Some(each) = views["views"].as_object() {
        let rows: Vec<Vec<String>> = each
            .iter()
            .map(|(name, v)| {
                let sources: Vec<String> = v["sources"]
                    .as_array()
                    .map(|a| a.iter().map(text).collect())
                    .unwrap_or_default();
                vec![
                    name.clone(),
                    text(&v["rows"]),
                    text(&v["time"]),
                    text(&v["errors"]),
                    sources.join(", "),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["VIEW", "ROWS", "TRANSACTIONS", "ERRORS", "SOURCES"],
            &rows,
        ));
        out.push_str(&format!(
            "views rehydrated in {} ms; process resident memory {}\n",
            text(&views["rehydration_ms"]),
            bytes(&views["resident_bytes"])
        ));
    }
    out
}
