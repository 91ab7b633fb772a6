//! The admin endpoint and `tributary status`: Prometheus metrics with the
//! names of `interface.md`, the `/status` document rendered as a table, and
//! logs that never carry row values.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn metrics_status_and_quiet_logs() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, secret text);
         INSERT INTO t SELECT g, 'rowsecret-' || g FROM generate_series(1, 20000) g;
         ANALYZE t;",
    ))
    .unwrap();
    let port = tributary_testkit::free_port();
    let dir = workdir();
    let text = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:{port}\"\n",
        config(
            dir.path(),
            &pg.url("app"),
            &["public.t"],
            "heartbeat_interval = \"200ms\"\nmax_lag_bytes = \"1B\"",
        )
    );
    let mut t = Tributary::start(dir.path(), &text);
    t.wait_for(20_000, Duration::from_secs(60));
    rt.block_on(db.batch_execute(
        "INSERT INTO t VALUES (20001, 'rowsecret-new'); UPDATE t SET secret = 'rowsecret-upd' WHERE id = 1;",
    ))
    .unwrap();
    t.wait_for(20_002, Duration::from_secs(60));

    // Metrics appear once recorded; lag gauges after the first heartbeat.
    // The slot is confirmed within 100 ms, so a lag over 1 byte (the alarm)
    // shows between a heartbeat's write and its confirmation: poll for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = http_get(port, "/metrics");
        if m.contains("tributary_source_lag_alarm{source=\"src\"} 1") {
            break m;
        }
        assert!(Instant::now() < deadline, "no lag alarm:\n{m}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"));
    assert_contains_all(
        &metrics,
        &[
            "tributary_source_events_total{source=\"src\",table=\"public.t\",op=\"r\"} 20000",
            "tributary_source_events_total{source=\"src\",table=\"public.t\",op=\"c\"} 1",
            "tributary_source_events_total{source=\"src\",table=\"public.t\",op=\"u\"} 1",
            "tributary_snapshot_rows_total{source=\"src\",table=\"public.t\"} 20000",
            "tributary_sink_events_total{sink=\"archive\"} 20002",
            "tributary_sink_batch_seconds_bucket{sink=\"archive\",le=\"",
            "tributary_commit_to_sink_seconds_bucket{source=\"src\",sink=\"archive\",le=\"0.02\"}",
            "tributary_source_lag_seconds{source=\"src\"}",
            "tributary_source_retained_wal_bytes{source=\"src\"}",
            "tributary_source_lag_alarm{source=\"src\"} 1",
        ],
    );

    let status = http_get(port, "/status");
    assert!(status.contains("\"slot\":\"tributary_src\""), "{status}");

    let out = cli("status", dir.path(), &text, &[]);
    let table = &out.stdout;
    assert_eq!(out.code, 0, "{table}{}", out.stderr);
    assert_contains_all(
        table,
        &[
            "SOURCE",
            "CONFIRMED",
            "src",
            "tributary_src",
            "ALARM",
            "done (public.t 20000/20000)",
            "SINK",
            "archive",
            "20002",
        ],
    );

    assert!(t.terminate().success());
    let log = t.log();
    assert!(log.contains("slot lag is above max_lag_bytes"), "{log}");
    assert!(!log.contains("rowsecret"), "a row value was logged:\n{log}");
}

#[test]
fn status_without_a_running_process_says_so() {
    let dir = workdir();
    let port = tributary_testkit::free_port();
    let text = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:{port}\"\n",
        config(dir.path(), "postgres://u@127.0.0.1:1/db", &["public.t"], "")
    );
    let out = cli("status", dir.path(), &text, &[]);
    let stderr = &out.stderr;
    assert_eq!(out.code, 1, "{stderr}");
    assert!(
        stderr.contains("hint: is `tributary run --config"),
        "{stderr}"
    );
}
