//! WAL safety against a real server: heartbeats let the slot of an idle
//! database advance while another database is busy; a slot invalidated by
//! `max_slot_wal_keep_size` or dropped while running stops the source with a
//! clear error, and `on_slot_lost = "resnapshot"` is the explicit way back.

use std::time::{Duration, Instant};

use crate::capture::wait_for_slot;
use crate::support::*;

/// (confirmed_flush_lsn, restart_lsn) of the source's slot, as numbers.
fn slot_positions(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client) -> (i64, i64) {
    let row = rt
        .block_on(db.query_one(
            "SELECT (confirmed_flush_lsn - '0/0')::int8, (restart_lsn - '0/0')::int8 \
             FROM pg_replication_slots WHERE slot_name = 'tributary_src'",
            &[],
        ))
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn heartbeats_advance_the_slot_of_an_idle_database_in_a_busy_cluster() {
    let pg = PgCluster::start();
    let rt = runtime();
    let idle = rt.block_on(pg.create_db("idle"));
    let busy = rt.block_on(pg.create_db("busy"));
    rt.block_on(
        idle.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"),
    )
    .unwrap();
    rt.block_on(busy.batch_execute("CREATE TABLE b (id serial PRIMARY KEY, pad text)"))
        .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(
            dir.path(),
            &pg.url("idle"),
            &["public.t"],
            "heartbeat_interval = \"200ms\"",
        ),
    );
    t.wait_for(1, Duration::from_secs(60));
    wait_for_slot(&rt, &idle);
    let (_, restart_before) = slot_positions(&rt, &idle);

    // The busy database writes ~30 MB of WAL; the idle one writes nothing.
    for _ in 0..10 {
        rt.block_on(busy.batch_execute(
            "INSERT INTO b (pad) SELECT repeat('x', 200) FROM generate_series(1, 10000)",
        ))
        .unwrap();
    }
    let busy_end: i64 = rt
        .block_on(busy.query_one("SELECT (pg_current_wal_lsn() - '0/0')::int8", &[]))
        .unwrap()
        .get(0);
    assert!(
        busy_end - restart_before > 20_000_000,
        "not enough WAL written"
    );

    // A checkpoint logs the running transactions, which lets restart_lsn move.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        rt.block_on(busy.batch_execute("CHECKPOINT")).unwrap();
        let (confirmed, restart) = slot_positions(&rt, &idle);
        if confirmed >= busy_end && restart > busy_end - 16 * 1024 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot did not follow: confirmed {confirmed}, restart {restart}, busy end {busy_end}, \
             restart before {restart_before}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Heartbeats are not events.
    assert_eq!(read_records(&t.events).len(), 1);
    assert!(t.terminate().success());
}

#[test]
fn invalidated_slot_stops_the_source_until_resnapshot_is_chosen() {
    let pg = PgCluster::start_with(&[("max_slot_wal_keep_size", "1MB")]);
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);"))
        .unwrap();
    let dir = workdir();
    let text = config(dir.path(), &pg.url("app"), &["public.t"], "");
    let mut t = Tributary::start(dir.path(), &text);
    t.wait_for(1, Duration::from_secs(60));
    assert!(t.terminate().success());

    // While it is stopped, the server moves on past the slot's WAL.
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (2)"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        rt.block_on(db.batch_execute(
            "INSERT INTO t SELECT max(id) + 1 FROM t; SELECT pg_switch_wal(); CHECKPOINT;",
        ))
        .unwrap();
        let status: Option<String> = rt
            .block_on(db.query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'tributary_src'",
                &[],
            ))
            .unwrap()
            .get(0);
        if status.as_deref() == Some("lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot never invalidated: {status:?}"
        );
    }

    t.restart();
    t.assert_stops_at_gap("replication slot \"tributary_src\" was invalidated", 1);
    assert!(
        t.log().contains("on_slot_lost = \"resnapshot\""),
        "{}",
        t.log()
    );
    // The explicit way back: a new slot and a fresh snapshot of the table now.
    std::fs::write(
        dir.path().join("tributary.toml"),
        config(
            dir.path(),
            &pg.url("app"),
            &["public.t"],
            "on_slot_lost = \"resnapshot\"",
        ),
    )
    .unwrap();
    let rows: i64 = rt
        .block_on(db.query_one("SELECT count(*) FROM t", &[]))
        .unwrap()
        .get(0);
    t.restart();
    let records = t.wait_for(1 + rows as usize, Duration::from_secs(60));
    assert!(records[1..].iter().all(|r| r["value"]["op"] == "r"));
    assert!(t.log().contains("taking a new snapshot"), "{}", t.log());
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (1000)"))
        .unwrap();
    let records = t.wait_for(2 + rows as usize, Duration::from_secs(60));
    assert_eq!(records.last().unwrap()["value"]["op"], "c");
    assert!(t.terminate().success());
}

#[test]
fn slot_dropped_while_running_stops_the_source() {
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
    wait_for_slot(&rt, &db);
    rt.block_on(db.batch_execute(
        "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots \
           WHERE slot_name = 'tributary_src';
         SELECT pg_drop_replication_slot('tributary_src');",
    ))
    .unwrap();
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (2)"))
        .unwrap();
    t.assert_stops_at_gap("replication slot \"tributary_src\" is missing", 1);
}

#[test]
fn a_broken_stream_reconnects_and_loses_nothing() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL)"))
        .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
    );
    wait_for_slot(&rt, &db);
    let writer = spawn_writer(pg.url("app"), 1500, |i| {
        format!(
            "INSERT INTO t VALUES ({i}, 0); UPDATE t SET n = n + 1 WHERE id = {};",
            i / 2
        )
    });
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        wait_for_slot(&rt, &db);
        rt.block_on(db.batch_execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
               WHERE slot_name = 'tributary_src'",
        ))
        .unwrap();
    }
    writer.join().unwrap();
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(90));
    assert!(
        t.log()
            .contains("connection to the server lost; reconnecting"),
        "{}",
        t.log()
    );
    let records = read_records(&t.events);
    let mut ids = std::collections::HashSet::new();
    for r in changes(&records) {
        assert!(
            ids.insert(r["id"].as_str().unwrap().to_owned()),
            "duplicate {}",
            r["id"]
        );
    }
    assert!(t.terminate().success(), "{}", t.log());
}
