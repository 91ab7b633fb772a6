//! Snapshot, streaming and their handoff.

use std::time::Duration;

use crate::support::*;

#[test]
fn snapshot_then_stream_then_clean_restart() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("cash"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 'owner' || g, g * 1.5 FROM generate_series(1, 100) g;",
    ))
    .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("cash"), &["public.accounts"], ""),
    );
    let records = t.wait_for(100, Duration::from_secs(60));
    assert!(changes(&records).iter().all(|r| r["value"]["op"] == "r"));
    assert_eq!(records[0]["value"]["source"]["snapshot"], "first");
    assert_eq!(records[99]["value"]["source"]["snapshot"], "last");
    assert_eq!(records[0]["topic"], "src.public.accounts");

    rt.block_on(db.batch_execute(
        "INSERT INTO accounts VALUES (101, 'new', 1);
         UPDATE accounts SET balance = 0 WHERE id = 1;
         DELETE FROM accounts WHERE id = 2;",
    ))
    .unwrap();
    // 100 reads + c + u + d + tombstone
    let records = t.wait_for(104, Duration::from_secs(30));
    let ops: Vec<&str> = records[100..]
        .iter()
        .map(|r| r["value"]["op"].as_str().unwrap_or("tombstone"))
        .collect();
    assert_eq!(ops, ["c", "u", "d", "tombstone"]);
    assert_eq!(records[101]["value"]["after"]["balance"], "0.00");
    assert_eq!(records[102]["value"]["before"]["id"], 2);
    assert_eq!(records[103]["key"]["id"], 2);

    assert!(t.terminate().success(), "{}", t.log());
    // Restart: nothing is delivered twice, new changes arrive.
    t.restart();
    rt.block_on(db.batch_execute("INSERT INTO accounts VALUES (102, 'later', 2)"))
        .unwrap();
    let records = t.wait_for(105, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let records_after = read_records(&t.events);
    assert_eq!(
        records_after.len(),
        105,
        "duplicates after a clean restart:\n{}",
        t.log()
    );
    assert_eq!(records[104]["key"]["id"], 102);
    assert!(t.terminate().success());
}

#[test]
fn truncate_replica_identity_and_tables_without_key() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE full_t (id int PRIMARY KEY, v text);
         ALTER TABLE full_t REPLICA IDENTITY FULL;
         CREATE TABLE default_t (id int PRIMARY KEY, v text);
         CREATE TABLE nokey (a int, b text);
         ALTER TABLE nokey REPLICA IDENTITY FULL;",
    ))
    .unwrap();
    let dir = workdir();
    let tables = ["public.full_t", "public.default_t", "public.nokey"];
    let mut t = Tributary::start(dir.path(), &config(dir.path(), &pg.url("app"), &tables, ""));
    // Wait until streaming (the snapshot of empty tables writes nothing).
    wait_for_slot(&rt, &db);
    rt.block_on(db.batch_execute(
        "INSERT INTO full_t VALUES (1, 'a'); UPDATE full_t SET v = 'b' WHERE id = 1;
         INSERT INTO default_t VALUES (1, 'a'); UPDATE default_t SET v = 'b' WHERE id = 1;
         UPDATE default_t SET id = 2 WHERE id = 1;
         DELETE FROM default_t WHERE id = 2;
         INSERT INTO nokey VALUES (1, 'x'); UPDATE nokey SET b = 'y'; DELETE FROM nokey;
         TRUNCATE full_t;",
    ))
    .unwrap();
    // full_t: c u | default_t: c u d+tomb c d+tomb | nokey: c u d (no tombstone) | t
    let records = t.wait_for(13, Duration::from_secs(30));
    let ops: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["topic"].as_str().unwrap().rsplit('.').next().unwrap(),
                r["value"]["op"].as_str().unwrap_or("tomb")
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            "full_t:c",
            "full_t:u",
            "default_t:c",
            "default_t:u",
            "default_t:d",
            "default_t:tomb",
            "default_t:c",
            "default_t:d",
            "default_t:tomb",
            "nokey:c",
            "nokey:u",
            "nokey:d",
            "full_t:t"
        ]
    );
    // FULL: before image present on update; DEFAULT: before null on update.
    assert_eq!(records[1]["value"]["before"]["v"], "a");
    assert!(records[3]["value"]["before"].is_null());
    // Key change = delete of old key + create of new key.
    assert_eq!(records[4]["key"]["id"], 1);
    assert_eq!(records[6]["key"]["id"], 2);
    // DEFAULT identity delete: key columns only.
    assert_eq!(records[7]["value"]["before"]["id"], 2);
    assert!(records[7]["value"]["before"]["v"].is_null());
    // Without a key: key null, full images.
    assert!(records[10]["key"].is_null());
    assert_eq!(records[10]["value"]["before"]["b"], "x");
    assert_eq!(records[11]["value"]["before"]["b"], "y");
    assert!(records[12]["key"].is_null());
    // One transaction: one commit position, ordinals 0..
    let ids: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    let commit = ids[0].rsplit_once(':').unwrap().0;
    assert!(ids.iter().all(|i| i.starts_with(commit)), "{ids:?}");
    assert!(t.terminate().success());
}

