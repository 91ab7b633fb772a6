//! `tributary check`: one line per check, each failing case named with a
//! hint, and `run` refusing to start with the same message.

use crate::support::*;

/// Runs `tributary check` to its exit: (exit code, stdout then stderr).
pub fn check(dir: &std::path::Path, text: &str) -> (i32, String) {
    let out = cli("check", dir, text, &[]);
    (out.code, out.stdout + &out.stderr)
}

#[test]
fn a_ready_database_passes_every_check() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)"))
        .unwrap();
    let dir = workdir();
    let (code, out) = check(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
    );
    assert_eq!(code, 0, "{out}");
    assert_contains_all(
        &out,
        &[
            "ok    config: ",
            "ok    source \"src\": connected to PostgreSQL",
            "ok    source \"src\": wal_level = logical",
            "ok    source \"src\": role \"postgres\" has REPLICATION",
            "ok    source \"src\": table public.t: SELECT granted",
            "ok    source \"src\": table public.t: replica identity primary key",
            "ok    source \"src\": publication \"tributary_src\" is missing; run creates it",
            "ok    source \"src\": replication slot \"tributary_src\" does not exist yet",
            "ok    sink \"archive\": file ",
        ],
    );
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn each_problem_is_named_with_a_hint_and_run_refuses_to_start() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE ROLE weak LOGIN;
         CREATE TABLE t_ok (id int PRIMARY KEY);
         CREATE TABLE t_nogrant (id int PRIMARY KEY);
         CREATE TABLE t_nothing (id int PRIMARY KEY);
         ALTER TABLE t_nothing REPLICA IDENTITY NOTHING;
         CREATE TABLE t_nokey (v int);
         GRANT SELECT ON t_ok, t_nothing, t_nokey TO weak;
         CREATE PUBLICATION p FOR TABLE t_ok;",
    ))
    .unwrap();
    // Not in the batch above: a slot cannot be created after writes in one transaction.
    rt.block_on(
        db.batch_execute("SELECT pg_create_logical_replication_slot('s_other', 'test_decoding')"),
    )
    .unwrap();
    let dir = workdir();
    let url = format!("postgres://weak@127.0.0.1:{}/app", pg.port());
    let tables = [
        "public.t_ok",
        "public.t_nogrant",
        "public.t_nothing",
        "public.t_nokey",
        "public.gone",
    ];
    let text = config(
        dir.path(),
        &url,
        &tables,
        "publication = \"p\"\nslot = \"s_other\"",
    )
    .replace(
        &format!("path = \"{}", dir.path().join("events.jsonl").display()),
        &format!(
            "path = \"{}",
            dir.path().join("no/such/dir/events.jsonl").display()
        ),
    );
    let (code, out) = check(dir.path(), &text);
    assert_eq!(code, 1, "{out}");
    assert_contains_all(
        &out,
        &[
        "FAIL  source \"src\": role \"weak\" lacks the REPLICATION attribute",
        "FAIL  source \"src\": table public.t_nogrant: SELECT is not granted to this role",
        "FAIL  source \"src\": table public.t_nothing: replica identity NOTHING",
        "warn  source \"src\": table public.t_nokey has no primary key",
        "FAIL  source \"src\": table public.gone does not exist",
        "FAIL  source \"src\": publication \"p\" does not publish public.t_nogrant, public.t_nothing, public.t_nokey, public.gone",
        "FAIL  source \"src\": replication slot \"s_other\" exists but is not a pgoutput slot",
        "FAIL  sink \"archive\": cannot write in ",
        "7 problem(s) found",
    ],
    );
    // Every failed line is followed by its hint.
    let lines: Vec<&str> = out.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("FAIL") || line.starts_with("warn") {
            assert!(
                lines[i + 1].starts_with("      hint: "),
                "no hint after {line}"
            );
        }
    }
    assert!(
        out.contains("hint: as a superuser: ALTER ROLE \"weak\" REPLICATION;"),
        "{out}"
    );

    // `run` stops before streaming, with the first problem and its hint.
    let (code, stderr) = run_config(&text);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: source \"src\": role \"weak\" lacks the REPLICATION attribute"),
        "{stderr}"
    );
    assert!(
        stderr.contains("detail: also: table public.t_nogrant"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: as a superuser: ALTER ROLE \"weak\" REPLICATION;"),
        "{stderr}"
    );
}

