//! The PostgreSQL sink against a real target cluster: tables created from
//! the schema the events carry stay equal to the source through a crash, key
//! changes, truncates and an added column; history mode keeps every event
//! once; a target down for 10 s pauses delivery; a row the target refuses is
//! dead-lettered; a file sink ahead of the checkpoint at a kill -9 gets
//! nothing twice. The records use Debezium's lossy settings; the replica
//! stays exact.

use std::time::{Duration, Instant};

use crate::support::*;

/// Two sinks into the `warehouse` database of `target`: `replica` keeps
/// tables equal to the source, `changelog` appends every event.
fn sinks_config(
    dir: &std::path::Path,
    pg: &PgCluster,
    target: &PgCluster,
    tables: &[&str],
) -> String {
    // Debezium's lossy settings (decimals as doubles, intervals folded into
    // microseconds) shape the records; the replica must stay exact anyway.
    let base = config(dir, &pg.url("app"), tables, "decimal_handling = \"double\"");
    let (head, _) = base.split_once("[[sink]]").unwrap();
    format!(
        "{head}[[sink]]\nname = \"replica\"\ntype = \"postgres\"\nurl = \"{url}\"\n\
         target = \"copy.{{table}}\"\nretry_initial = \"50ms\"\nretry_max = \"1s\"\n\n\
         [[sink]]\nname = \"changelog\"\ntype = \"postgres\"\nurl = \"{url}\"\nmode = \"history\"\n\
         target = \"history.{{table}}\"\nretry_initial = \"50ms\"\nretry_max = \"1s\"\n",
        url = target.url("warehouse"),
    )
}

/// The rows of `table` as JSON text, ordered by id, without the sink's
/// bookkeeping columns.
fn rows(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT (to_jsonb(x) - '_tributary_lsn' - '_tributary_ordinal')::text \
         FROM {table} x ORDER BY id"
    );
    match rt.block_on(db.query(&sql, &[])) {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(), // not created yet
    }
}

