//! The oracle test of every operator: a seeded random stream of inserts,
//! updates (key changes included) and deletes, with NULLs, runs as real
//! transactions in a throwaway PostgreSQL and enters the engine as the
//! same changes; after every transaction each view must equal its SQL run
//! from scratch by PostgreSQL over the same rows.
//!
//! The plans are written out here as the planner will produce them for
//! the SQL beside each; the SQL itself is what PostgreSQL runs.

use std::collections::BTreeMap;

use tributary_testkit::PgCluster;
use tributary_views::sql::{self, Catalog, ColumnDesc, Kind, Relation, Width};
use tributary_views::{Datum, Engine, Row};

/// Input 0: `a(id int primary key, grp int, amt numeric(10,2), ts timestamp)`.
const A: usize = 0;
/// Input 1: `b(grp int primary key, name text)`.
const B: usize = 1;

/// The views: PostgreSQL runs each SQL from scratch; the engine keeps the
/// plan the planner makes of the same text. The source is named after the
/// oracle's database, so `oracle.public.a` means the same table in both.
const VIEWS: &[&str] = &[
    "SELECT id, amt * 2 FROM oracle.public.a WHERE grp > 3",
    "SELECT grp, count(*), count(amt), sum(amt), min(amt), max(amt) FROM oracle.public.a GROUP BY grp",
    "SELECT a.id, a.amt, b.name FROM oracle.public.a JOIN oracle.public.b ON a.grp = b.grp",
    "SELECT count(*), sum(amt), max(grp), sum(grp) FROM oracle.public.a",
    // NULL keys on both sides: NULL = NULL is not true.
    "SELECT x.id, y.id FROM oracle.public.a x JOIN oracle.public.a y ON x.grp = y.grp",
    "SELECT DISTINCT grp FROM oracle.public.a",
    "SELECT b.name, count(*), sum(a.amt) FROM oracle.public.a JOIN oracle.public.b ON a.grp = b.grp GROUP BY b.name",
    "SELECT grp FROM oracle.public.a UNION ALL SELECT grp FROM oracle.public.b",
    "SELECT grp FROM oracle.public.a UNION SELECT grp FROM oracle.public.b",
    "SELECT id FROM oracle.public.a WHERE NOT (grp = 2 OR amt IS NULL)",
    "SELECT grp, sum(amt) - min(amt) AS spread, count(*) * 10 FROM oracle.public.a \
     GROUP BY grp HAVING count(*) > 1 AND max(amt) IS NOT NULL",
    "SELECT x.id, b.name, y.id FROM oracle.public.a x JOIN oracle.public.b ON x.grp = b.grp \
     JOIN oracle.public.a y ON y.grp = b.grp AND y.id < x.id",
    "SELECT * FROM oracle.public.b WHERE name IS NULL OR grp <= 2",
    // Aggregates of expressions.
    "SELECT grp, sum(amt * 2 + id), max(amt - 1), count(amt + 1) FROM oracle.public.a GROUP BY grp",
    // A subquery in FROM, aggregated again (the asset overview's shape).
    "SELECT g, sum(s), count(*) FROM (SELECT grp AS g, amt AS s FROM oracle.public.a \
     UNION ALL SELECT grp, 1 FROM oracle.public.b) h GROUP BY g",
    "SELECT t.grp, t.n FROM (SELECT grp, count(*) AS n FROM oracle.public.a GROUP BY grp) t \
     JOIN oracle.public.b ON t.grp = b.grp WHERE t.n > 1",
    // Outer joins: unmatched rows padded with NULLs, the residual part of
    // ON deciding the match (not filtering the result).
    "SELECT a.id, a.amt, b.name FROM oracle.public.a LEFT JOIN oracle.public.b ON a.grp = b.grp",
    "SELECT a.id, b.grp, b.name FROM oracle.public.a RIGHT JOIN oracle.public.b \
     ON a.grp = b.grp AND a.amt > 100",
    "SELECT x.id, x.grp, b.grp FROM oracle.public.a x FULL JOIN oracle.public.b ON x.grp = b.grp",
    "SELECT x.id, b.name, y.id FROM oracle.public.a x LEFT JOIN oracle.public.b ON x.grp = b.grp \
     LEFT JOIN oracle.public.a y ON y.grp = b.grp AND y.id <> x.id",
    "SELECT b.name, count(a.id), sum(a.amt) FROM oracle.public.b LEFT JOIN oracle.public.a \
     ON a.grp = b.grp GROUP BY b.name",
    // Scalar forms: CASE (only the chosen branch is evaluated: no
    // division by zero), COALESCE, NULLIF, casts, numeric division.
    "SELECT id, CASE WHEN amt IS NULL THEN 'none' WHEN amt > 100 THEN 'big' ELSE 'small' END, \
     COALESCE(amt, 0), NULLIF(grp, 3), amt / 3, id / 7, CAST(amt AS int), amt::text || '!', \
     round(amt, 1), abs(amt), round(amt), CASE WHEN grp = 0 THEN NULL ELSE id / grp END, \
     amt::float8 / 3, (amt * 100)::bigint % 7 IS NULL FROM oracle.public.a",
    "SELECT lower(name) || '-' || upper(name), length(name), CASE grp WHEN 1 THEN 'one' \
     WHEN 2 THEN 'two' END, grp || name FROM oracle.public.b",
    // avg and DISTINCT aggregates.
    "SELECT grp, avg(amt), count(DISTINCT amt), sum(DISTINCT id % 3), avg(id) \
     FROM oracle.public.a GROUP BY grp",
    "SELECT avg(amt), count(DISTINCT grp) FROM oracle.public.a",
    // Accumulated COUNT/SUM (numeric scales that vary by value: the sum
    // prints with the largest scale present), and the same sums recomputed
    // beside a MIN (which is not accumulable).
    "SELECT grp, sum(amt / 3), sum(id), count(*), count(amt) FROM oracle.public.a GROUP BY grp",
    "SELECT count(*), sum(amt), sum(amt / 7), sum(id * 1000000000000) FROM oracle.public.a",
    "SELECT grp, sum(amt / 3), min(amt / 3) FROM oracle.public.a GROUP BY grp",
    // Time: date_trunc, casts between timestamp and date.
    "SELECT m, count(*), sum(amt) FROM (SELECT date_trunc('month', ts) AS m, amt \
     FROM oracle.public.a) t GROUP BY m",
    "SELECT id, date_trunc('week', ts), ts::date, date_trunc('hour', ts), \
     ts::date::timestamp = date_trunc('day', ts) FROM oracle.public.a",
];