#[test]
fn wal_level_replica_fails_the_check() {
    let pg = PgCluster::start_with(&[("wal_level", "replica")]);
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)"))
        .unwrap();
    let dir = workdir();
    let (code, out) = check(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.t"], ""),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  source \"src\": wal_level is \"replica\", not \"logical\""),
        "{out}"
    );
    assert!(
        out.contains("hint: as a superuser: ALTER SYSTEM SET wal_level = logical"),
        "{out}"
    );
}

#[test]
fn unreachable_source_and_invalid_config() {
    let dir = workdir();
    let url = format!(
        "postgres://u:pw-secret@127.0.0.1:{}/db",
        tributary_testkit::free_port()
    );
    let (code, out) = check(dir.path(), &config(dir.path(), &url, &["public.t"], ""));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  source \"src\": could not connect to PostgreSQL at u@127.0.0.1"),
        "{out}"
    );
    assert!(!out.contains("pw-secret"), "password printed: {out}");
    let (code, out) = check(dir.path(), "state_dir = 1");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("error: "), "{out}");
}

#[test]
fn exhausted_slots_and_an_uncreatable_publication_fail_the_check() {
    let pg = PgCluster::start_with(&[("max_replication_slots", "1")]);
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE ROLE cdc LOGIN REPLICATION;
         CREATE TABLE t (id int PRIMARY KEY);
         GRANT SELECT ON t TO cdc;",
    ))
    .unwrap();
    rt.block_on(db.batch_execute("SELECT pg_create_logical_replication_slot('other', 'pgoutput')"))
        .unwrap();
    let dir = workdir();
    let url = format!("postgres://cdc@127.0.0.1:{}/app", pg.port());
    let (code, out) = check(dir.path(), &config(dir.path(), &url, &["public.t"], ""));
    assert_eq!(code, 1, "{out}");
    assert_contains_all(
        &out,
        &[
        "FAIL  source \"src\": all 1 replication slots are in use",
        "hint: raise max_replication_slots",
        "FAIL  source \"src\": publication \"tributary_src\" is missing and this role does not own the tables",
        "hint: run `tributary setup postgres`",
        "2 problem(s) found",
    ],
    );

    // The one slot is this source's own: streaming works, but a later
    // snapshot would need a temporary slot, so the check warns.
    rt.block_on(db.batch_execute(
        "SELECT pg_drop_replication_slot('other');
         SELECT pg_create_logical_replication_slot('tributary_src', 'pgoutput');",
    ))
    .unwrap();
    let (_, out) = check(dir.path(), &config(dir.path(), &url, &["public.t"], ""));
    assert_contains_all(
        &out,
        &[
            "warn  source \"src\": all 1 replication slots are in use (one of them this source's)",
            "hint: a later snapshot needs one more slot while it starts",
            "1 problem(s) found",
        ],
    );
}

#[test]
fn busy_wal_senders_fail_the_check() {
    let pg = PgCluster::start_with(&[("max_wal_senders", "1")]);
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)"))
        .unwrap();
    // A running source holds the only WAL sender.
    let running = workdir();
    let mut t = Tributary::start(
        running.path(),
        &config(running.path(), &pg.url("app"), &["public.t"], ""),
    );
    crate::capture::wait_for_slot(&rt, &db);
    let dir = workdir();
    let text = config(
        dir.path(),
        &pg.url("app"),
        &["public.t"],
        "slot = \"second\"",
    );
    let (code, out) = check(dir.path(), &text);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  source \"src\": all 1 WAL senders are in use"),
        "{out}"
    );
    assert!(out.contains("hint: raise max_wal_senders"), "{out}");
    assert!(t.terminate().success());
}
