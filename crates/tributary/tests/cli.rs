//! The command line contract: exit codes and error/hint output.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

#[test]
fn unknown_config_key_exits_2_with_nearest_key() {
    let dir = workdir();
    let text = config(
        dir.path(),
        "postgres://u@127.0.0.1:1/db",
        &["public.t"],
        "snapshto = \"never\"",
    );
    let (code, stderr) = run_config(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("error: invalid config"), "{stderr}");
    assert!(stderr.contains("snapshto"), "{stderr}");
    assert!(
        stderr.contains("hint: did you mean `snapshot`?"),
        "{stderr}"
    );
}

#[test]
fn unreachable_database_exits_1_with_hint() {
    let dir = workdir();
    let port = tributary_testkit::free_port();
    let url = format!("postgres://tributary:secret-pw@127.0.0.1:{port}/cash");
    let (code, stderr) = run_config(&config(dir.path(), &url, &["public.t"], ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "error: source \"src\": could not connect to PostgreSQL at tributary@127.0.0.1"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(!stderr.contains("secret-pw"), "password leaked: {stderr}");
}

#[test]
fn missing_table_exits_1_naming_it() {
    let pg = PgCluster::start();
    let dir = workdir();
    let (code, stderr) = run_config(&config(
        dir.path(),
        &pg.url("postgres"),
        &["public.nope"],
        "",
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

#[test]
fn version_and_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tributary "));
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("run"));
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn passwords_come_from_env_or_file_and_are_never_printed() {
    let pg = PgCluster::start_with_passwords();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'Right-Pw-1';
         CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);
         GRANT SELECT ON t TO cdc;
         CREATE PUBLICATION tributary_src FOR TABLE t;",
    ))
    .unwrap();
    let url = format!("postgres://cdc@127.0.0.1:{}/app", pg.port());

    // From a file: snapshot and stream work.
    let dir = workdir();
    std::fs::write(dir.path().join("pw"), "Right-Pw-1\n").unwrap();
    let extra = format!("password_file = \"{}\"", dir.path().join("pw").display());
    let mut t = Tributary::start(dir.path(), &config(dir.path(), &url, &["public.t"], &extra));
    t.wait_for(1, Duration::from_secs(60));
    assert!(t.terminate().success(), "{}", t.log());
    assert!(!t.log().contains("Right-Pw-1"), "password logged");

    // From the environment, wrong: a clear error that does not print it.
    let dir = workdir();
    let text = config(
        dir.path(),
        &url,
        &["public.t"],
        "password_env = \"CDC_TEST_PW\"",
    );
    let out = cli(
        "run",
        dir.path(),
        &text,
        &[("CDC_TEST_PW", Some("Wrong-Pw-2"))],
    );
    let stderr = &out.stderr;
    assert_eq!(out.code, 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("Wrong-Pw-2"), "password printed: {stderr}");

    // Unset: exit 2 naming the variable.
    let out = cli("run", dir.path(), &text, &[("CDC_TEST_PW", None)]);
    let stderr = &out.stderr;
    assert_eq!(out.code, 2, "{stderr}");
    assert!(stderr.contains("CDC_TEST_PW is not set"), "{stderr}");
}
