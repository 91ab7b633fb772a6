//! The command line contract: exit codes and error/hint output.

use std::process::Command;

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