fn catalog() -> Catalog {
    let column = |name: &str, kind| ColumnDesc {
        name: name.into(),
        kind,
    };
    let mut catalog = Catalog::default();
    let name = |t: &str| ["oracle".into(), "public".into(), t.into()];
    assert_eq!(
        catalog.add(Relation {
            name: name("a"),
            columns: vec![
                column("id", Kind::Int(Width::I32)),
                column("grp", Kind::Int(Width::I32)),
                column("amt", Kind::Numeric),
                column("ts", Kind::Timestamp)
            ],
        }),
        A
    );
    assert_eq!(
        catalog.add(Relation {
            name: name("b"),
            columns: vec![
                column("grp", Kind::Int(Width::I32)),
                column("name", Kind::Text)
            ],
        }),
        B
    );
    catalog
}

/// The rows both sides hold, as the engine sees them and as SQL literals.
#[derive(Default)]
struct Tables {
    a: BTreeMap<i64, ARow>,
    b: BTreeMap<i64, Option<String>>,
}

/// `a`'s `grp`, `amt` (as text) and `ts` (microseconds since 1970).
type ARow = (Option<i64>, Option<String>, Option<i64>);

fn a_row(id: i64, (grp, amt, ts): &ARow) -> Row {
    vec![
        Datum::Int(id),
        grp.map_or(Datum::Null, Datum::Int),
        amt.as_ref()
            .map_or(Datum::Null, |t| Datum::Numeric(t.parse().unwrap())),
        ts.map_or(Datum::Null, Datum::Timestamp),
    ]
}

fn ts_sql(ts: &Option<i64>) -> String {
    ts.map_or("NULL".into(), |t| format!("'{}'", Datum::Timestamp(t)))
}

fn b_row(grp: i64, name: &Option<String>) -> Row {
    vec![
        Datum::Int(grp),
        name.clone().map_or(Datum::Null, Datum::Text),
    ]
}

fn sql_opt<T: std::fmt::Display>(v: &Option<T>, quote: bool) -> String {
    match v {
        None => "NULL".into(),
        Some(v) if quote => format!("'{v}'"),
        Some(v) => v.to_string(),
    }
}

