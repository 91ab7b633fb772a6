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
    t.assert_stops_at_gap("replication slot \"tributary_src\" is missing", 1);
}

#[test]
fn crash_mid_snapshot_restarts_it_and_delivers_the_changes_in_between() {
    let rows = 100_000;
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, rows);
    let dir = workdir();
    // The second durable sink write of the snapshot is its last act: at most
    // two batches of a 100k-row table, so the snapshot is cut in the middle.
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
        Some("sink.after_write:2"),
    );
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", t.log());
    assert!(t.log().contains("fault injected at sink.after_write"));
    let delivered: Vec<i64> = read_records(&t.events)
        .iter()
        .map(|r| r["key"]["id"].as_i64().unwrap())
        .collect();
    let first_run = delivered.len();
    assert!(
        first_run > 20 && first_run < rows,
        "{first_run} rows before the crash"
    );

    // Rows a consumer already has, deleted and changed while Tributary is
    // down: without delete events for them, a replica would keep them.
    let gone: Vec<i64> = delivered[..5].to_vec();
    let changed: Vec<i64> = delivered[10..15].to_vec();
    let list = |ids: &[i64]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    rt.block_on(db.batch_execute(&format!(
        "DELETE FROM t WHERE id IN ({}); UPDATE t SET n = 1 WHERE id IN ({});
         DELETE FROM t WHERE id > 99990;",
        list(&gone),
        list(&changed)
    )))
    .unwrap();
    t.restart();
    let now = rows - 15;
    let _ = t.wait_for(first_run + now, Duration::from_secs(120));
    assert!(
        t.log().contains("the previous snapshot was interrupted"),
        "{}",
        t.log()
    );
    // Replaying everything the sink got, both runs in order, gives the table
    // as it is: the deletes in between came through.
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(60));
    let records = read_records(&t.events);
    let second = &records[first_run..];
    let first_snapshot_row = second
        .iter()
        .position(|r| r["value"]["op"] == "r")
        .expect("a second snapshot");
    // The changes made between the runs come first, from the old slot...
    let deleted: Vec<i64> = second[..first_snapshot_row]
        .iter()
        .filter(|r| r["value"]["op"] == "d")
        .map(|r| r["key"]["id"].as_i64().unwrap())
        .collect();
    for id in &gone {
        assert!(deleted.contains(id), "no delete event for row {id}");
    }
    // ...then one whole snapshot, first to last, of the table as it is now.
    let snapshot: Vec<&serde_json::Value> =
        second.iter().filter(|r| r["value"]["op"] == "r").collect();
    assert_eq!(snapshot.len(), now);
    assert_eq!(snapshot[0]["value"]["source"]["snapshot"], "first");
    assert_eq!(snapshot[now - 1]["value"]["source"]["snapshot"], "last");
    assert!(t.terminate().success());
}

#[test]
fn rows_a_crashed_snapshot_delivered_keep_their_unchanged_toast_values() {
    let rows = 12_000;
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(&format!(
        "CREATE TABLE b (id int PRIMARY KEY, n int NOT NULL, body text);
         ALTER TABLE b ALTER COLUMN body SET STORAGE EXTERNAL;
         INSERT INTO b SELECT g, 0, repeat(md5(g::text), 100) FROM generate_series(1, {rows}) g;"
    )))
    .unwrap();
    let dir = workdir();
    // Killed after the second durable write: no checkpoint covers the rows
    // of that write, so only the snapshot's own fsync keeps their images.
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.b"], ""),
        Some("sink.after_write:2"),
    );
    assert!(
        !t.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        t.log()
    );
    let first: Vec<i64> = read_records(&t.events)
        .iter()
        .map(|r| r["key"]["id"].as_i64().unwrap())
        .collect();
    assert!(
        first.len() > 100 && first.len() < rows,
        "{} rows",
        first.len()
    );
    // The rows delivered last, changed while Tributary is down with their
    // out-of-line body left as it is: the catch-up sees TOAST markers.
    let changed: Vec<i64> = first[first.len() - 50..].to_vec();
    let list = changed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    rt.block_on(db.batch_execute(&format!("UPDATE b SET n = 1 WHERE id IN ({list})")))
        .unwrap();
    t.restart();
    t.wait_for(first.len() + 50 + rows, Duration::from_secs(120));
    let records = read_records(&t.events);
    let updates: Vec<&serde_json::Value> = records[first.len()..]
        .iter()
        .filter(|r| r["value"]["op"] == "u")
        .collect();
    assert_eq!(updates.len(), 50, "{}", t.log());
    for u in updates {
        let id = u["key"]["id"].as_i64().unwrap();
        let body: String = rt
            .block_on(db.query_one("SELECT body FROM b WHERE id = $1", &[&(id as i32)]))
            .unwrap()
            .get(0);
        assert_eq!(u["value"]["after"]["body"], body.as_str(), "row {id}");
        assert!(u["value"]["source"].get("unchanged_toast").is_none(), "{u}");
    }
    assert!(t.terminate().success());
}

