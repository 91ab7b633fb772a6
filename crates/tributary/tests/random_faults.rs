//! A randomized fault test: writers under load (key changes, out-of-line
//! values, multi-row and one large transaction) while Tributary is killed
//! with `kill -9` at random points (the first one inside the snapshot, one
//! inside the large transaction), stopped with SIGTERM, and the PostgreSQL
//! server and nats-server are restarted. Three sinks at once: file, NATS
//! JetStream and a PostgreSQL replica in a second database of the same
//! cluster. Afterwards every sink, replayed by key, must equal the source
//! column by column; no event id may carry two payloads; JetStream must hold
//! no duplicate; Tributary must never have exited by itself.
//!
//! Seeded: `TRIBUTARY_FAULT_SEED=N` repeats a run (the seed is printed, and
//! named in every failure). `TRIBUTARY_FAULT_LONG=1` runs the long version
//! (more kills, more rows, a longer load); `TRIBUTARY_FAULT_SEEDS=K` runs K
//! seeds one after another.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tributary_testkit::NatsServer;

use crate::nats::stream_messages;
use crate::support::*;

/// Writer threads; each owns the keys `k` with `k % WRITERS == w`.
const WRITERS: i64 = 3;

/// How big and how rough one run is.
#[derive(Clone, Copy)]
struct Scale {
    seed_rows: i64,
    big_rows: i64,
    /// `kill -9`s after the one inside the snapshot and the one inside the
    /// large transaction.
    kills: usize,
    sigterms: usize,
    /// Pause between two fault actions, in milliseconds (a random draw in it).
    gap_ms: (u64, u64),
}

const CI: Scale = Scale {
    seed_rows: 1500,
    big_rows: 20_000,
    kills: 2,
    sigterms: 1,
    gap_ms: (1500, 3500),
};

const LONG: Scale = Scale {
    seed_rows: 6000,
    big_rows: 200_000,
    kills: 6,
    sigterms: 2,
    gap_ms: (2000, 6000),
};

#[test]
fn random_faults_lose_nothing_and_never_change_a_payload() {
    let long = std::env::var("TRIBUTARY_FAULT_LONG").is_ok_and(|v| v == "1");
    let scale = if long { LONG } else { CI };
    let first_seed = std::env::var("TRIBUTARY_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..1_000_000));
    let seeds: u64 = std::env::var("TRIBUTARY_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in first_seed..first_seed + seeds {
        eprintln!("random_faults: seed {seed} (TRIBUTARY_FAULT_SEED={seed} repeats it)");
        let result = std::panic::catch_unwind(|| one_run(seed, scale));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("random_faults failed with seed {seed}: {msg}");
        }
    }
}

/// What one run measured, printed at its end.
#[derive(Default, Debug)]
struct Figures {
    kills: usize,
    sigterms: usize,
    records: usize,
    redelivered: usize,
    nats_messages: usize,
    omissions_before_last_snapshot: usize,
    pg_stop_ms: u128,
}

