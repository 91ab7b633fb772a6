//! `tributary setup postgres`: the printed SQL is least-privilege and the
//! applied SQL is enough for `run`, idempotently.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn setup(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["setup", "postgres"])
        .args(args)
        .env("CDC_PW", "s3cret-Pw")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn applied_setup_is_enough_to_stream_and_idempotent() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("cash"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);
         CREATE TABLE ledger (at timestamptz, amount int);
         CREATE TABLE secrets (id int PRIMARY KEY);
         INSERT INTO accounts VALUES (1, 10);",
    ))
    .unwrap();
    let admin = pg.url("cash");
    let args = [
        "--url",
        &admin,
        "--tables",
        "public.accounts,public.ledger",
        "--user",
        "cdc",
        "--password-env",
        "CDC_PW",
    ];
    // Printing changes nothing.
    let (code, sql, stderr) = setup(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        sql.contains("CREATE ROLE \"cdc\" LOGIN REPLICATION"),
        "{sql}"
    );
    assert!(
        sql.contains(
            "GRANT SELECT ON TABLE \"public\".\"accounts\", \"public\".\"ledger\" TO \"cdc\""
        ),
        "{sql}"
    );
    assert!(
        sql.contains("CREATE PUBLICATION \"tributary_cash\" FOR TABLE"),
        "{sql}"
    );
    let statements: String = sql.lines().filter(|l| !l.starts_with("--")).collect();
    assert!(!statements.contains("ALL TABLES"), "{sql}");
    assert!(!statements.to_lowercase().contains(" superuser"), "{sql}");
    assert!(
        sql.contains("\"public\".\"ledger\" REPLICA IDENTITY FULL"),
        "advice for the keyless table: {sql}"
    );
    assert!(sql.contains("hostssl cash cdc"), "{sql}");
    assert!(
        !sql.contains("s3cret-Pw") && !stderr.contains("s3cret-Pw"),
        "password printed"
    );
    assert!(sql.contains("not applied"), "{sql}");
    let roles: i64 = rt
        .block_on(db.query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'cdc'", &[]))
        .unwrap()
        .get(0);
    assert_eq!(roles, 0, "printing must not apply");

    // Applying twice is fine.
    for _ in 0..2 {
        let (code, out, stderr) = setup(&[&args[..], &["--apply"]].concat());
        assert_eq!(code, 0, "{stderr}");
        assert!(out.contains("-- applied: 6 steps"), "{out}");
        assert!(!out.contains("s3cret-Pw"), "password printed");
    }
    let role = rt
        .block_on(db.query_one(
            "SELECT rolsuper, rolreplication, rolcanlogin, rolpassword IS NOT NULL \
             FROM pg_authid WHERE rolname = 'cdc'",
            &[],
        ))
        .unwrap();
    assert_eq!(
        (
            role.get::<_, bool>(0),
            role.get::<_, bool>(1),
            role.get::<_, bool>(2)
        ),
        (false, true, true)
    );
    assert!(role.get::<_, bool>(3), "password set");
    let published: Vec<String> = rt
        .block_on(db.query(
            "SELECT tablename::text FROM pg_publication_tables WHERE pubname = 'tributary_cash' ORDER BY 1",
            &[],
        ))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(published, ["accounts", "ledger"]);
    let can_read_secrets: bool = rt
        .block_on(db.query_one(
            "SELECT has_table_privilege('cdc', 'public.secrets', 'SELECT')",
            &[],
        ))
        .unwrap()
        .get(0);
    assert!(!can_read_secrets, "SELECT on exactly the listed tables");

    // The new role streams with that and nothing more; `check` agrees first.
    let dir = workdir();
    let url = format!("postgres://cdc@127.0.0.1:{}/cash", pg.port());
    let text = config(
        dir.path(),
        &url,
        &["public.accounts"],
        "publication = \"tributary_cash\"",
    );
    let (code, out) = crate::check::check(dir.path(), &text);
    assert_eq!(code, 0, "{out}");
    let mut t = Tributary::start(dir.path(), &text);
    t.wait_for(1, Duration::from_secs(60));
    rt.block_on(db.batch_execute("INSERT INTO accounts VALUES (2, 20)"))
        .unwrap();
    let records = t.wait_for(2, Duration::from_secs(60));
    assert_eq!(records[1]["value"]["op"], "c");
    assert!(t.terminate().success(), "{}", t.log());
    // The heartbeat needs no grant beyond what setup gave.
    assert!(!t.log().contains("heartbeat failed"), "{}", t.log());
}

#[test]
fn setup_names_a_missing_table() {
    let pg = PgCluster::start();
    let rt = runtime();
    rt.block_on(pg.create_db("cash"));
    let (code, _, stderr) = setup(&[
        "--url",
        &pg.url("cash"),
        "--tables",
        "public.nope",
        "--user",
        "cdc",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("public.nope"), "{stderr}");
}