#[test]
fn a_server_restart_mid_snapshot_takes_it_again_without_exiting() {
    let rows = 20_000;
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, rows);
    let dir = workdir();
    let release = dir.path().join("release");
    let mut t = Tributary::start_with_env(
        dir.path(),
        &config(
            dir.path(),
            &pg.url("app"),
            &["public.t"],
            "snapshot_parallelism = 2",
        ),
        &[
            ("TRIBUTARY_FAULT", "snapshot.piece_sent:3"),
            ("TRIBUTARY_FAULT_RELEASE", release.to_str().unwrap()),
        ],
    );
    // Three pieces of the snapshot are out; the server restarts under it.
    wait_until(&t, Duration::from_secs(60), || {
        t.log().contains("snapshot.piece_sent reached")
    });
    let delivered: Vec<i64> = read_records(&t.events)
        .iter()
        .map(|r| r["key"]["id"].as_i64().unwrap())
        .collect();
    pg.stop();
    pg.restart();
    let db = rt.block_on(pg.client("app"));
    // Changes to rows a consumer may already have, while no snapshot runs.
    rt.block_on(db.batch_execute(&format!(
        "DELETE FROM t WHERE id IN ({}); UPDATE t SET n = 7 WHERE id % 100 = 0;",
        delivered
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )))
    .unwrap();
    std::fs::write(&release, b"").unwrap();
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(120));
    assert!(t.try_exit().is_none(), "exited:\n{}", t.log());
    assert_contains_all(
        &t.log(),
        &[
            "connection to the server lost before streaming; starting over",
            "catching up the slot to the new snapshot's point",
        ],
    );
    // Streaming works after it, and SIGTERM ends it cleanly.
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (0, 0)"))
        .unwrap();
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(60));
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_restarted_snapshot_splits_concurrent_writes_exactly_at_its_point() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO t SELECT g, 0 FROM generate_series(1, 50000) g;
         CREATE TABLE h (seq int PRIMARY KEY);",
    ))
    .unwrap();
    let dir = workdir();
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t", "public.h"], ""),
        Some("sink.after_write:2"),
    );
    assert!(
        !t.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        t.log()
    );
    let first_run = read_records(&t.events).len();

    // Writes before, during and after the second run's catch-up, snapshot
    // and stream; each transaction adds one row to h.
    let transactions = 4000;
    let writer = spawn_writer(pg.url("app"), transactions, |i| {
        format!(
            "BEGIN; INSERT INTO h VALUES ({i}); UPDATE t SET n = n + 1 WHERE id = {}; \
             DELETE FROM t WHERE id = {}; COMMIT;",
            i % 1000 + 1,
            40_000 + i
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    t.restart();
    writer.join().unwrap();

    let table = |r: &serde_json::Value, name: &str| r["value"]["source"]["table"] == name;
    let seq = |r: &serde_json::Value| r["key"]["seq"].as_i64().unwrap();
    wait_until(&t, Duration::from_secs(90), || {
        let records = read_records(&t.events);
        records[first_run..]
            .iter()
            .filter(|r| table(r, "h") && r["value"]["op"] == "c")
            .any(|r| seq(r) == transactions as i64 - 1)
    });
    let records = read_records(&t.events);
    // t, rebuilt from everything the sink got, equals the source.
    let rebuilt: std::collections::BTreeMap<i64, i64> = replay(
        &records
            .iter()
            .filter(|r| r["value"].is_null() || table(r, "t"))
            .cloned()
            .collect::<Vec<_>>(),
    )
    .values()
    .map(|r| (r["id"].as_i64().unwrap(), r["n"].as_i64().unwrap()))
    .collect();
    let source: std::collections::BTreeMap<i64, i64> = rt
        .block_on(db.query("SELECT id::int8, n::int8 FROM t", &[]))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        rebuilt == source,
        "rebuilt t differs: {} vs {} rows",
        rebuilt.len(),
        source.len()
    );

    // Each transaction is either in the second snapshot or streamed after
    // it, never both and never neither.
    let second = &records[first_run..];
    let last_snapshot_row = second
        .iter()
        .rposition(|r| r["value"]["op"] == "r")
        .expect("a second snapshot");
    let in_snapshot: std::collections::BTreeSet<i64> = second[..=last_snapshot_row]
        .iter()
        .filter(|r| table(r, "h") && r["value"]["op"] == "r")
        .map(seq)
        .collect();
    let streamed_after: Vec<i64> = second[last_snapshot_row + 1..]
        .iter()
        .filter(|r| table(r, "h") && r["value"]["op"] == "c")
        .map(seq)
        .collect();
    let streamed_set: std::collections::BTreeSet<i64> = streamed_after.iter().copied().collect();
    assert_eq!(
        streamed_set.len(),
        streamed_after.len(),
        "a transaction streamed twice"
    );
    assert!(
        in_snapshot.is_disjoint(&streamed_set),
        "in the snapshot and streamed after it: {:?}",
        in_snapshot
            .intersection(&streamed_set)
            .take(5)
            .collect::<Vec<_>>()
    );
    // The writes really straddled the point: some came through the
    // catch-up (before the snapshot), some in it, some after it.
    let first_snapshot_row = second.iter().position(|r| r["value"]["op"] == "r").unwrap();
    let caught_up = second[..first_snapshot_row]
        .iter()
        .filter(|r| table(r, "h"))
        .count();
    assert!(
        caught_up > 0 && !in_snapshot.is_empty() && !streamed_set.is_empty(),
        "caught up {caught_up}, in the snapshot {}, streamed after {}",
        in_snapshot.len(),
        streamed_set.len()
    );
    let all: std::collections::BTreeSet<i64> = (0..transactions as i64).collect();
    let delivered: std::collections::BTreeSet<i64> =
        in_snapshot.union(&streamed_set).copied().collect();
    assert_eq!(delivered, all, "transactions missing");
    assert!(t.terminate().success());
}

#[test]
fn redelivery_after_a_crash_repeats_the_same_ids() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL)"))
        .unwrap();
    let dir = workdir();
    // Crash after the third batch is durable in the sink but before its
    // checkpoint: exactly the events that must come again, with their ids.
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
        Some("sink.after_write:3"),
    );
    crate::capture::wait_for_slot(&rt, &db);
    let transactions = 40;
    for i in 0..transactions {
        rt.block_on(db.batch_execute(&format!(
            "BEGIN; INSERT INTO t VALUES ({i}, 0); UPDATE t SET n = 1 WHERE id = {i}; COMMIT;"
        )))
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", t.log());
    let before_crash = read_records(&t.events);
    assert!(!before_crash.is_empty());

    t.restart();
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(60));
    let records = read_records(&t.events);
    let mut first_seen: std::collections::HashMap<&str, &serde_json::Value> = Default::default();
    let mut repeated = 0;
    for r in &records {
        let id = r["id"].as_str().unwrap();
        match first_seen.get(id) {
            None => {
                first_seen.insert(id, r);
            }
            Some(earlier) => {
                repeated += 1;
                for field in ["topic", "key"] {
                    assert_eq!(earlier[field], r[field], "{id}");
                }
                for field in ["op", "before", "after"] {
                    assert_eq!(earlier["value"][field], r["value"][field], "{id}");
                }
                assert_eq!(
                    earlier["value"]["source"]["lsn"],
                    r["value"]["source"]["lsn"]
                );
            }
        }
    }
    assert!(repeated > 0, "the crashed batch was not delivered again");
    assert_eq!(
        changes(&records).len() - repeated_changes(&records),
        2 * transactions,
        "every change once, apart from repeats"
    );
    assert!(t.terminate().success());
}

