//! The view server's access control and the views' observability: a
//! password (SCRAM-SHA-256) and TLS on the query endpoint, checked with
//! psql as a user would connect; the view metrics, `/status` and
//! `tributary status` while the view changes.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// psql against the view server: its output (or its error) and success.
fn psql(conninfo: &str, password: Option<&str>, sql: &str) -> (bool, String) {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .expect("psql installed");
    let mut cmd = Command::new(bin);
    cmd.args(["-X", "-At", "-d", conninfo, "-c", sql]);
    match password {
        Some(p) => cmd.env("PGPASSWORD", p),
        None => cmd.env_remove("PGPASSWORD"),
    };
    let out = cmd
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_view_server_requires_its_password_over_tls_and_reports_its_views() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("cash"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, customer_id int NOT NULL, balance numeric(14,2));
         INSERT INTO accounts SELECT g, g % 10, g * 1.5 FROM generate_series(1, 100) g;",
    ))
    .unwrap();
    let dir = workdir();
    tributary_testkit::make_server_certificate(dir.path());
    let (port, admin) = (
        tributary_testkit::free_port(),
        tributary_testkit::free_port(),
    );
    let text = format!(
        "state_dir = \"{state}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\nuser = \"reader\"\npassword_env = \"VIEW_PASSWORD\"\n\
         tls_cert = \"{dir}/server.crt\"\ntls_key = \"{dir}/server.key\"\n\
         [[source]]\nname = \"cash\"\ntype = \"postgres\"\nurl = \"{url}\"\ntables = [\"public.accounts\"]\n\
         [[view]]\nname = \"balances\"\n\
         sql = \"SELECT customer_id, sum(balance) AS total, count(*) AS n FROM cash.public.accounts GROUP BY customer_id\"\n",
        state = dir.path().join("state").display(),
        dir = dir.path().display(),
        url = pg.url("cash"),
    );
    let secret = "s3cret-for-views";
    let mut t = Tributary::start_with_env(dir.path(), &text, &[("VIEW_PASSWORD", secret)]);
    let verified = format!(
        "host=localhost port={port} user=reader dbname=tributary sslmode=verify-full sslrootcert={}",
        dir.path().join("ca.crt").display()
    );
    let sum = "SELECT total FROM balances WHERE customer_id = 3";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = psql(&verified, Some(secret), sum);
        if ok && out.trim() == "720.00" {
            break;
        }
        if let Some(status) = t.try_exit() {
            panic!("tributary exited ({status}):\n{}", t.log());
        }
        assert!(
            Instant::now() < deadline,
            "no view over TLS: {out}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The session really is encrypted: the server's certificate was
    // verified against the CA (verify-full), and psql reports TLS.
    let (ok, out) = psql(&verified, Some(secret), "\\conninfo");
    assert!(ok && out.contains("SSL connection"), "{out}");

    // A wrong password and no password are refused with PostgreSQL's error.
    let (ok, out) = psql(&verified, Some("wrong"), sum);
    assert!(!ok, "a wrong password was admitted: {out}");
    assert!(
        out.contains("password authentication failed for user \"reader\""),
        "{out}"
    );
    let (ok, out) = psql(&format!("{verified} sslmode=require"), None, sum);
    assert!(!ok, "no password was admitted: {out}");
    // Another user, with the right password, is not the configured one.
    let other = verified.replace("user=reader", "user=someone");
    let (ok, out) = psql(&other, Some(secret), sum);
    assert!(!ok, "another user was admitted: {out}");
    assert!(!t.log().contains(secret), "the password reached the log");

    // A change shows in the view, its metrics and the status.
    rt.block_on(db.batch_execute("UPDATE accounts SET balance = balance + 100 WHERE id = 3"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(&verified, Some(secret), sum).1.trim() != "820.00" {
        assert!(Instant::now() < deadline, "the update never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = http_get(admin, "/metrics");
    assert!(
        metrics.contains("tributary_view_rows{view=\"balances\"} 10"),
        "{metrics}"
    );
    let freshness = metrics
        .lines()
        .find(|l| l.starts_with("tributary_view_freshness_seconds_count{view=\"balances\"}"))
        .unwrap_or_else(|| panic!("no freshness histogram:\n{metrics}"));
    let count: f64 = freshness.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{freshness}");
    assert!(metrics.contains("tributary_view_apply_seconds_count{source=\"cash\"}"));

    let status = http_get(admin, "/status");
    let body = status.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let view = &json["views"]["views"]["balances"];
    assert_eq!(view["rows"], 10, "{json}");
    assert_eq!(view["errors"], 0, "{json}");
    assert_eq!(view["sources"], serde_json::json!(["cash"]), "{json}");
    assert!(json["views"]["resident_bytes"].as_u64().unwrap() > 1_000_000);

    let out = cli("status", dir.path(), &text, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("balances"))
        .unwrap_or_else(|| panic!("no view line:\n{}", out.stdout));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[1], "10", "{line}");
    assert_eq!(cells[3], "0", "{line}");
    assert_eq!(cells[4], "cash", "{line}");
    assert!(out.stdout.contains("views rehydrated in"), "{}", out.stdout);
}
