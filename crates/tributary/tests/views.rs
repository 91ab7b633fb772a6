//! Live views end to end: three services' databases, one overview view
//! over all three, read over the PostgreSQL protocol by tokio-postgres,
//! psql and psycopg, and compared after every transaction with the same
//! SQL run from scratch by PostgreSQL over the same rows (an oracle
//! database that gets every change too). Restarts (SIGTERM, `kill -9`)
//! bring the view back exact from the state store, without a snapshot.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::*;

/// The overview as a view: per customer, what each service holds.
pub(crate) const OVERVIEW: &str = "SELECT customer_id, sum(cash) AS cash, sum(stocks) AS stocks, \
     sum(deposits) AS deposits, sum(cash + stocks + deposits) AS total, count(*) AS holdings \
     FROM (SELECT customer_id, balance AS cash, 0 AS stocks, 0 AS deposits FROM cash.public.accounts \
     UNION ALL SELECT customer_id, 0, qty * price, 0 FROM stocks.public.positions \
     UNION ALL SELECT customer_id, 0, 0, principal FROM deposits.public.certificates) holdings \
     GROUP BY customer_id";

/// The three services: database, table, its columns' DDL.
const SERVICES: [(&str, &str, &str); 3] = [
    (
        "cash",
        "accounts",
        "id int PRIMARY KEY, customer_id int NOT NULL, balance numeric(14,2) NOT NULL",
    ),
    (
        "stocks",
        "positions",
        "id int PRIMARY KEY, customer_id int NOT NULL, symbol text NOT NULL, \
         qty int NOT NULL, price numeric(12,4) NOT NULL",
    ),
    (
        "deposits",
        "certificates",
        "id int PRIMARY KEY, customer_id int NOT NULL, principal numeric(14,2) NOT NULL",
    ),
];

/// A cluster for the view tests: with synchronous_commit=off (the test
/// kit's) the WAL waits for the WAL writer's next round before a walsender
/// sends it, 200 ms by default, which would be every step's latency.
pub(crate) fn fast_cluster() -> PgCluster {
    PgCluster::start_with(&[("wal_writer_delay", "5ms")])
}

/// The databases: one per service and the oracle, which has each
/// service's table in a schema named after it.
pub(crate) struct Scenario {
    pub(crate) rt: tokio::runtime::Runtime,
    services: Vec<Client>,
    oracle: Client,
    /// Per service, the ids its table holds.
    ids: Vec<Vec<i32>>,
    next_id: i32,
    rng: fastrand::Rng,
}