/// How many value-carrying records repeat an earlier record's id.
fn repeated_changes(records: &[serde_json::Value]) -> usize {
    let mut seen = std::collections::HashSet::new();
    changes(records)
        .iter()
        .filter(|r| !seen.insert(r["id"].as_str().unwrap().to_owned()))
        .count()
}

#[test]
fn sigterm_mid_transaction_finishes_it_and_a_restart_repeats_nothing() {
    let n = 300_000;
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE big (id int PRIMARY KEY)"))
        .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.big"], ""),
    );
    crate::capture::wait_for_slot(&rt, &db);
    rt.block_on(db.batch_execute(&format!(
        "INSERT INTO big SELECT g FROM generate_series(1, {n}) g"
    )))
    .unwrap();
    // Signal while the transaction is being streamed (lines counted, not
    // parsed: the last one may be half written).
    let lines = || {
        std::fs::read(&t.events)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lines() < 1000 {
        assert!(std::time::Instant::now() < deadline, "{}", t.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_signal = lines();
    assert!(at_signal < n, "the transaction was already through");
    assert!(t.terminate().success(), "{}", t.log());
    assert_eq!(
        read_records(&t.events).len(),
        n,
        "the open transaction was not finished"
    );

    t.restart();
    rt.block_on(db.batch_execute("INSERT INTO big VALUES (0)"))
        .unwrap();
    let records = t.wait_for(n + 1, Duration::from_secs(60));
    assert_eq!(records.len(), n + 1, "something was delivered twice");
    assert_eq!(records[n]["key"]["id"], 0);
    assert!(t.terminate().success());
}

/// The file sink keeps two batches in flight: the next is encoded and
/// queued while the disk makes the last one durable. When that fsync fails
/// (the third one here, as a full disk would), the batch behind it is
/// refused too, and both are written again in order: every snapshot row
/// lands once, in the order of its ordinal, and streaming goes on.
#[test]
fn a_failed_fsync_with_a_batch_behind_it_is_written_again_in_order() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    let rows = 60_000;
    rt.block_on(db.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"
    )))
    .unwrap();
    let dir = workdir();
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
        Some("file.sync_fails:3"),
    );
    let snapshot = t.wait_for(rows, Duration::from_secs(120));
    let log = t.log();
    assert_contains_all(&log, &["sink write failed; retrying", "injected failure"]);
    let ordinals: Vec<u64> = snapshot
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            id.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(
        ordinals,
        (0..rows as u64).collect::<Vec<_>>(),
        "each snapshot row once, in order"
    );
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (0, 'after')"))
        .unwrap();
    let records = t.wait_for(rows + 1, Duration::from_secs(60));
    assert_eq!(records.len(), rows + 1);
    assert_eq!(records[rows]["value"]["op"], "c");
    assert!(t.terminate().success());
}