/// One random transaction: 1–3 changes, applied to `tables` and returned
/// as SQL and as engine changes.
fn transaction(rng: &mut fastrand::Rng, tables: &mut Tables) -> (String, Vec<(usize, Row, isize)>) {
    let mut sql = String::from("BEGIN;");
    let mut changes = Vec::new();
    for _ in 0..rng.usize(1..=3) {
        let grp = if rng.u8(0..10) > 0 {
            Some(rng.i64(0..8))
        } else {
            None
        };
        let amt =
            (rng.u8(0..6) > 0).then(|| format!("{}.{:02}", rng.i64(-50..500), rng.u8(0..100)));
        // Instants from 1999 to 2001, to the second, some with a fraction.
        let ts = (rng.u8(0..8) > 0).then(|| {
            let seconds = 915_148_800 + rng.i64(0..3 * 365 * 86_400);
            seconds * 1_000_000 + if rng.bool() { rng.i64(0..1_000_000) } else { 0 }
        });
        let id = rng.i64(0..40);
        match (rng.u8(0..10), tables.a.contains_key(&id)) {
            // Changes of `b`: upsert or delete a group's name.
            (0..=1, _) => {
                let g = rng.i64(0..8);
                if let Some(old) = tables.b.remove(&g) {
                    changes.push((B, b_row(g, &old), -1));
                    sql.push_str(&format!("DELETE FROM b WHERE grp = {g};"));
                }
                if rng.bool() {
                    let name = (rng.u8(0..5) > 0).then(|| format!("n{}", rng.u8(0..4)));
                    changes.push((B, b_row(g, &name), 1));
                    sql.push_str(&format!(
                        "INSERT INTO b VALUES ({g}, {});",
                        sql_opt(&name, true)
                    ));
                    tables.b.insert(g, name);
                }
            }
            (2..=5, false) => {
                let row = (grp, amt, ts);
                changes.push((A, a_row(id, &row), 1));
                sql.push_str(&format!(
                    "INSERT INTO a VALUES ({id}, {}, {}, {});",
                    sql_opt(&row.0, false),
                    sql_opt(&row.1, false),
                    ts_sql(&row.2)
                ));
                tables.a.insert(id, row);
            }
            (2..=7, true) => {
                // An update, sometimes of the key itself.
                let old = tables.a.remove(&id).unwrap();
                changes.push((A, a_row(id, &old), -1));
                let new_id = if rng.u8(0..4) == 0 && !tables.a.contains_key(&(id + 40)) {
                    id + 40
                } else {
                    id
                };
                let row = (grp, amt, ts);
                changes.push((A, a_row(new_id, &row), 1));
                sql.push_str(&format!(
                    "UPDATE a SET id = {new_id}, grp = {}, amt = {}, ts = {} WHERE id = {id};",
                    sql_opt(&row.0, false),
                    sql_opt(&row.1, false),
                    ts_sql(&row.2)
                ));
                tables.a.insert(new_id, row);
            }
            (_, true) => {
                let old = tables.a.remove(&id).unwrap();
                changes.push((A, a_row(id, &old), -1));
                sql.push_str(&format!("DELETE FROM a WHERE id = {id};"));
            }
            (_, false) => {}
        }
    }
    sql.push_str("COMMIT;");
    (sql, changes)
}

/// A view's rows as text, sorted, one entry per occurrence.
fn engine_rows(engine: &Engine, view: usize) -> Vec<Vec<Option<String>>> {
    let snapshot = engine.read(view);
    let mut rows = Vec::new();
    for (row, n) in &snapshot.rows {
        assert!(*n > 0, "view {view} holds {row:?} {n} times");
        let text: Vec<Option<String>> = row
            .iter()
            .map(|d| (!d.is_null()).then(|| d.to_string()))
            .collect();
        rows.extend(std::iter::repeat_n(text, *n as usize));
    }
    assert!(
        snapshot.errors.is_empty(),
        "view {view}: {:?}",
        snapshot.errors
    );
    rows.sort();
    rows
}

async fn oracle_rows(db: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for message in db.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

fn run(seed: u64, steps: usize) {
    let pg = PgCluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(pg.create_db("oracle"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, grp int, amt numeric(10,2), ts timestamp);
         CREATE TABLE b (grp int PRIMARY KEY, name text);",
    ))
    .unwrap();
    let catalog = catalog();
    let plans = VIEWS
        .iter()
        .map(|sql| {
            sql::plan(sql, &catalog)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .plan
        })
        .collect();
    let engine = Engine::start(2, plans);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tables = Tables::default();
    let mut checked = 0;
    for step in 0..steps {
        let (sql, changes) = transaction(&mut rng, &mut tables);
        rt.block_on(db.batch_execute(&sql)).unwrap();
        engine.apply(changes);
        for (i, query) in VIEWS.iter().enumerate() {
            let expected = rt.block_on(oracle_rows(&db, query));
            let got = engine_rows(&engine, i);
            assert_eq!(
                got, expected,
                "seed {seed}, step {step}, view {query}\nafter {sql}"
            );
            checked += 1;
        }
    }
    // The stream must have exercised what the operators handle.
    assert!(
        tables.a.len() > 5,
        "{} rows of a at the end",
        tables.a.len()
    );
    assert_eq!(checked, steps * VIEWS.len());
}

#[test]
fn every_operator_equals_postgresql_after_every_transaction_seed_1() {
    run(1, 1000);
}

#[test]
fn every_operator_equals_postgresql_after_every_transaction_seed_2() {
    run(2, 1000);
}

#[test]
fn every_operator_equals_postgresql_after_every_transaction_seed_3() {
    run(3, 1000);
}