/// Waits until the slot exists and the snapshot checkpoint was confirmed.
pub fn wait_for_slot(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = rt
            .block_on(db.query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tributary_src' AND active",
                &[],
            ))
            .unwrap();
        if row.is_some() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slot never became active"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn snapshot_and_stream_are_exact_under_concurrent_writes() {
    exact_under_concurrent_writes(20_000, "", "");
}

/// The same, with the table split into page ranges read by three sessions
/// at once (1 MB chunks of a ~7 MB table), rows moved to other pages by
/// updates before and during the snapshot, and holes left by deletes.
#[test]
fn a_parallel_chunked_snapshot_reads_every_row_once() {
    let log = exact_under_concurrent_writes(
        60_000,
        "UPDATE t SET n = n + 1 WHERE id % 7 = 0; DELETE FROM t WHERE id % 11 = 0;",
        "snapshot_parallelism = 3\nsnapshot_chunk_size = \"1MB\"",
    );
    let chunks: usize = log
        .split("snapshot reading chunks=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk plan in the log:\n{log}"));
    assert!(chunks >= 5, "{chunks} chunks:\n{log}");
    assert!(log.contains("sessions=3"), "{log}");
}

/// A role whose connection limit leaves room for fewer sessions than
/// `snapshot_parallelism` asks: the snapshot goes on with those that
/// opened, says so, and still reads every row exactly once.
#[test]
fn a_snapshot_with_fewer_sessions_than_asked_reads_every_row_once() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    let rows = 40_000;
    rt.block_on(db.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, pad text);
         INSERT INTO t SELECT g, repeat('x', 80) FROM generate_series(1, {rows}) g;
         CREATE ROLE capped LOGIN REPLICATION CONNECTION LIMIT 3;
         GRANT SELECT ON t TO capped;
         CREATE PUBLICATION capped_pub FOR TABLE t;"
    )))
    .unwrap();
    let dir = workdir();
    let url = format!("postgres://capped@127.0.0.1:{}/app", pg.port());
    let text = config(
        dir.path(),
        &url,
        &["public.t"],
        "publication = \"capped_pub\"\nsnapshot_parallelism = 4\nsnapshot_chunk_size = \"1MB\"",
    );
    let mut t = Tributary::start(dir.path(), &text);
    let records = t.wait_for(rows, Duration::from_secs(90));
    let log = t.log();
    assert!(
        log.contains("the snapshot reads with fewer sessions than snapshot_parallelism"),
        "{log}"
    );
    let ids: std::collections::HashSet<i64> = records
        .iter()
        .map(|r| {
            assert_eq!(r["value"]["op"], "r");
            r["key"]["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!((records.len(), ids.len()), (rows, rows));
    assert!(t.terminate().success(), "{log}");
}

/// Writers change `t` (`rows` rows, after `prepare`) while the slot is
/// created and the snapshot read; the events must rebuild the table, with
/// every key entering once and changing only while present. Returns the log.
fn exact_under_concurrent_writes(rows: usize, prepare: &str, extra_source: &str) -> String {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL, pad text);
         INSERT INTO t SELECT g, 0, repeat('x', 80) FROM generate_series(1, {rows}) g;
         {prepare}"
    )))
    .unwrap();
    let dir = workdir();
    // Writers run while the slot is created and the snapshot is read.
    let writer = spawn_writer(pg.url("app"), 400, move |i| {
        format!(
            "UPDATE t SET n = n + 1 WHERE id = {}; INSERT INTO t VALUES ({}, {i}); DELETE FROM t WHERE id = {};",
            i * 37 % rows + 1,
            1_000_000 + i,
            rows - i
        )
    });
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], extra_source),
    );
    writer.join().unwrap();
    wait_until_rebuilt_equals_source(&t, &rt, &db, Duration::from_secs(90));
    // No double count: every snapshot row read once, each insert created once.
    let records = read_records(&t.events);
    let mut seen = std::collections::HashSet::new();
    for r in changes(&records) {
        assert!(
            seen.insert(r["id"].as_str().unwrap().to_owned()),
            "duplicate event id {}",
            r["id"]
        );
    }
    // Per key, a row enters only when absent and changes only when present.
    let mut present = std::collections::HashSet::new();
    for r in changes(&records) {
        let key = r["key"].to_string();
        match r["value"]["op"].as_str().unwrap() {
            "r" | "c" => assert!(present.insert(key.clone()), "{key} entered twice"),
            "u" => assert!(present.contains(&key), "{key} updated while absent"),
            "d" => assert!(present.remove(&key), "{key} deleted while absent"),
            op => panic!("unexpected op {op}"),
        }
    }
    let marked = |m: &str| {
        changes(&records)
            .iter()
            .filter(|r| r["value"]["source"]["snapshot"] == m)
            .count()
    };
    assert_eq!((marked("first"), marked("last")), (1, 1));
    assert!(t.terminate().success());
    t.log()
}