impl Scenario {
    pub(crate) fn start(pg: &PgCluster, seed: u64) -> Self {
        let rt = runtime();
        let oracle = rt.block_on(pg.create_db("oracle"));
        let mut services = Vec::new();
        for (db, table, columns) in SERVICES {
            let client = rt.block_on(pg.create_db(db));
            rt.block_on(client.batch_execute(&format!("CREATE TABLE {table} ({columns})")))
                .unwrap();
            rt.block_on(oracle.batch_execute(&format!(
                "CREATE SCHEMA {db}; CREATE TABLE {db}.{table} ({columns})"
            )))
            .unwrap();
            services.push(client);
        }
        Self {
            rt,
            services,
            oracle,
            ids: vec![Vec::new(); 3],
            next_id: 1,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// One random transaction on one service, run there and in the oracle.
    pub(crate) fn step(&mut self) -> String {
        let service = self.rng.usize(..3);
        let statements = 1 + self.rng.usize(..3);
        let mut sql = Vec::new();
        for _ in 0..statements {
            sql.push(self.statement(service));
        }
        let tx = format!("BEGIN;{};COMMIT;", sql.join(";"));
        let (db, table, _) = SERVICES[service];
        self.rt
            .block_on(self.services[service].batch_execute(&tx.replace("{t}", table)))
            .unwrap();
        self.rt
            .block_on(
                self.oracle
                    .batch_execute(&tx.replace("{t}", &format!("{db}.{table}"))),
            )
            .unwrap();
        format!("{db}: {tx}")
    }

    fn statement(&mut self, service: usize) -> String {
        let customer = self.rng.i32(1..=60);
        let money =
            |rng: &mut fastrand::Rng| format!("{}.{:02}", rng.u32(..100_000), rng.u32(..100));
        let ids = &mut self.ids[service];
        let existing = (!ids.is_empty()).then(|| ids[self.rng.usize(..ids.len())]);
        match (self.rng.u8(..10), existing) {
            (0..=4, _) | (_, None) => {
                let id = self.next_id;
                self.next_id += 1;
                ids.push(id);
                match service {
                    0 => format!(
                        "INSERT INTO {{t}} VALUES ({id}, {customer}, {})",
                        money(&mut self.rng)
                    ),
                    1 => format!(
                        "INSERT INTO {{t}} VALUES ({id}, {customer}, 'S{}', {}, {}.{:04})",
                        self.rng.u8(..20),
                        self.rng.i32(1..1000),
                        self.rng.u32(..500),
                        self.rng.u32(..10_000)
                    ),
                    _ => format!(
                        "INSERT INTO {{t}} VALUES ({id}, {customer}, {})",
                        money(&mut self.rng)
                    ),
                }
            }
            (5..=6, Some(id)) => match service {
                0 => format!(
                    "UPDATE {{t}} SET balance = {} WHERE id = {id}",
                    money(&mut self.rng)
                ),
                1 => format!(
                    "UPDATE {{t}} SET qty = {}, price = price + 1.0001 WHERE id = {id}",
                    self.rng.i32(1..1000)
                ),
                _ => format!("UPDATE {{t}} SET principal = principal * 2 WHERE id = {id}"),
            },
            // The row moves to another customer: two groups change.
            (7, Some(id)) => format!("UPDATE {{t}} SET customer_id = {customer} WHERE id = {id}"),
            // The key changes.
            (8, Some(id)) => {
                let new = self.next_id;
                self.next_id += 1;
                ids.retain(|&i| i != id);
                ids.push(new);
                format!("UPDATE {{t}} SET id = {new} WHERE id = {id}")
            }
            (_, Some(id)) => {
                ids.retain(|&i| i != id);
                format!("DELETE FROM {{t}} WHERE id = {id}")
            }
        }
    }

    /// The overview computed from scratch by PostgreSQL, as text rows in
    /// customer order.
    pub(crate) fn expected(&self) -> Vec<Vec<Option<String>>> {
        let sql = format!("{} ORDER BY customer_id", OVERVIEW.replace(".public.", "."));
        text_rows(&self.rt, &self.oracle, &sql)
    }
}

pub(crate) fn text_rows(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    sql: &str,
) -> Vec<Vec<Option<String>>> {
    rt.block_on(client.simple_query(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn views_config(dir: &std::path::Path, pg: &PgCluster, port: u16) -> String {
    views_config_with(dir, pg, port, &[("customer_overview", OVERVIEW)])
}

/// A config with the three services as sources and these views.
pub(crate) fn views_config_with(
    dir: &std::path::Path,
    pg: &PgCluster,
    port: u16,
    views: &[(&str, &str)],
) -> String {
    let mut text = format!(
        "state_dir = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n",
        dir.join("state").display()
    );
    for (db, table, _) in SERVICES {
        text.push_str(&format!(
            "[[source]]\nname = \"{db}\"\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"public.{table}\"]\n\n",
            pg.url(db)
        ));
    }
    for (name, sql) in views {
        text.push_str(&format!(
            "[[view]]\nname = \"{name}\"\nsql = \"\"\"{sql}\"\"\"\n"
        ));
    }
    text
}

/// A connection to the view server, retried while it starts.
pub(crate) fn connect(rt: &tokio::runtime::Runtime, t: &mut Tributary, port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("host=127.0.0.1 port={port} user=app dbname=tributary");
        match rt.block_on(tokio_postgres::connect(&url, NoTls)) {
            Ok((client, conn)) => {
                rt.spawn(async move {
                    let _ = conn.await;
                });
                return client;
            }
            Err(e) => {
                if let Some(status) = t.try_exit() {
                    panic!("tributary exited ({status}):\n{}", t.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "no view server: {e}\n{}",
                    t.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Waits until the view read over the protocol equals the oracle's result.
fn assert_view_converges(s: &Scenario, view: &Client, t: &Tributary, after: &str) {
    let want = s.expected();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = text_rows(
            &s.rt,
            view,
            "SELECT * FROM customer_overview ORDER BY customer_id",
        );
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {after}\nview:   {got:?}\noracle: {want:?}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `numeric` in PostgreSQL's binary format, as its text (so the binary
/// encoding is checked against PostgreSQL's own text output).
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| u16::from_be_bytes([raw[2 * i], raw[2 * i + 1]]);
        let (n, weight, sign, scale) =
            (word(0) as usize, word(1) as i16, word(2), word(3) as usize);
        let digits: Vec<u16> = (0..n).map(|i| word(4 + i)).collect();
        let mut whole = String::new();
        for w in 0..=weight.max(0) {
            let d = digits.get(w as usize).copied().unwrap_or(0);
            whole.push_str(&if whole.is_empty() {
                d.to_string()
            } else {
                format!("{d:04}")
            });
        }
        if weight < 0 {
            whole = "0".into();
        }
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < scale {
            let d = if i < 0 {
                0
            } else {
                digits.get(i as usize).copied().unwrap_or(0)
            };
            fraction.push_str(&format!("{d:04}"));
            i += 1;
        }
        fraction.truncate(scale);
        let sign = if sign == 0x4000 { "-" } else { "" };
        Ok(Numeric(if scale > 0 {
            format!("{sign}{whole}.{fraction}")
        } else {
            format!("{sign}{whole}")
        }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// Keyset pages over the extended protocol (binary results, a typed
/// parameter): every page, concatenated, is the whole overview.
fn pages_over_extended_protocol(
    rt: &tokio::runtime::Runtime,
    view: &Client,
) -> Vec<Vec<Option<String>>> {
    let page = rt
        .block_on(view.prepare(
            "SELECT customer_id, cash, stocks, deposits, total, holdings FROM customer_overview \
             WHERE customer_id > $1 ORDER BY customer_id LIMIT 20",
        ))
        .unwrap();
    assert_eq!(page.params(), &[Type::INT4]);
    let mut all = Vec::new();
    let mut after = 0i32;
    loop {
        let rows = rt.block_on(view.query(&page, &[&after])).unwrap();
        assert!(rows.len() <= 20);
        for row in &rows {
            let numeric = |i: usize| row.get::<_, Option<Numeric>>(i).map(|n| n.0);
            all.push(vec![
                Some(row.get::<_, i32>(0).to_string()),
                numeric(1),
                numeric(2),
                numeric(3),
                numeric(4),
                Some(row.get::<_, i64>(5).to_string()),
            ]);
        }
        match rows.last() {
            Some(last) if rows.len() == 20 => after = last.get(0),
            _ => return all,
        }
    }
}

fn psql(port: u16, args: &[&str]) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "app",
            "-d",
            "tributary",
            "-X",
        ])
        .args(args)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The overview read with psql 20 rows at a time (OFFSET pages), as rows
/// of `|`-separated text.
fn pages_with_psql(port: u16, rows: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for offset in (0..rows.max(1)).step_by(20) {
        let sql = format!(
            "SELECT * FROM customer_overview ORDER BY customer_id LIMIT 20 OFFSET {offset}"
        );
        lines.extend(psql(port, &["-At", "-c", &sql]).lines().map(str::to_owned));
    }
    lines
}

/// The overview read with psycopg, keyset page by page, as `|`-separated
/// text (psycopg's own conversion of each value, printed with `str`).
fn pages_with_psycopg(port: u16) -> Vec<String> {
    let script = format!(
        r#"
import psycopg
with psycopg.connect("host=127.0.0.1 port={port} user=app dbname=tributary") as conn:
    after = 0
    while True:
        rows = conn.execute("SELECT * FROM customer_overview WHERE customer_id > %s ORDER BY customer_id LIMIT 20", (after,)).fetchall()
        for r in rows:
            print("|".join(str(v) for v in r))
        if len(rows) < 20:
            break
        after = rows[-1][0]
"#
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "psycopg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn joined(rows: &[Vec<Option<String>>]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Views over the three sources that exercise every operator kind: outer
/// joins across sources (NULL padding), CASE/COALESCE, avg and DISTINCT
/// aggregates, numeric division and rounding, casts and `||`, UNION.
const OPERATOR_VIEWS: &[(&str, &str)] = &[
    ("overview", OVERVIEW),
    (
        "cash_stats",
        "SELECT customer_id, count(*) AS accounts, sum(balance) AS cash, avg(balance) AS mean, \
         min(balance) AS low FROM cash.public.accounts GROUP BY customer_id",
    ),
    (
        "cash_vs_stocks",
        "SELECT c.customer_id AS cid, s.customer_id AS sid, c.cash, s.stocks \
         FROM (SELECT customer_id, sum(balance) AS cash FROM cash.public.accounts GROUP BY customer_id) c \
         FULL JOIN (SELECT customer_id, sum(qty * price) AS stocks FROM stocks.public.positions \
         GROUP BY customer_id) s ON c.customer_id = s.customer_id",
    ),
    (
        "symbols",
        "SELECT symbol, count(DISTINCT customer_id) AS holders, sum(qty) AS shares, \
         max(price) AS top FROM stocks.public.positions GROUP BY symbol HAVING count(*) > 1",
    ),
    (
        "big_deposits",
        "SELECT a.id, d.id AS certificate, CASE WHEN d.principal IS NULL THEN 'none' \
         WHEN d.principal > a.balance THEN 'deposit' ELSE 'cash' END AS larger, \
         COALESCE(d.principal, 0) - a.balance AS gap FROM cash.public.accounts a \
         LEFT JOIN deposits.public.certificates d ON d.customer_id = a.customer_id \
         AND d.principal > 60000",
    ),
    (
        "thirds",
        "SELECT customer_id, round(sum(balance) / 3, 2) AS third, sum(balance)::bigint AS whole, \
         lower('C' || customer_id::text) AS tag, NULLIF(count(*), 1) AS many \
         FROM cash.public.accounts GROUP BY customer_id",
    ),
    (
        "invested",
        "SELECT customer_id FROM stocks.public.positions \
         UNION SELECT customer_id FROM deposits.public.certificates",
    ),
];

/// Waits until view `name`, read over the protocol, holds the rows
/// PostgreSQL computes for `sql` over the oracle (in any order).
fn converges(s: &Scenario, view: &Client, t: &Tributary, name: &str, sql: &str, after: &str) {
    let mut want = text_rows(&s.rt, &s.oracle, &sql.replace(".public.", "."));
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut got = text_rows(&s.rt, view, &format!("SELECT * FROM {name}"));
        got.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "view {name}, after {after}\nview:   {got:?}\noracle: {want:?}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A view whose SQL changed between runs is rebuilt from the rows kept in
/// the state store: exact for the new SQL, no source read again.
#[test]
fn a_view_whose_sql_changed_is_rebuilt_from_the_kept_rows() {
    const CHANGED: &str = "SELECT customer_id, count(*) AS accounts, max(balance) AS top, \
         avg(balance) AS mean FROM cash.public.accounts WHERE balance > 100 GROUP BY customer_id";
    let pg = fast_cluster();
    let mut s = Scenario::start(&pg, 21);
    for _ in 0..40 {
        s.step();
    }
    let port = tributary_testkit::free_port();
    let dir = workdir();
    let config = |sql| views_config_with(dir.path(), &pg, port, &[("v", sql)]);
    let mut t = Tributary::start(dir.path(), &config(OVERVIEW));
    let view = connect(&s.rt, &mut t, port);
    converges(&s, &view, &t, "v", OVERVIEW, "the snapshot");
    assert!(t.terminate().success(), "{}", t.log());
    for _ in 0..10 {
        s.step();
    }
    std::fs::write(dir.path().join("tributary.toml"), config(CHANGED)).unwrap();
    t.restart();
    let view = connect(&s.rt, &mut t, port);
    converges(&s, &view, &t, "v", CHANGED, "the restart with new SQL");
    let after = s.step();
    converges(&s, &view, &t, "v", CHANGED, &after);
    let log = t.log();
    assert_eq!(
        log.matches("snapshot finished; streaming").count(),
        3,
        "a source was read again:\n{log}"
    );
}

/// Every view above, read over the protocol after every one of 2,000
/// random transactions on three sources, equals PostgreSQL's result of
/// the same SQL over the same rows.
#[test]
fn every_operator_over_three_sources_equals_postgresql_over_the_wire() {
    const STEPS: usize = 2000;
    let pg = fast_cluster();
    let mut s = Scenario::start(&pg, 7);
    for _ in 0..30 {
        s.step();
    }
    let port = tributary_testkit::free_port();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &views_config_with(dir.path(), &pg, port, OPERATOR_VIEWS),
    );
    let view = connect(&s.rt, &mut t, port);
    let mut compared = 0;
    for step in 0..STEPS {
        let after = if step == 0 {
            "the snapshot".into()
        } else {
            s.step()
        };
        for (name, sql) in OPERATOR_VIEWS {
            converges(&s, &view, &t, name, sql, &format!("step {step}, {after}"));
            compared += 1;
        }
    }
    assert_eq!(compared, STEPS * OPERATOR_VIEWS.len());
    assert!(
        !t.log().contains("error"),
        "the run logged an error:\n{}",
        t.log()
    );
}

/// The asset scenario: a random mix of changes over three databases, the
/// view compared with the oracle after every transaction, read page by
/// page by three clients, through a SIGTERM and a `kill -9`.
#[test]
fn asset_overview_over_three_databases_stays_exact_through_restarts() {
    let pg = fast_cluster();
    let mut s = Scenario::start(&pg, 15);
    // Rows before the first start: the snapshot feeds them.
    for _ in 0..40 {
        s.step();
    }
    let port = tributary_testkit::free_port();
    let dir = workdir();
    let mut t = Tributary::start(dir.path(), &views_config(dir.path(), &pg, port));
    let mut view = connect(&s.rt, &mut t, port);
    assert_view_converges(&s, &view, &t, "the snapshot");

    for phase in 0..3 {
        for _ in 0..60 {
            let after = s.step();
            assert_view_converges(&s, &view, &t, &after);
        }
        let want = s.expected();
        assert_eq!(
            pages_over_extended_protocol(&s.rt, &view),
            want,
            "keyset pages"
        );
        assert_eq!(
            pages_with_psql(port, want.len()),
            joined(&want),
            "psql pages"
        );
        if phase == 0 {
            assert_eq!(pages_with_psycopg(port), joined(&want), "psycopg pages");
        }
        // Changes while it is down are caught up after the restart.
        match phase {
            0 => {
                assert!(t.terminate().success(), "{}", t.log());
            }
            1 => t.kill9(),
            _ => break,
        }
        for _ in 0..10 {
            s.step();
        }
        t.restart();
        view = connect(&s.rt, &mut t, port);
        assert_view_converges(&s, &view, &t, "the restart");
        let log = t.log();
        assert!(
            log.contains("views rehydrated from the state store"),
            "{log}"
        );
    }
    // No table was read again after the first snapshot.
    let log = t.log();
    assert_eq!(
        log.matches("snapshot finished; streaming").count(),
        3,
        "one snapshot per source, never again:\n{log}"
    );

    // psql lists the view and describes its columns.
    let list = psql(port, &["-c", "\\d"]);
    assert!(list.contains("customer_overview | view"), "{list}");
    let described = psql(port, &["-c", "\\d customer_overview"]);
    assert!(
        described.contains("View \"public.customer_overview\""),
        "{described}"
    );
    // The columns in the view's order, with their types.
    let columns: Vec<String> = described
        .lines()
        .filter(|l| l.contains(" | "))
        .skip(1)
        .map(|l| {
            l.split('|')
                .take(2)
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        columns,
        [
            "customer_id integer",
            "cash numeric",
            "stocks numeric",
            "deposits numeric",
            "total numeric",
            "holdings bigint"
        ],
        "{described}"
    );
    // What the server cannot answer is an error with a SQLSTATE.
    let err =
        s.rt.block_on(view.simple_query(
            "SELECT customer_id, count(*) FROM customer_overview GROUP BY customer_id",
        ))
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("0A000"), "{err}");
    let err =
        s.rt.block_on(view.simple_query("INSERT INTO customer_overview VALUES (1)"))
            .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");
    let err =
        s.rt.block_on(view.simple_query("SELECT * FROM nope"))
            .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
}

/// A crash after the views showed a step and before its rows were kept:
/// the restart shows the last kept state, then catches up; nothing is
/// lost or applied twice.
#[test]
fn a_crash_between_showing_a_step_and_keeping_it_loses_nothing() {
    let pg = fast_cluster();
    let mut s = Scenario::start(&pg, 23);
    for _ in 0..20 {
        s.step();
    }
    let port = tributary_testkit::free_port();
    let dir = workdir();
    // Pass 1 is the snapshot's step; the crash comes at a streamed one.
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &views_config(dir.path(), &pg, port),
        Some("views.after_apply:6"),
    );
    let view = connect(&s.rt, &mut t, port);
    let mut steps = 0;
    while t.try_exit().is_none() {
        s.step();
        steps += 1;
        assert!(steps < 500, "the fault did not fire:\n{}", t.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(view);
    assert!(
        t.log().contains("fault injected at views.after_apply"),
        "{}",
        t.log()
    );
    for _ in 0..5 {
        s.step();
    }
    t.restart();
    let view = connect(&s.rt, &mut t, port);
    assert_view_converges(&s, &view, &t, "the restart after the crash");
    for _ in 0..30 {
        let after = s.step();
        assert_view_converges(&s, &view, &t, &after);
    }
    assert!(t.terminate().success(), "{}", t.log());
}

/// A view the engine cannot evaluate exactly stops the start with its
/// construct and position (exit 2: a config problem).
#[test]
fn unsupported_view_sql_is_refused_at_start() {
    let pg = fast_cluster();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("cash"));
    rt.block_on(db.batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, customer_id int)"))
        .unwrap();
    let dir = workdir();
    let text = format!(
        "state_dir = \"{}\"\n[[source]]\nname = \"cash\"\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"public.accounts\"]\n\
         [[view]]\nname = \"v\"\nsql = \"SELECT a.id FROM cash.public.accounts a JOIN cash.public.accounts b USING (id)\"\n",
        dir.path().join("state").display(),
        pg.url("cash")
    );
    let out = cli("run", dir.path(), &text, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_contains_all(
        &out.stderr,
        &[
            "view \"v\": a join without ON (USING, NATURAL) is not supported in views",
            "detail: at line 1, column",
            "hint: ",
        ],
    );
}
