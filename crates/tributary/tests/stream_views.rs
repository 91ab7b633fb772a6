//! NATS JetStream subjects and database tables in one view, against a real
//! `nats-server -js`: events (coupons paid, payments made) published by a
//! client become rows of declared tables, and views join and aggregate them
//! with a PostgreSQL database's rows. After every step each view equals the
//! same SQL run from scratch by PostgreSQL over an oracle database that
//! gets every change too. A table sent to NATS as Debezium events by a NATS
//! sink reads back as the same table.

use std::time::{Duration, Instant};

use tributary_testkit::{free_port, NatsServer};

use crate::stream_support::{Publisher, STREAM};
use crate::support::*;
use crate::views::{connect, fast_cluster, text_rows};

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
