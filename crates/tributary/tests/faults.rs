//! Crashes and restarts: no loss after kill -9, no duplicates after SIGTERM,
//! a large transaction streamed through.

use std::time::Duration;

use crate::support::*;

#[test]
fn kill9_under_load_loses_nothing() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL, pad text);
         INSERT INTO t SELECT g, 0, 'x' FROM generate_series(1, 5000) g;",
    ))
    .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
    );
    t.wait_for(5000, Duration::from_secs(60));
    let writer = spawn_writer(pg.url("app"), 3000, |i| {
        format!(
            "BEGIN; UPDATE t SET n = n + 1 WHERE id = {}; INSERT INTO t VALUES ({}, 0, 'y'); DELETE FROM t WHERE id = {}; COMMIT;",
            i % 4000 + 1,
            10_000 + i,
            5000 - (i % 900)
        )
    });
    // Kill it three times while the writer runs.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        t.kill9();
        t.restart();
    }
    writer.join().unwrap();
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(90));
    assert!(t.terminate().success());
}

#[test]
fn large_transaction_streams_through() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE big (id int PRIMARY KEY, v text)"))
        .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.big"], ""),
    );
    crate::capture::wait_for_slot(&rt, &db);
    let n: usize = std::env::var("TRIBUTARY_BIG_TX_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    rt.block_on(db.batch_execute(&format!(
        "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, {n}) g"
    )))
    .unwrap();
    let records = t.wait_for(n, Duration::from_secs(600));
    assert_eq!(records.len(), n);
    let commit = records[0]["id"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .0
        .to_owned();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["id"].as_str().unwrap(), format!("{commit}:{i}"));
    }
    assert_eq!(records[n - 1]["key"]["id"], n as i64);
    assert!(t.terminate().success());
}

#[test]
fn slot_dropped_between_runs_stops_with_hint_not_a_silent_gap() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"))
        .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
    );
    t.wait_for(1, Duration::from_secs(60));
    assert!(t.terminate().success());
    rt.block_on(db.batch_execute("SELECT pg_drop_replication_slot('tributary_src')"))
        .unwrap();
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (2)"))
        .unwrap();
    t.restart();
    let status = t.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", t.log());
    let log = t.log();
    assert!(
        log.contains("replication slot \"tributary_src\" is missing"),
        "{log}"
    );
    assert!(log.contains("hint: "), "{log}");
    assert_eq!(
        read_records(&t.events).len(),
        1,
        "nothing may be emitted past the gap"
    );
}
