//! SQL a view cannot evaluate exactly is refused when it is declared,
//! naming the construct and where it starts; never approximated.

use tributary_views::sql::{self, Catalog, ColumnDesc, Kind, Relation, Width};

fn catalog() -> Catalog {
    let mut catalog = Catalog::default();
    catalog.add(Relation {
        name: ["cash".into(), "public".into(), "accounts".into()],
        columns: vec![
            ColumnDesc {
                name: "id".into(),
                kind: Kind::Int(Width::I32),
            },
            ColumnDesc {
                name: "owner".into(),
                kind: Kind::Text,
            },
            ColumnDesc {
                name: "balance".into(),
                kind: Kind::Numeric,
            },
        ],
    });
    catalog
}

/// The refusal of `sql`: its message, and its detail if any.
fn refused(sql: &str) -> (String, Option<String>) {
    match sql::plan(sql, &catalog()) {
        Ok(view) => panic!("{sql} was planned: {:?}", view.plan),
        Err(e) => (e.to_string(), e.detail().map(str::to_owned)),
    }
}

#[test]
fn each_unsupported_construct_is_named_with_its_position() {
    let cases = [
        (
            "SELECT id FROM cash.public.accounts ORDER BY id",
            "ORDER BY in a view",
        ),
        (
            "SELECT id FROM cash.public.accounts LIMIT 3",
            "LIMIT/OFFSET/FETCH",
        ),
        (
            "SELECT a.id FROM cash.public.accounts a JOIN cash.public.accounts b USING (id)",
            "a join without ON",
        ),
        (
            "SELECT id FROM cash.public.accounts a CROSS JOIN cash.public.accounts b",
            "this kind of join",
        ),
        ("SELECT owner LIKE 'a%' FROM cash.public.accounts", "LIKE"),
        (
            "SELECT id FROM cash.public.accounts WHERE id IN (1, 2)",
            "IN (…)",
        ),
        (
            "SELECT CAST(balance AS interval) FROM cash.public.accounts",
            "a cast to INTERVAL",
        ),
        (
            "SELECT sum(balance) FILTER (WHERE id > 1) FROM cash.public.accounts",
            "FILTER/OVER/WITHIN GROUP",
        ),
        (
            "SELECT string_agg(owner, ',' ORDER BY owner) FROM cash.public.accounts",
            "ORDER BY in string_agg()",
        ),
        (
            "SELECT id FROM cash.public.accounts INTERSECT SELECT id FROM cash.public.accounts",
            "INTERSECT",
        ),
        (
            "WITH x AS (SELECT 1) SELECT id FROM cash.public.accounts",
            "WITH",
        ),
        (
            "SELECT id FROM cash.public.accounts, cash.public.accounts b",
            "comma-separated FROM",
        ),
    ];
    for (sql, construct) in cases {
        let (message, detail) = refused(sql);
        assert!(message.contains(construct), "{sql}: {message}");
        assert!(
            message.contains("not supported in views"),
            "{sql}: {message}"
        );
        assert!(
            detail
                .as_deref()
                .is_some_and(|d| d.starts_with("at line 1, column ")),
            "{sql}: {detail:?}"
        );
    }
}

#[test]
fn names_and_types_are_checked_as_postgresql_checks_them() {
    let cases = [
        (
            "SELECT nope FROM cash.public.accounts",
            "column \"nope\" does not exist",
        ),
        (
            "SELECT id FROM cash.public.missing",
            "relation \"cash.public.missing\" does not exist",
        ),
        (
            "SELECT owner, count(*) FROM cash.public.accounts",
            "must appear in the GROUP BY clause",
        ),
        (
            "SELECT sum(owner) FROM cash.public.accounts",
            "function sum(Text) does not exist",
        ),
        (
            "SELECT id FROM cash.public.accounts WHERE owner + 1 > 2",
            "operator does not exist",
        ),
        (
            "SELECT id FROM cash.public.accounts WHERE balance",
            "argument must be type boolean",
        ),
        (
            "SELECT id FROM cash.public.accounts a JOIN cash.public.accounts b ON a.id = b.id",
            "column reference \"id\" is ambiguous",
        ),
        (
            "SELECT id FROM cash.public.accounts WHERE count(*) > 1",
            "aggregate functions are not allowed",
        ),
        ("SELEC id", "syntax error"),
        (
            "SELECT now() FROM cash.public.accounts",
            "function now() does not exist",
        ),
        (
            "SELECT balance % 1.5::float8 FROM cash.public.accounts",
            "operator does not exist",
        ),
        (
            "SELECT CASE WHEN id THEN 1 END FROM cash.public.accounts",
            "argument of CASE/WHEN must be type boolean",
        ),
        (
            "SELECT COALESCE(owner, 1) FROM cash.public.accounts",
            "COALESCE types",
        ),
        (
            "SELECT lower(id) FROM cash.public.accounts",
            "function lower(Int(I32)) does not exist",
        ),
        (
            "SELECT 1 FROM cash.public.accounts; SELECT 2 FROM cash.public.accounts",
            "not 2 statements",
        ),
    ];
    for (sql, expected) in cases {
        let (message, _) = refused(sql);
        assert!(message.contains(expected), "{sql}: {message}");
    }
}

#[test]
fn output_columns_are_named_as_postgresql_names_them() {
    let view = sql::plan(
        "SELECT owner, sum(balance), count(*) AS n, id + 1 FROM cash.public.accounts GROUP BY owner, id",
        &catalog(),
    )
    .unwrap();
    let names: Vec<&str> = view.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["owner", "sum", "n", "?column?"]);
    assert_eq!(view.columns[1].kind, Kind::Numeric);
}