fn count(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client, sql: &str) -> i64 {
    rt.block_on(db.query_one(sql, &[]))
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Waits until `table` in the target equals it in the source.
fn wait_equal(
    t: &Tributary,
    rt: &tokio::runtime::Runtime,
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    table: &str,
    target_table: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (want, got) = (rows(rt, source, table), rows(rt, target, target_table));
        if want == got {
            return;
        }
        if Instant::now() > deadline {
            let first = want.iter().zip(&got).find(|(a, b)| a != b);
            panic!(
                "{target_table} differs from {table}: {} vs {} rows, first difference {first:?}\n{}",
                got.len(),
                want.len(),
                t.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const TYPED_TABLE: &str = "CREATE TABLE t (
    id int PRIMARY KEY, n int NOT NULL, note text, amount numeric(12,2), day date,
    at timestamp, at_tz timestamptz, clock time, span interval, flag bool, uid uuid,
    blob bytea, doc jsonb, tags int[], days date[], score float8, mood mood, code code,
    exact numeric)";

const TYPED_ROWS: &str =
    "INSERT INTO t SELECT g, g % 7, 'row ' || g, g * 1.25, date '2024-02-29' + g,
    timestamp '2024-05-01 08:00:00.123456' + g * interval '1 hour',
    timestamptz '2024-05-01 08:00:00+02' + g * interval '1 minute', time '13:14:15.5',
    interval '1 year 2 mons 3 days 04:05:06', g % 2 = 0, md5(g::text)::uuid,
    decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)),
    ARRAY[g, g + 1], ARRAY[date '2000-01-01', date '1999-12-31'],
    CASE WHEN g % 50 = 0 THEN 'NaN'::float8 ELSE g / 3.0 END, 'happy', 'C' || g,
    12345678901234567890.000001 + g
    FROM generate_series(1, 300) g";

#[test]
fn the_replica_equals_the_source_and_history_keeps_every_event_once_across_a_crash() {
    let pg = PgCluster::start();
    let target = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    let wh = rt.block_on(target.create_db("warehouse"));
    rt.block_on(db.batch_execute(&format!(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN code AS text CHECK (VALUE <> '');
         {TYPED_TABLE};
         {TYPED_ROWS};
         CREATE TABLE u (id int PRIMARY KEY, name text);
         INSERT INTO u SELECT g, 'u' || g FROM generate_series(1, 10) g;"
    )))
    .unwrap();
    let dir = workdir();
    let text = sinks_config(dir.path(), &pg, &target, &["public.t", "public.u"]);
    let (code, out) = crate::check::check(dir.path(), &text);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    sink \"replica\": PostgreSQL target"),
        "{out}"
    );

    // The snapshot first, ended cleanly: this test is about a crash while
    // streaming. (A crash mid-snapshot restarts the snapshot; see
    // ARCHITECTURE.md, "Snapshot resume", for what that misses.)
    let mut t = Tributary::start(dir.path(), &text);
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");
    wait_equal(&t, &rt, &db, &wh, "u", "copy.u");
    assert!(t.terminate().success(), "{}", t.log());

    // Crash after the 4th durable write (both sinks count), before the checkpoint.
    t.restart_with_fault(Some("sink.after_write:4"));
    for i in 0..40 {
        rt.block_on(db.batch_execute(&format!(
            "INSERT INTO t (id, n, note) VALUES ({}, 1, 'new')",
            1000 + i
        )))
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", t.log());
    assert!(t.log().contains("fault injected"), "{}", t.log());
    t.restart();

    rt.block_on(db.batch_execute(
        "UPDATE t SET n = n + 100, note = NULL WHERE id <= 10;
         DELETE FROM t WHERE id BETWEEN 11 AND 15;
         UPDATE t SET id = 5000 WHERE id = 20;
         TRUNCATE u;
         INSERT INTO u VALUES (42, 'after truncate');
         ALTER TABLE t ADD COLUMN extra text;
         UPDATE t SET extra = 'added later' WHERE id = 1;",
    ))
    .unwrap();
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");
    wait_equal(&t, &rt, &db, &wh, "u", "copy.u");
    assert!(
        t.log().contains("redelivered events were already applied"),
        "the crash caused no redelivery, so the position check was not exercised:\n{}",
        t.log()
    );
    assert!(
        t.log().contains("added columns to target table"),
        "{}",
        t.log()
    );

    // History: every event of t exactly once. 300 snapshot rows, 40 inserts,
    // 10 updates, 5 deletes, a key change (delete + create), 1 update.
    let expected = 300 + 40 + 10 + 5 + 2 + 1;
    wait_until(&t, Duration::from_secs(30), || {
        count(&rt, &wh, "SELECT count(*) FROM history.t") >= expected
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&rt, &wh, "SELECT count(*) FROM history.t"), expected);
    assert_eq!(
        count(
            &rt,
            &wh,
            "SELECT count(DISTINCT (_tributary_lsn, _tributary_ordinal)) FROM history.t"
        ),
        expected
    );
    assert_eq!(
        count(
            &rt,
            &wh,
            "SELECT count(*) FROM history.t WHERE _tributary_op = 'd'"
        ),
        6
    );
    assert_eq!(
        count(
            &rt,
            &wh,
            "SELECT count(*) FROM history.u WHERE _tributary_op = 't'"
        ),
        1
    );
    // Positions live in the target, one row per sink and source.
    assert_eq!(
        count(
            &rt,
            &wh,
            "SELECT count(*) FROM tributary_positions WHERE source = 'src'"
        ),
        2
    );
    // Enums and domains became portable types.
    let types: Vec<String> = rt
        .block_on(wh.query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'copy.t'::regclass AND attname IN ('mood', 'code', 'amount') \
             ORDER BY attname",
            &[],
        ))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, ["numeric(12,2)", "text", "text"]);
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_target_down_for_ten_seconds_pauses_delivery_and_loses_nothing() {
    let pg = PgCluster::start();
    let target = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(target.create_db("warehouse"));
    create_table_t(&rt, &db, 20);
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &sinks_config(dir.path(), &pg, &target, &["public.t"]),
    );
    let wh = rt.block_on(target.client("warehouse"));
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");
    drop(wh);

    target.stop();
    let down_at = Instant::now();
    let before = confirmed_flush(&rt, &db);
    for i in 0..30 {
        rt.block_on(db.batch_execute(&format!(
            "INSERT INTO t VALUES ({}, 1); UPDATE t SET n = n + 1 WHERE id = 1",
            100 + i
        )))
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed()));
    assert!(
        confirmed_flush(&rt, &db) <= before + 1_000,
        "confirmed moved while the target was down"
    );
    assert!(
        t.log().contains("sink write failed; retrying"),
        "{}",
        t.log()
    );

    target.restart();
    let wh = rt.block_on(target.client("warehouse"));
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");
    wait_until(&t, Duration::from_secs(30), || {
        count(&rt, &wh, "SELECT count(*) FROM history.t") >= 20 + 60
    });
    assert_eq!(count(&rt, &wh, "SELECT count(*) FROM history.t"), 80);
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_row_the_target_refuses_is_dead_lettered_and_the_rest_flows() {
    let pg = PgCluster::start();
    let target = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    let wh = rt.block_on(target.create_db("warehouse"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL)"))
        .unwrap();
    // The target was made by hand, stricter than the source.
    rt.block_on(wh.batch_execute(
        "CREATE SCHEMA copy;
         CREATE TABLE copy.t (id int PRIMARY KEY, n int NOT NULL CONSTRAINT small_n CHECK (n < 1000));",
    ))
    .unwrap();
    let dir = workdir();
    let letters = dir.path().join("dead.jsonl");
    let text = sinks_config(dir.path(), &pg, &target, &["public.t"]).replace(
        "name = \"replica\"\n",
        &format!(
            "name = \"replica\"\non_error = \"dead_letter\"\ndead_letter_path = \"{}\"\n",
            letters.display()
        ),
    );
    let mut t = Tributary::start(dir.path(), &text);
    crate::capture::wait_for_slot(&rt, &db);
    rt.block_on(db.batch_execute(
        "BEGIN; INSERT INTO t VALUES (1, 1); INSERT INTO t VALUES (2, 987654); \
         INSERT INTO t VALUES (3, 3); COMMIT;",
    ))
    .unwrap();
    wait_until(&t, Duration::from_secs(60), || {
        !(count(&rt, &wh, "SELECT count(*) FROM copy.t") < 2 || read_records(&letters).is_empty())
    });
    let ids: Vec<i32> = rt
        .block_on(wh.query("SELECT id FROM copy.t ORDER BY id", &[]))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1, 3]);
    let dead = read_records(&letters);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["sink"], "replica");
    assert_eq!(dead[0]["value"]["after"]["id"], 2);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("23514") && reason.contains("small_n"),
        "{reason}"
    );
    assert!(!t.log().contains("987654"), "a row value was logged");
    // The history sink has no such constraint and takes all three (its
    // lane runs on its own, so wait for it too).
    wait_until(&t, Duration::from_secs(30), || {
        count(&rt, &wh, "SELECT count(*) FROM history.t") >= 3
    });
    assert_eq!(count(&rt, &wh, "SELECT count(*) FROM history.t"), 3);
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn kill9_under_load_leaves_no_duplicate_in_jetstream_nor_the_replica() {
    let pg = PgCluster::start();
    let target = PgCluster::start();
    let nats = tributary_testkit::NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    let wh = rt.block_on(target.create_db("warehouse"));
    create_table_t(&rt, &db, 2000);
    let dir = workdir();
    let text = format!(
        "{}\n[[sink]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"{}\"\nstream = \"CDC\"\n",
        sinks_config(dir.path(), &pg, &target, &["public.t"]),
        nats.url()
    );
    let mut t = Tributary::start(dir.path(), &text);
    crate::capture::wait_for_slot(&rt, &db);
    // 1500 transactions of three changes each, while Tributary is killed twice.
    let writer = spawn_writer(pg.url("app"), 1500, |i| {
        format!(
            "BEGIN; UPDATE t SET n = n + 1 WHERE id = {}; INSERT INTO t VALUES ({}, 0); \
             DELETE FROM t WHERE id = {}; COMMIT;",
            i % 1000 + 1,
            10_000 + i,
            2000 - (i % 500)
        )
    });
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(800));
        t.kill9();
        t.restart();
    }
    writer.join().unwrap();
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");

    // 2000 snapshot rows, 1500 updates, 1500 inserts, 500 deletes (the
    // writer deletes each of ids 1501..=2000 once; later deletes find nothing).
    // Each sink has its own lane: wait for the history and JetStream too.
    let expected: i64 = 2000 + 1500 + 1500 + 500;
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let m = crate::nats::stream_messages(&rt, &nats.url(), "CDC");
        let history = count(&rt, &wh, "SELECT count(*) FROM history.t");
        if m.len() as i64 >= expected && history >= expected {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "{} in JetStream, {history} in history, of {expected}\n{}",
            m.len(),
            t.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&rt, &wh, "SELECT count(*) FROM history.t"), expected);
    let ids: std::collections::HashSet<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "JetStream stored a duplicate");
    assert_eq!(
        crate::nats::stream_messages(&rt, &nats.url(), "CDC").len() as i64,
        expected
    );
    println!(
        "kill -9 ×2: {} events sent, {} found in JetStream, {} in history, 0 duplicates",
        expected,
        messages.len(),
        expected
    );
    assert!(t.terminate().success(), "{}", t.log());
}

