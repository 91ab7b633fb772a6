//! NATS JetStream subjects as sources, against a real `nats-server -js`:
//! events (coupons paid, payments made) published by a client become rows
//! of declared tables, and views join and aggregate them with a
//! PostgreSQL database's rows. After every step each view equals the same
//! SQL run from scratch by PostgreSQL over an oracle database that gets
//! every change too. `kill -9` of Tributary and a restart of the NATS
//! server mid-stream neither lose an event nor apply one twice; a message
//! that is not a row stops the source, or goes to the dead-letter file.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::HeaderMap;
use tributary_testkit::{free_port, NatsServer};

use crate::support::*;
use crate::views::{connect, fast_cluster, text_rows};

/// Events on one stream: coupons (upserted by id) and payments (appended).
const STREAM: &str = "EVENTS";

const ACCOUNTS: &str =
    "id int PRIMARY KEY, customer_id int NOT NULL, balance numeric(14,2) NOT NULL";
const COUPONS: &str =
    "id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2) NOT NULL";
const PAYMENTS: &str = "_seq bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2) NOT NULL, note text";

/// The views: database rows and events on one timeline.
const VIEWS: [(&str, &str); 3] = [
    (
        "asset_overview",
        "SELECT customer_id, sum(cash) AS cash, sum(coupons) AS coupons, sum(paid) AS paid, \
         count(*) AS items FROM (\
           SELECT customer_id, balance AS cash, 0 AS coupons, 0 AS paid FROM cash.public.accounts \
           UNION ALL SELECT customer_id, 0, amount, 0 FROM coupons.public.coupons \
           UNION ALL SELECT customer_id, 0, 0, amount FROM payments.public.payments) x \
         GROUP BY customer_id",
    ),
    (
        "coupon_accounts",
        "SELECT a.id AS account, c.id AS coupon, a.balance + c.amount AS total \
         FROM cash.public.accounts a JOIN coupons.public.coupons c ON a.customer_id = c.customer_id",
    ),
    (
        "payment_log",
        "SELECT _seq, customer_id, amount, coalesce(note, '-') AS note FROM payments.public.payments \
         WHERE amount > 10",
    ),
];

fn nats_sources(nats: &NatsServer, on_error: &str) -> String {
    format!(
        r#"
[[source]]
name = "coupons"
type = "nats"
url = "{url}"
stream = "{STREAM}"
subject = "coupons.>"
mode = "upsert"
columns = ["id bigint not null", "customer_id integer not null", "amount numeric(12,2) not null"]
key = ["id"]
on_error = "{on_error}"

[[source]]
name = "payments"
type = "nats"
url = "{url}"
stream = "{STREAM}"
subject = "payments.>"
mode = "append"
columns = ["customer_id integer not null", "amount numeric(12,2) not null", "note text"]
on_error = "{on_error}"
"#,
        url = nats.url()
    )
}

fn config(dir: &std::path::Path, pg: &PgCluster, nats: &NatsServer, port: u16) -> String {
    let mut text = format!(
        "state_dir = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[source]]\nname = \"cash\"\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"public.accounts\"]\n",
        dir.join("state").display(),
        pg.url("cash")
    );
    text.push_str(&nats_sources(nats, "dead_letter"));
    for (name, sql) in VIEWS {
        text.push_str(&format!(
            "\n[[view]]\nname = \"{name}\"\nsql = \"\"\"{sql}\"\"\"\n"
        ));
    }
    text
}