fn one_run(seed: u64, scale: Scale) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pg = PgCluster::start();
    let mut nats = NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    let wh = rt.block_on(pg.create_db("warehouse"));
    let n = scale.seed_rows;
    rt.block_on(db.batch_execute(&format!(
        "CREATE TABLE acct (id bigint PRIMARY KEY, amount numeric(14,2), note text, doc jsonb);
         CREATE TABLE pair (a bigint, b text, n int, PRIMARY KEY (a, b));
         CREATE TABLE blob (id bigint PRIMARY KEY, n int, body text);
         ALTER TABLE blob ALTER COLUMN body SET STORAGE EXTERNAL;
         INSERT INTO acct SELECT g, g * 1.25, 'note ' || g, jsonb_build_object('g', g)
           FROM generate_series(1, {n}) g;
         INSERT INTO pair SELECT g, 'b' || g, 0 FROM generate_series(1, {n}) g;
         INSERT INTO blob SELECT g, 0, repeat(md5(g::text), 100) FROM generate_series(1, {n}) g;"
    )))
    .unwrap();
    let dir = workdir();
    let text = run_config(dir.path(), &pg, &nats);
    let mut figures = Figures::default();

    // The first run dies inside the snapshot (after the 3rd durable write of
    // any sink), while the writers already change rows.
    let mut t = Tributary::start_with_fault(dir.path(), &text, Some("sink.after_write:3"));
    let flags = Arc::new(Flags::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, flags) = (pg.url("app"), flags.clone());
            let (seed, big) = (
                seed.wrapping_add(w as u64 + 1),
                (w == 0).then_some(scale.big_rows),
            );
            std::thread::spawn(move || writer(url, w, n, seed, big, &flags))
        })
        .collect();
    let status = t.wait_exit(Duration::from_secs(120));
    assert!(
        !status.success(),
        "the snapshot ended before the fault:\n{}",
        t.log()
    );
    assert!(t.log().contains("fault injected"), "{}", t.log());
    figures.kills += 1;
    t.restart();

    // Random faults, in a seeded order.
    let mut actions = vec![
        Action::KillInBigTransaction,
        Action::RestartPostgres,
        Action::RestartNats,
    ];
    actions.extend(std::iter::repeat_n(Action::Kill, scale.kills));
    actions.extend(std::iter::repeat_n(Action::Sigterm, scale.sigterms));
    rng.shuffle(&mut actions);
    for action in actions {
        std::thread::sleep(Duration::from_millis(
            rng.u64(scale.gap_ms.0..scale.gap_ms.1),
        ));
        assert_running(&mut t, seed);
        match action {
            Action::Kill => {
                t.kill9();
                figures.kills += 1;
                std::thread::sleep(Duration::from_millis(rng.u64(0..1000)));
                t.restart();
            }
            Action::KillInBigTransaction => {
                flags.big_go.store(true, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(120);
                while !flags.big_done.load(Ordering::SeqCst) {
                    assert!(
                        Instant::now() < deadline,
                        "the large transaction never committed"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
                assert_running(&mut t, seed);
                t.kill9();
                figures.kills += 1;
                t.restart();
            }
            Action::Sigterm => {
                let status = t.terminate();
                assert!(status.success(), "SIGTERM: {status}\n{}", t.log());
                figures.sigterms += 1;
                t.restart();
            }
            Action::RestartPostgres => {
                let began = Instant::now();
                pg.stop();
                figures.pg_stop_ms = began.elapsed().as_millis();
                std::thread::sleep(Duration::from_millis(rng.u64(200..2000)));
                pg.restart();
            }
            Action::RestartNats => {
                nats.stop();
                std::thread::sleep(Duration::from_millis(rng.u64(200..2000)));
                nats.restart();
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1000));
    flags.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("a writer failed");
    }
    assert_running(&mut t, seed);

    // Every sink converges on the source.
    let rt2 = runtime();
    let db = rt2.block_on(pg.client("app"));
    let wh_now = rt2.block_on(pg.client("warehouse"));
    drop(wh);
    let source = source_rows(&rt2, &db);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert_running(&mut t, seed);
        let file = replay_by_key(read_records(&t.events).iter().map(|r| &r["value"]));
        let replica = replica_rows(&rt2, &wh_now);
        if file == source && replica == source {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "seed {seed}: sinks differ from the source: file {}, replica {}\n{}",
                first_difference(&source, &file),
                first_difference(&source, &replica),
                t.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let messages = loop {
        let messages = stream_messages(&rt2, &nats.url(), "CDC");
        let replayed = replay_by_key(messages.iter().map(|(_, _, _, v)| v));
        if replayed == source {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: JetStream differs from the source: {}",
            first_difference(&source, &replayed)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let status = t.terminate();
    assert!(status.success(), "{}", t.log());

    // No id with two payloads (apart from the envelope's processing time),
    // in the file sink (which keeps redeliveries) and across sinks.
    let records = read_records(&t.events);
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for r in records.iter().filter(|r| !r["value"].is_null()) {
        let id = r["id"].as_str().unwrap().to_owned();
        let payload = without_processing_time(&r["value"]);
        match by_id.get(&id) {
            Some(first) => {
                assert_eq!(first, &payload, "seed {seed}: id {id} has two payloads");
                figures.redelivered += 1;
            }
            None => {
                by_id.insert(id, payload);
            }
        }
    }
    let mut nats_ids = std::collections::HashSet::new();
    for (_, id, _, payload) in &messages {
        assert!(
            nats_ids.insert(id.clone()),
            "seed {seed}: JetStream holds {id} twice"
        );
        assert_eq!(
            by_id.get(id),
            Some(&without_processing_time(payload)),
            "seed {seed}: id {id} differs between JetStream and the file"
        );
    }

    // Unchanged TOAST values are filled whenever the row was seen in full:
    // only the catch-up before a restarted snapshot may lack one (a row the
    // interrupted snapshot had not reached yet), and the snapshot after it
    // delivers that row whole.
    let last_snapshot = records
        .iter()
        .filter(|r| r["value"]["op"] == "r")
        .map(|r| id_lsn(&r["id"]))
        .max()
        .expect("snapshot records");
    for r in &records {
        if r["value"]["source"].get("unchanged_toast").is_some() {
            assert!(
                id_lsn(&r["id"]) < last_snapshot,
                "seed {seed}: a streamed event lacks an unchanged TOAST value: {}",
                r["id"]
            );
            figures.omissions_before_last_snapshot += 1;
        }
    }
    figures.records = records.len();
    figures.nats_messages = messages.len();
    assert!(
        figures.pg_stop_ms < 30_000,
        "seed {seed}: the server's fast shutdown was held"
    );
    eprintln!(
        "random_faults: seed {seed}: {} rows at the end; {figures:?}",
        source.len()
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Kill,
    KillInBigTransaction,
    Sigterm,
    RestartPostgres,
    RestartNats,
}

fn assert_running(t: &mut Tributary, seed: u64) {
    if let Some(status) = t.try_exit() {
        panic!(
            "seed {seed}: tributary exited by itself ({status}):\n{}",
            t.log()
        );
    }
}

fn run_config(dir: &std::path::Path, pg: &PgCluster, nats: &NatsServer) -> String {
    let base = config(
        dir,
        &pg.url("app"),
        &["public.acct", "public.pair", "public.blob"],
        "decimal_handling = \"string\"\ninterval_handling = \"string\"\nheartbeat_interval = \"1s\"",
    );
    format!(
        "{base}\n[[sink]]\nname = \"jetstream\"\ntype = \"nats\"\nurl = \"{nats}\"\nstream = \"CDC\"\n\
         retry_initial = \"50ms\"\nretry_max = \"1s\"\n\n\
         [[sink]]\nname = \"replica\"\ntype = \"postgres\"\nurl = \"{warehouse}\"\n\
         target = \"copy.{{table}}\"\nretry_initial = \"50ms\"\nretry_max = \"1s\"\n",
        nats = nats.url(),
        warehouse = pg.url("warehouse"),
    )
}

/// One writer's keys, as it believes them to be.
struct Keys {
    acct: Vec<i64>,
    pair: Vec<(i64, String)>,
    blob: Vec<i64>,
    next: i64,
}

impl Keys {
    fn load(rt: &tokio::runtime::Runtime, c: &tokio_postgres::Client, w: i64) -> Option<Self> {
        let ids = |sql: &str| -> Option<Vec<i64>> {
            Some(
                rt.block_on(c.query(sql, &[&WRITERS, &w]))
                    .ok()?
                    .iter()
                    .map(|r| r.get(0))
                    .collect(),
            )
        };
        let acct = ids("SELECT id FROM acct WHERE id % $1 = $2 AND note <> 'big' ORDER BY id")?;
        let blob = ids("SELECT id FROM blob WHERE id % $1 = $2 ORDER BY id")?;
        let pair = rt
            .block_on(c.query(
                "SELECT a, b FROM pair WHERE a % $1 = $2 ORDER BY a, b",
                &[&WRITERS, &w],
            ))
            .ok()?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let next = rt
            .block_on(c.query_one(
                "SELECT greatest((SELECT max(id) FROM acct WHERE note <> 'big'), \
                 (SELECT max(id) FROM blob), (SELECT max(a) FROM pair))::int8",
                &[],
            ))
            .ok()?
            .get::<_, i64>(0);
        Some(Keys {
            acct,
            pair,
            blob,
            next,
        })
    }

    /// A fresh key of writer `w`.
    fn fresh(&mut self, w: i64) -> i64 {
        self.next += 1;
        while self.next % WRITERS != w {
            self.next += 1;
        }
        self.next
    }
}

fn connect(rt: &tokio::runtime::Runtime, url: &str) -> Option<tokio_postgres::Client> {
    let (c, conn) = rt
        .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
        .ok()?;
    rt.spawn(conn);
    Some(c)
}

/// Between the fault driver and the writers.
#[derive(Default)]
struct Flags {
    stop: AtomicBool,
    /// The driver asks for the large transaction…
    big_go: AtomicBool,
    /// …and a writer reports it committed.
    big_done: AtomicBool,
}

/// Runs random transactions until `stop`; with `big`, also the large
/// transaction when the driver asks. A failed transaction (the server
/// restarting) is retried on a new connection with the keys read again.
fn writer(url: String, w: i64, seed_rows: i64, seed: u64, big: Option<i64>, flags: &Flags) {
    let rt = runtime();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut session: Option<(tokio_postgres::Client, Keys)> = None;
    let give_up = Instant::now() + Duration::from_secs(600);
    while !flags.stop.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < give_up,
            "writer {w} could not write for too long"
        );
        let (client, keys) = match session.as_mut() {
            Some(s) => (&s.0, &mut s.1),
            None => {
                let fresh = connect(&rt, &url).and_then(|c| Keys::load(&rt, &c, w).map(|k| (c, k)));
                if fresh.is_none() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                session = fresh;
                continue;
            }
        };
        let big_now = big.is_some()
            && flags.big_go.load(Ordering::SeqCst)
            && !flags.big_done.load(Ordering::SeqCst);
        let sql = if big_now {
            let rows = big.unwrap_or(0);
            format!(
                "BEGIN;
                 INSERT INTO acct SELECT {w} + {WRITERS} * (10000000 + g), g, 'big', '{{}}'
                   FROM generate_series(1, {rows}) g;
                 UPDATE blob SET n = n + 1 WHERE id % {WRITERS} = {w};
                 COMMIT;"
            )
        } else {
            let ops = if rng.u8(..4) == 0 { rng.usize(2..7) } else { 1 };
            let mut sql = String::from("BEGIN;\n");
            for _ in 0..ops {
                sql.push_str(&random_op(&mut rng, keys, w, seed_rows));
                sql.push_str(";\n");
            }
            sql.push_str("COMMIT;");
            sql
        };
        match rt.block_on(client.batch_execute(&sql)) {
            Ok(()) => {
                if big_now {
                    flags.big_done.store(true, Ordering::SeqCst);
                }
            }
            // The server restarted (or refused): reconnect, read the keys.
            Err(_) => {
                session = None;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..8)));
    }
}

/// One random statement over the writer's own keys; `keys` follows it.
fn random_op(rng: &mut fastrand::Rng, keys: &mut Keys, w: i64, seed_rows: i64) -> String {
    let pick = |rng: &mut fastrand::Rng, v: &[i64]| v[rng.usize(..v.len())];
    match rng.u8(..14) {
        0 | 1 => {
            let id = keys.fresh(w);
            keys.acct.push(id);
            format!(
                "INSERT INTO acct VALUES ({id}, {}.{:02}, 'n{id}', '{{\"k\": {id}, \"v\": [1, 2]}}')",
                rng.u32(..100_000),
                rng.u8(..100)
            )
        }
        2 | 3 if !keys.acct.is_empty() => {
            let id = pick(rng, &keys.acct);
            format!(
                "UPDATE acct SET amount = amount + 1.25, doc = doc || '{{\"u\": {}}}' WHERE id = {id}",
                rng.u16(..)
            )
        }
        4 if !keys.acct.is_empty() => {
            let i = rng.usize(..keys.acct.len());
            let (old, new) = (keys.acct[i], keys.fresh(w));
            keys.acct[i] = new;
            format!("UPDATE acct SET id = {new}, note = note || '*' WHERE id = {old}")
        }
        5 if keys.acct.len() > 10 => {
            let id = keys.acct.swap_remove(rng.usize(..keys.acct.len()));
            format!("DELETE FROM acct WHERE id = {id}")
        }
        6 => {
            let id = keys.fresh(w);
            keys.blob.push(id);
            format!(
                "INSERT INTO blob VALUES ({id}, 0, repeat(md5('{id}-{}'), 100))",
                rng.u32(..)
            )
        }
        // Out-of-line values left unchanged: TOAST markers in the WAL.
        7 | 8 if !keys.blob.is_empty() => {
            let id = pick(rng, &keys.blob);
            format!("UPDATE blob SET n = n + 1 WHERE id = {id}")
        }
        9 if !keys.blob.is_empty() => {
            let i = rng.usize(..keys.blob.len());
            let (old, new) = (keys.blob[i], keys.fresh(w));
            keys.blob[i] = new;
            format!("UPDATE blob SET id = {new}, n = n + 1 WHERE id = {old}")
        }
        10 if !keys.blob.is_empty() => {
            let id = pick(rng, &keys.blob);
            format!(
                "UPDATE blob SET body = repeat(md5('{id}-{}'), {}) WHERE id = {id}",
                rng.u32(..),
                rng.u32(70..140)
            )
        }
        11 if keys.blob.len() > 10 => {
            let id = keys.blob.swap_remove(rng.usize(..keys.blob.len()));
            format!("DELETE FROM blob WHERE id = {id}")
        }
        12 if !keys.pair.is_empty() => {
            let i = rng.usize(..keys.pair.len());
            let (a, b) = keys.pair[i].clone();
            if rng.bool() {
                let nb = format!("b{}", rng.u32(..));
                keys.pair[i] = (a, nb.clone());
                format!("UPDATE pair SET b = '{nb}', n = n + 1 WHERE a = {a} AND b = '{b}'")
            } else {
                format!("UPDATE pair SET n = n + 1 WHERE a = {a} AND b = '{b}'")
            }
        }
        _ => {
            let a = if rng.bool() || seed_rows == 0 {
                keys.fresh(w)
            } else {
                let a = rng.i64(1..=seed_rows);
                a - a % WRITERS + w
            };
            let b = format!("x{}", rng.u32(..));
            keys.pair.push((a, b.clone()));
            format!("INSERT INTO pair VALUES ({a}, '{b}', 0)")
        }
    }
}

/// Rows by table and key, each as the JSON object of its columns.
type Rows = BTreeMap<(String, String), Value>;

fn key_of(table: &str, row: &Value) -> String {
    match table {
        "pair" => format!("{}/{}", row["a"], row["b"]),
        _ => row["id"].to_string(),
    }
}

/// The source tables, typed as the events carry them (numeric and jsonb as
/// their text, `decimal_handling = "string"`).
fn source_rows(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client) -> Rows {
    let mut rows = Rows::new();
    for (table, sql) in [
        ("acct", "SELECT jsonb_build_object('id', id, 'amount', amount::text, 'note', note, 'doc', doc::text)::text FROM acct"),
        ("pair", "SELECT to_jsonb(pair)::text FROM pair"),
        ("blob", "SELECT to_jsonb(blob)::text FROM blob"),
    ] {
        for r in rt.block_on(db.query(sql, &[])).unwrap() {
            let row: Value = serde_json::from_str(r.get(0)).unwrap();
            rows.insert((table.to_owned(), key_of(table, &row)), row);
        }
    }
    rows
}

/// The replica tables with the same typing as [`source_rows`].
fn replica_rows(rt: &tokio::runtime::Runtime, wh: &tokio_postgres::Client) -> Rows {
    let mut rows = Rows::new();
    for (table, sql) in [
        ("acct", "SELECT jsonb_build_object('id', id, 'amount', amount::text, 'note', note, 'doc', doc::text)::text FROM copy.acct"),
        ("pair", "SELECT (to_jsonb(x) - '_tributary_lsn' - '_tributary_ordinal')::text FROM copy.pair x"),
        ("blob", "SELECT (to_jsonb(x) - '_tributary_lsn' - '_tributary_ordinal')::text FROM copy.blob x"),
    ] {
        let Ok(result) = rt.block_on(wh.query(sql, &[])) else {
            return Rows::new(); // not created yet, or the server restarting
        };
        for r in result {
            let row: Value = serde_json::from_str(r.get(0)).unwrap();
            rows.insert((table.to_owned(), key_of(table, &row)), row);
        }
    }
    rows
}

/// The tables rebuilt from Debezium envelopes in delivery order.
fn replay_by_key<'a>(values: impl Iterator<Item = &'a Value>) -> Rows {
    let mut rows = Rows::new();
    for v in values {
        if v.is_null() {
            continue;
        }
        let table = v["source"]["table"].as_str().unwrap().to_owned();
        match v["op"].as_str().unwrap() {
            "r" | "c" | "u" => {
                let after = v["after"].clone();
                rows.insert((table.clone(), key_of(&table, &after)), after);
            }
            "d" => {
                rows.remove(&(table.clone(), key_of(&table, &v["before"])));
            }
            "t" => rows.retain(|(t, _), _| *t != table),
            other => panic!("unexpected op {other}"),
        }
    }
    rows
}

fn first_difference(want: &Rows, got: &Rows) -> String {
    if let Some((k, v)) = want.iter().find(|(k, v)| got.get(*k) != Some(*v)) {
        return format!(
            "{} vs {} rows; {k:?}: want {}, got {}",
            got.len(),
            want.len(),
            clip(&v.to_string()),
            clip(&got.get(k).map_or("nothing".into(), |g| g.to_string()))
        );
    }
    match got.keys().find(|k| !want.contains_key(*k)) {
        Some(k) => format!(
            "{} vs {} rows; {k:?} should not be there",
            got.len(),
            want.len()
        ),
        None => "equal".into(),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(160).collect()
}

/// The envelope without `ts_ms`, Debezium's processing time (the one field
/// that is the run's, not the WAL's).
fn without_processing_time(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("ts_ms");
    }
    v
}

/// The commit LSN in an event id `source:LSN:ordinal`, as a number.
fn id_lsn(id: &Value) -> u64 {
    let lsn = id.as_str().unwrap().rsplit(':').nth(1).unwrap();
    let (hi, lo) = lsn.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}