/// A sink that takes nothing (an HTTP endpoint that accepts connections and
/// never answers) fills the pipeline, and the source waits to hand over its
/// events. A fast shutdown of the source's server must still go through:
/// the source watches its connections while it waits. It once did not, and
/// held the replication session until pg_ctl gave up after 60 s.
#[test]
fn a_full_pipeline_does_not_hold_the_servers_fast_shutdown() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, 50);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in silent.incoming() {
            held.push(connection);
        }
    });
    let dir = workdir();
    let text = retarget_sink(
        &config(
            dir.path(),
            &pg.url("app"),
            &["public.t"],
            "snapshot = \"never\"\n",
        ),
        &format!(
            "type = \"http\"\nurl = \"http://127.0.0.1:{port}/events\"\ntimeout = \"300s\"\n\
             batch_size = 10"
        ),
    );
    let mut t = Tributary::start(dir.path(), &text);
    wait_until(&t, Duration::from_secs(30), || {
        let active = rt.block_on(db.query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tributary_src' AND active",
            &[],
        ));
        matches!(active, Ok(Some(_)))
    });
    // Far more than the pipeline holds: the source ends up waiting in its
    // hand-over.
    for _ in 0..300 {
        rt.block_on(db.batch_execute("UPDATE t SET n = n + 1"))
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(t.try_exit().is_none(), "{}", t.log());
    // pg_ctl waits at most 60 s and the kit's stop asserts it succeeded.
    pg.stop();
    pg.restart();
    assert!(
        t.try_exit().is_none(),
        "a lost server is retried, not fatal:\n{}",
        t.log()
    );
    t.kill9();
}
