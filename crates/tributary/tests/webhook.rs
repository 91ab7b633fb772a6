//! The HTTP webhook sink against a real HTTP server (axum, in this test
//! process): batches arrive signed and authorised, a 503 is retried until it
//! passes, and the one event the receiver refuses with 422 is found by
//! bisection and dead-lettered (or stops the pipeline) while the rest flows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::*;

#[derive(Default)]
struct Receiver {
    /// Every record accepted, in arrival order.
    accepted: Vec<serde_json::Value>,
    requests: usize,
    /// Requests answered 503 so far (the first three are).
    unavailable: usize,
    bad_signatures: usize,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let signature = headers
        .get("tributary-signature")
        .and_then(|v| v.to_str().ok());
    let (Some("Bearer hook-token"), Some(signature)) = (auth, signature) else {
        return false;
    };
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-secret").unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

async fn hook(
    State(state): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut s = state.lock().unwrap();
    s.requests += 1;
    if !verify(&headers, &body) {
        s.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if s.unavailable < 3 {
        s.unavailable += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let records: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    if records.iter().any(|r| r["value"]["after"]["id"] == 2) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    s.accepted.extend(records);
    StatusCode::NO_CONTENT
}

/// Serves the hook on a free loopback port; returns its URL.
fn serve(state: Arc<Mutex<Receiver>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route("/hook", axum::routing::post(hook))
                .with_state(state);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

fn hook_config(dir: &std::path::Path, pg: &PgCluster, url: &str, extra: &str) -> String {
    crate::support::retarget_sink(
        &config(dir, &pg.url("app"), &["public.t"], ""),
        &format!(
            "type = \"http\"\nurl = \"{url}\"\nbearer_token_env = \"HOOK_TOKEN\"\n\
             hmac_secret_env = \"HOOK_SECRET\"\nbatch_size = 16\nretry_initial = \"50ms\"\n{extra}"
        ),
    )
}

fn start(dir: &std::path::Path, text: &str) -> Tributary {
    Tributary::start_with_env(
        dir,
        text,
        &[("HOOK_TOKEN", "hook-token"), ("HOOK_SECRET", "hook-secret")],
    )
}

#[test]
fn batches_arrive_signed_5xx_is_retried_and_a_refused_event_is_dead_lettered() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, secret_n int NOT NULL);
         INSERT INTO t SELECT g, g * 1000 + 7 FROM generate_series(1, 100) g;",
    ))
    .unwrap();
    let state = Arc::new(Mutex::new(Receiver::default()));
    let url = serve(Arc::clone(&state));
    let dir = workdir();
    let letters = dir.path().join("dead.jsonl");
    let text = hook_config(
        dir.path(),
        &pg,
        &url,
        &format!(
            "on_error = \"dead_letter\"\ndead_letter_path = \"{}\"",
            letters.display()
        ),
    );
    let mut t = start(dir.path(), &text);
    crate::capture::wait_for_slot(&rt, &db);
    for i in 0..20 {
        rt.block_on(db.batch_execute(&format!("INSERT INTO t VALUES ({}, 1)", 1000 + i)))
            .unwrap();
    }
    wait_until(&t, Duration::from_secs(60), || {
        state.lock().unwrap().accepted.len() >= 119
    });
    std::thread::sleep(Duration::from_millis(500));
    let s = state.lock().unwrap();
    let ids: HashSet<i64> = s
        .accepted
        .iter()
        .map(|r| r["value"]["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(s.accepted.len(), 119, "a duplicate was delivered");
    let mut expected: HashSet<i64> = (1..=100).chain(1000..1020).collect();
    expected.remove(&2);
    assert_eq!(ids, expected);
    assert_eq!(s.bad_signatures, 0);
    assert_eq!(s.unavailable, 3);
    assert!(s
        .accepted
        .iter()
        .all(|r| r["id"].as_str().unwrap().starts_with("src:")));
    drop(s);
    assert!(t.log().contains("the receiver answered 503"), "{}", t.log());
    let dead = read_records(&letters);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"]["after"]["id"], 2);
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("422"),
        "{}",
        dead[0]["reason"]
    );
    let log = t.log();
    assert!(
        !log.contains("hook-token") && !log.contains("hook-secret"),
        "a secret was logged"
    );
    assert!(!log.contains("2007"), "a row value was logged");
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_refused_event_stops_the_pipeline_by_default() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, secret_n int NOT NULL);
         INSERT INTO t SELECT g, 0 FROM generate_series(1, 5) g;",
    ))
    .unwrap();
    let state = Arc::new(Mutex::new(Receiver {
        unavailable: 3,
        ..Receiver::default()
    }));
    let url = serve(Arc::clone(&state));
    let dir = workdir();
    let mut t = start(dir.path(), &hook_config(dir.path(), &pg, &url, ""));
    let status = t.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", t.log());
    let log = t.log();
    assert!(
        log.contains("error: sink \"archive\" refused event src:"),
        "{log}"
    );
    assert!(log.contains("422"), "{log}");
    // Event 1 was delivered before the refused one; nothing after it.
    let ids: Vec<i64> = state
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|r| r["value"]["after"]["id"].as_i64().unwrap())
        .collect();
    assert!(!ids.contains(&2), "{ids:?}");
}