/// A schema and a table whose names hold dots and quotes, named in the
/// config as SQL quotes them, are captured in the snapshot and the stream
/// (issue "Debezium fidelity": `tables` split on every dot before).
#[test]
fn tables_named_with_dots_and_quotes_are_captured() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("odd"));
    rt.block_on(db.batch_execute(
        r#"CREATE SCHEMA "My.Schema";
         CREATE TABLE "My.Schema"."Odd ""name""" (id int PRIMARY KEY, "a.b" text);
         INSERT INTO "My.Schema"."Odd ""name""" VALUES (1, 'one'), (2, 'two');"#,
    ))
    .unwrap();
    let dir = workdir();
    // A TOML literal string: the quotes are the SQL identifier's own.
    let text = config(dir.path(), &pg.url("odd"), &[], "")
        .replace("tables = []", r#"tables = ['"My.Schema"."Odd ""name"""']"#);
    let mut t = Tributary::start(dir.path(), &text);
    t.wait_for(2, Duration::from_secs(60));
    rt.block_on(
        db.batch_execute(r#"UPDATE "My.Schema"."Odd ""name""" SET "a.b" = 'uno' WHERE id = 1"#),
    )
    .unwrap();
    let records = t.wait_for(3, Duration::from_secs(30));
    let topics: Vec<&str> = records
        .iter()
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, [r#"src.My.Schema.Odd "name""#; 3], "{records:?}");
    let value = &records[2]["value"];
    assert_eq!(value["op"], "u");
    assert_eq!(value["after"]["a.b"], "uno");
    assert_eq!(value["source"]["schema"], "My.Schema");
    assert_eq!(value["source"]["table"], r#"Odd "name""#);
    assert_eq!(records[2]["key"]["id"], 1);
}
