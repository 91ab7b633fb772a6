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
use tributary_views::{Aggregate, BinaryOp, Datum, Engine, Expr, Plan, Row};

/// Input 0: `a(id int primary key, grp int, amt numeric(10,2))`.
const A: usize = 0;
/// Input 1: `b(grp int primary key, name text)`.
const B: usize = 1;

fn get(input: usize) -> Box<Plan> {
    Box::new(Plan::Get(input))
}

fn col(i: usize) -> Expr {
    Expr::column(i)
}

fn int(i: i64) -> Expr {
    Expr::Literal(Datum::Int(i))
}

fn a_join_b() -> Box<Plan> {
    Box::new(Plan::Join {
        left: get(A),
        right: get(B),
        left_key: vec![1],
        right_key: vec![0],
    })
}

/// Each view: the SQL PostgreSQL runs, and the plan the engine keeps.
fn views() -> Vec<(&'static str, Plan)> {
    vec![
        (
            "SELECT id, amt * 2 FROM a WHERE grp > 3",
            Plan::Map {
                input: Box::new(Plan::Filter {
                    input: get(A),
                    predicate: Expr::binary(BinaryOp::Gt, col(1), int(3)),
                }),
                exprs: vec![col(0), Expr::binary(BinaryOp::Mul, col(2), int(2))],
            },
        ),
        (
            "SELECT grp, count(*), count(amt), sum(amt), min(amt), max(amt) FROM a GROUP BY grp",
            Plan::Reduce {
                input: get(A),
                group: vec![1],
                aggregates: vec![
                    Aggregate::CountRows,
                    Aggregate::Count(2),
                    Aggregate::Sum(2),
                    Aggregate::Min(2),
                    Aggregate::Max(2),
                ],
            },
        ),
        (
            "SELECT a.id, a.amt, b.name FROM a JOIN b ON a.grp = b.grp",
            Plan::Map {
                input: a_join_b(),
                exprs: vec![col(0), col(2), col(4)],
            },
        ),
        (
            "SELECT count(*), sum(amt), max(grp), sum(grp) FROM a",
            Plan::Reduce {
                input: get(A),
                group: vec![],
                aggregates: vec![
                    Aggregate::CountRows,
                    Aggregate::Sum(2),
                    Aggregate::Max(1),
                    Aggregate::Sum(1),
                ],
            },
        ),
        (
            // NULL keys on both sides: NULL = NULL is not true.
            "SELECT x.id, y.id FROM a x JOIN a y ON x.grp = y.grp",
            Plan::Map {
                input: Box::new(Plan::Join {
                    left: get(A),
                    right: get(A),
                    left_key: vec![1],
                    right_key: vec![1],
                }),
                exprs: vec![col(0), col(3)],
            },
        ),
        (
            "SELECT DISTINCT grp FROM a",
            Plan::Distinct(Box::new(Plan::Map {
                input: get(A),
                exprs: vec![col(1)],
            })),
        ),
        (
            "SELECT b.name, count(*), sum(a.amt) FROM a JOIN b ON a.grp = b.grp GROUP BY b.name",
            Plan::Reduce {
                input: a_join_b(),
                group: vec![4],
                aggregates: vec![Aggregate::CountRows, Aggregate::Sum(2)],
            },
        ),
        (
            "SELECT grp FROM a UNION ALL SELECT grp FROM b",
            Plan::Union(vec![
                Plan::Map {
                    input: get(A),
                    exprs: vec![col(1)],
                },
                Plan::Map {
                    input: get(B),
                    exprs: vec![col(0)],
                },
            ]),
        ),
        (
            "SELECT id FROM a WHERE NOT (grp = 2 OR amt IS NULL)",
            Plan::Map {
                input: Box::new(Plan::Filter {
                    input: get(A),
                    predicate: Expr::Not(Box::new(Expr::Or(
                        Box::new(Expr::binary(BinaryOp::Eq, col(1), int(2))),
                        Box::new(Expr::IsNull(Box::new(col(2)))),
                    ))),
                }),
                exprs: vec![col(0)],
            },
        ),
    ]
}

/// The rows both sides hold, as the engine sees them and as SQL literals.
#[derive(Default)]
struct Tables {
    a: BTreeMap<i64, (Option<i64>, Option<String>)>,
    b: BTreeMap<i64, Option<String>>,
}

fn a_row(id: i64, (grp, amt): &(Option<i64>, Option<String>)) -> Row {
    vec![
        Datum::Int(id),
        grp.map_or(Datum::Null, Datum::Int),
        amt.as_ref()
            .map_or(Datum::Null, |t| Datum::Numeric(t.parse().unwrap())),
    ]
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
                let row = (grp, amt);
                changes.push((A, a_row(id, &row), 1));
                sql.push_str(&format!(
                    "INSERT INTO a VALUES ({id}, {}, {});",
                    sql_opt(&row.0, false),
                    sql_opt(&row.1, false)
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
                let row = (grp, amt);
                changes.push((A, a_row(new_id, &row), 1));
                sql.push_str(&format!(
                    "UPDATE a SET id = {new_id}, grp = {}, amt = {} WHERE id = {id};",
                    sql_opt(&row.0, false),
                    sql_opt(&row.1, false)
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
        "CREATE TABLE a (id int PRIMARY KEY, grp int, amt numeric(10,2));
         CREATE TABLE b (grp int PRIMARY KEY, name text);",
    ))
    .unwrap();
    let views = views();
    let engine = Engine::start(2, views.iter().map(|(_, p)| p.clone()).collect());
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tables = Tables::default();
    let mut checked = 0;
    for step in 0..steps {
        let (sql, changes) = transaction(&mut rng, &mut tables);
        rt.block_on(db.batch_execute(&sql)).unwrap();
        engine.apply(changes);
        for (i, (query, _)) in views.iter().enumerate() {
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
    assert_eq!(checked, steps * views.len());
}

#[test]
fn every_operator_equals_postgresql_after_every_transaction_seed_1() {
    run(1, 400);
}

#[test]
fn every_operator_equals_postgresql_after_every_transaction_seed_2() {
    run(2, 400);
}