/// A sink ahead of the source's checkpoint when the process dies (the file
/// went on while the PostgreSQL target was down, holding the checkpoint
/// back) skips on the restart what it already has: no event twice in the
/// file, while the replica catches up from the same replay.
#[test]
fn a_sink_ahead_when_killed_gets_nothing_twice_after_the_restart() {
    let pg = PgCluster::start();
    let target = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(target.create_db("warehouse"));
    create_table_t(&rt, &db, 20);
    let dir = workdir();
    let text = format!(
        "{}\n[[sink]]\nname = \"replica\"\ntype = \"postgres\"\nurl = \"{}\"\n\
         target = \"copy.{{table}}\"\nretry_initial = \"50ms\"\nretry_max = \"500ms\"\n",
        config(dir.path(), &pg.url("app"), &["public.t"], ""),
        target.url("warehouse"),
    );
    let mut t = Tributary::start(dir.path(), &text);
    let wh = rt.block_on(target.client("warehouse"));
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");
    drop(wh);

    target.stop();
    for i in 0..5 {
        rt.block_on(db.batch_execute(&format!("INSERT INTO t VALUES ({}, 1)", 100 + i)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    // The file has some of them (the replica's lane holds back only the
    // checkpoint), and its own position is committed within an fsync.
    t.wait_for(21, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    t.kill9();

    target.restart();
    t.restart();
    let wh = rt.block_on(target.client("warehouse"));
    wait_equal(&t, &rt, &db, &wh, "t", "copy.t");
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (999, 1)"))
        .unwrap();
    let records = t.wait_for(26, Duration::from_secs(30));
    assert!(
        t.log()
            .contains("sink is ahead of the source's checkpoint; skipping what it has"),
        "{}",
        t.log()
    );
    let mut seen = std::collections::HashSet::new();
    for r in changes(&records) {
        assert!(
            seen.insert(r["id"].as_str().unwrap().to_owned()),
            "event {} reached the file twice",
            r["id"]
        );
    }
    assert_eq!(seen.len(), 26);
    assert!(t.terminate().success(), "{}", t.log());
}