/// A JetStream client that publishes and waits for each message's ack.
struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    fn connect(rt: &tokio::runtime::Runtime, nats: &NatsServer) -> Self {
        let js = rt.block_on(async {
            let client = async_nats::connect(nats.url()).await.unwrap();
            jetstream::new(client)
        });
        Publisher { js }
    }

    fn create_stream(&self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.js.create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec!["coupons.>".into(), "payments.>".into()],
            ..Default::default()
        }))
        .unwrap();
    }

    /// Publishes until JetStream stores it (retried while the server is
    /// away; the message id makes a retry land once); its stream sequence.
    fn publish(
        &self,
        rt: &tokio::runtime::Runtime,
        subject: &str,
        id: &str,
        headers: &[(&str, &str)],
        payload: &str,
    ) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut map = HeaderMap::new();
            map.insert("Nats-Msg-Id", id);
            for (k, v) in headers {
                map.insert(*k, *v);
            }
            let sent = rt.block_on(async {
                let ack = self
                    .js
                    .publish_with_headers(subject.to_owned(), map, payload.to_owned().into())
                    .await?;
                tokio::time::timeout(Duration::from_secs(2), ack)
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            });
            match sent {
                Ok(ack) => return ack.sequence,
                Err(e) => {
                    assert!(Instant::now() < deadline, "could not publish {id}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// The oracle: the same tables in schemas named after the sources.
fn oracle(rt: &tokio::runtime::Runtime, pg: &PgCluster) -> tokio_postgres::Client {
    let oracle = rt.block_on(pg.create_db("oracle"));
    rt.block_on(oracle.batch_execute(&format!(
        "CREATE SCHEMA cash; CREATE TABLE cash.accounts ({ACCOUNTS});
         CREATE SCHEMA coupons; CREATE TABLE coupons.coupons ({COUPONS});
         CREATE SCHEMA payments; CREATE TABLE payments.payments ({PAYMENTS});"
    )))
    .unwrap();
    oracle
}

/// Waits until every view read over the protocol equals the oracle's
/// result of its SQL.
fn assert_views_converge(
    rt: &tokio::runtime::Runtime,
    view: &tokio_postgres::Client,
    oracle: &tokio_postgres::Client,
    t: &Tributary,
    after: &str,
) {
    for (name, sql) in VIEWS {
        let want = text_rows(
            rt,
            oracle,
            &format!(
                "SELECT * FROM ({}) v ORDER BY 1, 2, 3",
                sql.replace(".public.", ".")
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = text_rows(rt, view, &format!("SELECT * FROM {name} ORDER BY 1, 2, 3"));
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} after {after}\nview:   {got:?}\noracle: {want:?}\n{}",
                t.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn money(rng: &mut fastrand::Rng) -> String {
    format!("{}.{:03}", rng.u32(..5_000), rng.u32(..1000))
}

#[test]
fn events_on_nats_and_database_rows_feed_one_view_equal_to_postgresql() {
    let pg = fast_cluster();
    let nats = NatsServer::start();
    let rt = runtime();
    let cash = rt.block_on(pg.create_db("cash"));
    rt.block_on(cash.batch_execute(&format!("CREATE TABLE accounts ({ACCOUNTS})")))
        .unwrap();
    let oracle = oracle(&rt, &pg);
    let publisher = Publisher::connect(&rt, &nats);
    publisher.create_stream(&rt);
    let dir = workdir();
    let port = free_port();
    let mut t = Tributary::start(dir.path(), &config(dir.path(), &pg, &nats, port));
    let view = connect(&rt, &mut t, port);

    let mut rng = fastrand::Rng::with_seed(16);
    let (mut accounts, mut coupons) = (Vec::<i32>::new(), Vec::<i64>::new());
    let (mut next_account, mut next_coupon) = (1, 1);
    let mut poison = 0;
    for step in 0..300 {
        let customer = rng.i32(1..=25);
        let msg_id = format!("m{step}");
        let what = match rng.u8(..10) {
            0..=3 => {
                // A transaction in the cash service's database.
                let sql = match accounts.len() {
                    n if n == 0 || rng.bool() => {
                        accounts.push(next_account);
                        next_account += 1;
                        format!(
                            "INSERT INTO {{t}} VALUES ({}, {customer}, {}.{:02})",
                            next_account - 1,
                            rng.u32(..9000),
                            rng.u32(..100)
                        )
                    }
                    n => {
                        let id = accounts[rng.usize(..n)];
                        if rng.u8(..3) == 0 {
                            accounts.retain(|&a| a != id);
                            format!("DELETE FROM {{t}} WHERE id = {id}")
                        } else {
                            format!("UPDATE {{t}} SET balance = balance + 1.25, customer_id = {customer} WHERE id = {id}")
                        }
                    }
                };
                rt.block_on(cash.batch_execute(&sql.replace("{t}", "accounts")))
                    .unwrap();
                rt.block_on(oracle.batch_execute(&sql.replace("{t}", "cash.accounts")))
                    .unwrap();
                sql
            }
            4..=6 => {
                // A coupon paid, or its amount corrected: the latest wins.
                let id = match coupons.len() {
                    n if n > 0 && rng.u8(..3) == 0 => coupons[rng.usize(..n)],
                    _ => {
                        coupons.push(next_coupon);
                        next_coupon += 1;
                        next_coupon - 1
                    }
                };
                let amount = money(&mut rng);
                let payload = format!(
                    r#"{{"id": {id}, "customer_id": {customer}, "amount": "{amount}", "extra": [1]}}"#
                );
                publisher.publish(&rt, "coupons.paid", &msg_id, &[], &payload);
                rt.block_on(oracle.batch_execute(&format!(
                    "INSERT INTO coupons.coupons VALUES ({id}, {customer}, {amount}) \
                     ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, amount = EXCLUDED.amount"
                )))
                .unwrap();
                payload
            }
            7 if !coupons.is_empty() => {
                // A coupon withdrawn: an empty message with its key.
                let id = coupons.remove(rng.usize(..coupons.len()));
                let key = format!(r#"{{"id": {id}}}"#);
                publisher.publish(
                    &rt,
                    "coupons.withdrawn",
                    &msg_id,
                    &[("Tributary-Key", &key)],
                    "",
                );
                rt.block_on(
                    oracle.batch_execute(&format!("DELETE FROM coupons.coupons WHERE id = {id}")),
                )
                .unwrap();
                format!("delete {key}")
            }
            8 => {
                // A payment: every message a new row.
                let amount = money(&mut rng);
                let note = if rng.bool() {
                    "null".to_owned()
                } else {
                    format!("\"n{step}\"")
                };
                let payload =
                    format!(r#"{{"customer_id": {customer}, "amount": {amount}, "note": {note}}}"#);
                let seq = publisher.publish(&rt, "payments.made", &msg_id, &[], &payload);
                let note_sql = if note == "null" {
                    "NULL".to_owned()
                } else {
                    format!("'n{step}'")
                };
                rt.block_on(oracle.batch_execute(&format!(
                    "INSERT INTO payments.payments VALUES ({seq}, {customer}, {amount}, {note_sql})"
                )))
                .unwrap();
                payload
            }
            _ => {
                // Not a row of either table: set aside, nothing changes.
                poison += 1;
                let (subject, payload) = if rng.bool() {
                    (
                        "coupons.paid",
                        r#"{"id": "seven", "customer_id": 1, "amount": 1}"#,
                    )
                } else {
                    ("payments.made", r#"{"customer_id": 1}"#)
                };
                publisher.publish(&rt, subject, &msg_id, &[], payload);
                format!("poison {payload}")
            }
        };
        assert_views_converge(&rt, &view, &oracle, &t, &format!("step {step}: {what}"));
    }
    // Not vacuous: every view holds rows of every source it reads.
    let rows = |sql: &str| text_rows(&rt, &view, sql).len();
    assert!(rows("SELECT * FROM coupon_accounts") > 10);
    assert!(rows("SELECT * FROM payment_log") > 10);
    assert!(
        rows("SELECT * FROM asset_overview WHERE coupons <> 0 AND cash <> 0 AND paid <> 0") > 3
    );
    let letters: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("state/dead-letter-coupons.jsonl"))
            .unwrap_or_default()
            .lines()
            .chain(
                std::fs::read_to_string(dir.path().join("state/dead-letter-payments.jsonl"))
                    .unwrap_or_default()
                    .lines(),
            )
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert!(
        poison > 10,
        "the seed published only {poison} poison messages"
    );
    assert_eq!(
        letters.len(),
        poison,
        "every refused message is a dead letter"
    );
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason == "field \"id\": a string is not a number"
                || reason == "field \"amount\" is missing",
            "{letter}"
        );
        assert!(
            letter["seq"].as_u64().unwrap() > 0 && letter["payload"].is_string(),
            "{letter}"
        );
    }
    assert!(t.terminate().success(), "{}", t.log());
}

/// Per customer: (payments, their sum).
pub(crate) type Totals = std::collections::BTreeMap<i32, (u64, i64)>;

fn totals_config(dir: &std::path::Path, nats: &NatsServer, port: u16) -> String {
    format!(
        r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[[source]]
name = "payments"
type = "nats"
url = "{url}"
stream = "{STREAM}"
subject = "payments.>"
mode = "append"
columns = ["customer_id integer not null", "amount bigint not null"]

[[view]]
name = "totals"
sql = "SELECT customer_id, count(*) AS n, sum(amount) AS total FROM payments.public.payments GROUP BY customer_id"

[[sink]]
name = "archive"
type = "file"
path = "{events}"
"#,
        state = dir.join("state").display(),
        url = nats.url(),
        events = dir.join("events.jsonl").display(),
    )
}

/// Waits until the view `totals` equals `expected`, failing as soon as it
/// holds more rows than were sent (a message applied twice).
pub(crate) fn wait_for_totals(
    rt: &tokio::runtime::Runtime,
    port: u16,
    expected: &Totals,
    t: &Tributary,
) {
    let sent: u64 = expected.values().map(|v| v.0).sum();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = read_totals(rt, port);
        if got.as_ref() == Some(expected) {
            return;
        }
        if let Some(got) = &got {
            let n: u64 = got.values().map(|v| v.0).sum();
            assert!(
                n <= sent,
                "a message was applied twice: {n} rows of {sent}\n{}",
                t.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "view {got:?}\nwanted {expected:?}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The view `totals` as totals, or `None` while the server is not up.
pub(crate) fn read_totals(rt: &tokio::runtime::Runtime, port: u16) -> Option<Totals> {
    let url = format!("host=127.0.0.1 port={port} user=app dbname=tributary");
    let (client, conn) = rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .ok()?;
    rt.spawn(async move {
        let _ = conn.await;
    });
    let rows = rt
        .block_on(client.simple_query("SELECT * FROM totals"))
        .ok()?;
    Some(
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap().parse().unwrap(),
                    (
                        r.get(1).unwrap().parse().unwrap(),
                        r.get(2).unwrap().parse().unwrap(),
                    ),
                )),
                _ => None,
            })
            .collect(),
    )
}

#[test]
fn kill_9_and_a_broker_restart_neither_lose_nor_repeat_an_event() {
    const EVENTS: usize = 3000;
    let mut nats = NatsServer::start();
    let rt = runtime();
    Publisher::connect(&rt, &nats).create_stream(&rt);
    let dir = workdir();
    let port = free_port();
    let mut t = Tributary::start(dir.path(), &totals_config(dir.path(), &nats, port));

    // Published by a client of its own while Tributary crashes and the
    // server restarts; each message once (its id dedups a retry).
    let url = nats.url();
    let publisher = std::thread::spawn(move || {
        let rt = runtime();
        let js = rt.block_on(async {
            let options = async_nats::ConnectOptions::new().retry_on_initial_connect();
            jetstream::new(options.connect(url).await.unwrap())
        });
        let publisher = Publisher { js };
        let mut rng = fastrand::Rng::with_seed(9);
        let mut expected = Totals::new();
        for i in 0..EVENTS {
            let (customer, amount) = (rng.i32(1..=40), rng.i64(-1000..100_000));
            let payload = format!(r#"{{"customer_id": {customer}, "amount": {amount}}}"#);
            publisher.publish(&rt, "payments.made", &format!("p{i}"), &[], &payload);
            let e = expected.entry(customer).or_default();
            e.0 += 1;
            e.1 += amount;
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(12));
            }
        }
        expected
    });
    let seed = std::env::var("TRIBUTARY_FAULT_SEED").map_or(3, |s| s.parse().unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(rng.u64(300..900)));
        if round == 2 {
            nats.restart();
        } else {
            t.kill9();
            t.restart();
        }
    }
    let expected = publisher.join().unwrap();
    assert!(!t.log().contains("panicked"), "{}", t.log());
    wait_for_totals(&rt, port, &expected, &t);
    // Every message reached the file sink under its stable id.
    let ids: std::collections::HashSet<String> = read_records(&dir.path().join("events.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), EVENTS, "distinct event ids in the file sink");

    // A clean stop acknowledges everything; the view comes back the same.
    assert!(t.terminate().success(), "{}", t.log());
    let acked = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let stream = jetstream::new(client).get_stream(STREAM).await.unwrap();
        let mut consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>("tributary_payments")
            .await
            .unwrap();
        consumer.info().await.unwrap().ack_floor.stream_sequence
    });
    assert_eq!(
        acked, EVENTS as u64,
        "the consumer's ack floor after a clean stop"
    );
    t.restart();
    let view = connect(&rt, &mut t, port);
    drop(view);
    assert_eq!(
        read_totals(&rt, port).as_ref(),
        Some(&expected),
        "after the restart"
    );
    assert!(t.terminate().success(), "{}", t.log());
}

fn payments_to_file(dir: &std::path::Path, nats: &NatsServer, on_error: &str) -> String {
    format!(
        r#"state_dir = "{state}"

[[source]]
name = "payments"
type = "nats"
url = "{url}"
stream = "{STREAM}"
subject = "payments.>"
mode = "append"
columns = ["customer_id integer not null", "amount numeric(12,2) not null"]
on_error = "{on_error}"

[[sink]]
name = "archive"
type = "file"
path = "{events}"
"#,
        state = dir.join("state").display(),
        url = nats.url(),
        events = dir.join("events.jsonl").display(),
    )
}

#[test]
fn a_message_that_is_not_a_row_stops_the_source_until_it_is_set_aside() {
    let nats = NatsServer::start();
    let rt = runtime();
    let publisher = Publisher::connect(&rt, &nats);
    let dir = workdir();
    // Before the stream exists, check says so.
    let out = cli(
        "check",
        dir.path(),
        &payments_to_file(dir.path(), &nats, "stop"),
        &[],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_contains_all(
        &out.stdout,
        &[
            "JetStream stream \"EVENTS\" does not exist",
            "hint: create the stream",
        ],
    );
    publisher.create_stream(&rt);
    let out = cli(
        "check",
        dir.path(),
        &payments_to_file(dir.path(), &nats, "stop"),
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_contains_all(
        &out.stdout,
        &[
            "JetStream stream \"EVENTS\"",
            "reading subject \"payments.>\"",
            "durable consumer \"tributary_payments\" does not exist yet",
        ],
    );

    publisher.publish(
        &rt,
        "payments.made",
        "a",
        &[],
        r#"{"customer_id": 1, "amount": 5}"#,
    );
    publisher.publish(
        &rt,
        "payments.made",
        "b",
        &[],
        r#"{"customer_id": 2, "amount": "secret-amount"}"#,
    );
    publisher.publish(
        &rt,
        "payments.made",
        "c",
        &[],
        r#"{"customer_id": 3, "amount": 7.5}"#,
    );
    let mut t = Tributary::start(dir.path(), &payments_to_file(dir.path(), &nats, "stop"));
    let status = t.wait_exit(Duration::from_secs(30));
    let log = t.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_contains_all(
        &log,
        &[
            "message 2 on subject \"payments.made\" is not a row of public.payments: field \"amount\": not a decimal number",
            "hint: fix the message's producer; to set such messages aside and go on, set on_error = \"dead_letter\"",
        ],
    );
    assert!(!log.contains("secret-amount"), "a value was logged:\n{log}");
    let records = read_records(&dir.path().join("events.jsonl"));
    assert!(
        records.iter().all(|r| r["id"] == "payments:0/1:0"),
        "nothing past the refused message: {records:?}"
    );

    // Set aside: the source goes on, the message is in the dead-letter file.
    std::fs::write(
        dir.path().join("tributary.toml"),
        payments_to_file(dir.path(), &nats, "dead_letter"),
    )
    .unwrap();
    t.restart();
    let records = t.wait_for(2, Duration::from_secs(30));
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["payments:0/1:0", "payments:0/3:0"], "{}", t.log());
    let value = &records[1]["value"];
    assert_eq!(value["after"]["_seq"], 3);
    assert_eq!(value["after"]["amount"], "7.50");
    assert_eq!(value["op"], "c");
    assert_eq!(value["source"]["connector"], "nats");
    assert_eq!(value["source"]["db"], STREAM);
    assert_eq!(records[1]["key"]["_seq"], 3);
    let letters =
        std::fs::read_to_string(dir.path().join("state/dead-letter-payments.jsonl")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.trim()).unwrap();
    assert_eq!(letter["seq"], 2);
    assert_eq!(letter["subject"], "payments.made");
    assert_eq!(letter["reason"], "field \"amount\": not a decimal number");
    assert!(letter["payload"]
        .as_str()
        .unwrap()
        .contains("secret-amount"));
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn debezium_events_from_a_nats_sink_read_back_as_the_table_they_came_from() {
    let pg = fast_cluster();
    let nats = NatsServer::start();
    let rt = runtime();
    let cash = rt.block_on(pg.create_db("cash"));
    rt.block_on(cash.batch_execute(&format!("CREATE TABLE accounts ({ACCOUNTS})")))
        .unwrap();
    let dir = workdir();
    let port = free_port();
    // The cash table goes to NATS as Debezium events and comes back as
    // the table of a second source: a view over each must agree.
    let per_customer = |table: &str| {
        format!("SELECT customer_id, sum(balance) AS balance, count(*) AS n FROM {table} GROUP BY customer_id")
    };
    let text = format!(
        r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[[source]]
name = "cash"
type = "postgres"
url = "{pg}"
tables = ["public.accounts"]

[[sink]]
name = "bus"
type = "nats"
url = "{url}"
stream = "CDC"

[[source]]
name = "mirror"
type = "nats"
url = "{url}"
stream = "CDC"
subject = "cash.public.accounts"
format = "debezium"
table = "public.accounts"
columns = ["id integer not null", "customer_id integer not null", "balance numeric(14,2) not null"]
key = ["id"]

[[view]]
name = "direct"
sql = "{direct}"

[[view]]
name = "mirrored"
sql = "{mirrored}"
"#,
        state = dir.path().join("state").display(),
        pg = pg.url("cash"),
        url = nats.url(),
        direct = per_customer("cash.public.accounts"),
        mirrored = per_customer("mirror.public.accounts"),
    );
    let mut t = Tributary::start(dir.path(), &text);
    let view = connect(&rt, &mut t, port);
    let mut rng = fastrand::Rng::with_seed(18);
    let mut ids: Vec<i32> = Vec::new();
    let mut next = 1;
    for step in 0..120 {
        let customer = rng.i32(1..=12);
        let sql = match (rng.u8(..6), ids.is_empty()) {
            (0..=2, _) | (_, true) => {
                ids.push(next);
                next += 1;
                format!(
                    "INSERT INTO accounts VALUES ({}, {customer}, {}.{:02})",
                    next - 1,
                    rng.u32(..9000),
                    rng.u32(..100)
                )
            }
            (3, false) => {
                let id = ids[rng.usize(..ids.len())];
                format!("UPDATE accounts SET balance = balance * 2, customer_id = {customer} WHERE id = {id}")
            }
            (4, false) => {
                // The key changes: a delete and a create downstream.
                let i = rng.usize(..ids.len());
                let (old, new) = (ids[i], next);
                next += 1;
                ids[i] = new;
                format!("UPDATE accounts SET id = {new} WHERE id = {old}")
            }
            _ => {
                let id = ids.remove(rng.usize(..ids.len()));
                format!("DELETE FROM accounts WHERE id = {id}")
            }
        };
        rt.block_on(cash.batch_execute(&sql)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let direct = text_rows(&rt, &view, "SELECT * FROM direct ORDER BY customer_id");
            let mirrored = text_rows(&rt, &view, "SELECT * FROM mirrored ORDER BY customer_id");
            let want = text_rows(
                &rt,
                &cash,
                &format!("{} ORDER BY customer_id", per_customer("accounts")),
            );
            if direct == want && mirrored == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "step {step}: {sql}\nwant     {want:?}\ndirect   {direct:?}\nmirrored {mirrored:?}\n{}",
                t.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(text_rows(&rt, &view, "SELECT * FROM mirrored").len() > 5);
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_nats_source_reads_over_verified_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start_tls();
    let rt = runtime();
    let js = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(nats.ca_file())
            .require_tls(true)
            .connect(nats.url())
            .await
            .unwrap();
        jetstream::new(client)
    });
    let publisher = Publisher { js };
    publisher.create_stream(&rt);
    publisher.publish(
        &rt,
        "payments.made",
        "a",
        &[],
        r#"{"customer_id": 1, "amount": 5}"#,
    );
    let dir = workdir();
    let base = payments_to_file(dir.path(), &nats, "stop");
    // The server's certificate is not trusted without its CA.
    let untrusted = base.replace("mode = \"append\"", "mode = \"append\"\nrequire_tls = true");
    let out = cli("check", dir.path(), &untrusted, &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAIL  source \"payments\""),
        "{}",
        out.stdout
    );
    let trusted = base.replace(
        "mode = \"append\"",
        &format!(
            "mode = \"append\"\ntls_ca = \"{}\"",
            nats.ca_file().display()
        ),
    );
    let out = cli("check", dir.path(), &trusted, &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut t = Tributary::start(dir.path(), &trusted);
    let records = t.wait_for(1, Duration::from_secs(30));
    assert_eq!(records[0]["value"]["after"]["amount"], "5.00");
    assert!(t.terminate().success(), "{}", t.log());
}
