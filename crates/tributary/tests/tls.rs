//! TLS to PostgreSQL: libpq's `sslmode` options in the source URL, against a
//! cluster whose TCP port rejects every connection without TLS.

use std::time::Duration;

use crate::support::*;

fn tls_url(pg: &PgCluster, host: &str, options: &str) -> String {
    format!("postgres://postgres@{host}:{}/shop?{options}", pg.port())
}

#[test]
fn verify_full_snapshots_and_streams_over_tls() {
    let pg = PgCluster::start_tls();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("shop"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a');",
    ))
    .unwrap();
    let ca = pg.ca_file();
    // Both host forms must verify: a DNS name and an IP SAN.
    for (n, host) in ["localhost", "127.0.0.1"].into_iter().enumerate() {
        let dir = workdir();
        let url = tls_url(
            &pg,
            host,
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        );
        let extra = format!("slot = \"s{n}\"\npublication = \"p{n}\"");
        let mut t = Tributary::start(
            dir.path(),
            &config(dir.path(), &url, &["public.items"], &extra),
        );
        // Each round's insert is in the next round's snapshot.
        let snapshot_rows = 1 + n;
        t.wait_for(snapshot_rows, Duration::from_secs(60));
        rt.block_on(db.batch_execute(&format!("INSERT INTO items VALUES ({}, 'b')", 10 + n)))
            .unwrap();
        let records = t.wait_for(snapshot_rows + 1, Duration::from_secs(60));
        assert!(records[..snapshot_rows]
            .iter()
            .all(|r| r["value"]["op"] == "r"));
        assert_eq!(records[snapshot_rows]["value"]["op"], "c");
        assert_eq!(records[snapshot_rows]["key"]["id"], 10 + n as i64);
        // The replication connection itself is encrypted, not only the queries.
        let ssl_walsenders: i64 = rt
            .block_on(db.query_one(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.backend_type = 'walsender' AND s.ssl",
                &[],
            ))
            .unwrap()
            .get(0);
        assert_eq!(ssl_walsenders, 1, "{}", t.log());
        assert!(t.terminate().success(), "{}", t.log());
        let (code, out) = crate::check::check(
            dir.path(),
            &config(dir.path(), &url, &["public.items"], &extra),
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("(TLS)"), "{out}");
    }
}

#[test]
fn untrusted_certificate_is_refused_with_hint() {
    let pg = PgCluster::start_tls();
    let rt = runtime();
    rt.block_on(pg.create_db("shop"));
    let dir = workdir();
    let other_ca = tributary_testkit::make_ca(dir.path(), "other");
    let url = tls_url(
        &pg,
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other_ca.display()),
    );
    let (code, stderr) = run_config(&config(dir.path(), &url, &["public.items"], ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("could not connect"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(
        stderr.contains("hint: ") && stderr.contains("sslrootcert"),
        "{stderr}"
    );

    // `require` encrypts without checking the certificate, as libpq does.
    let url = tls_url(&pg, "localhost", "sslmode=require");
    let (code, out) =
        crate::check::check(dir.path(), &config(dir.path(), &url, &["public.items"], ""));
    assert!(out.contains("(TLS)"), "{out}");
    assert!(!out.contains("could not connect"), "{out}");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("table public.items does not exist"), "{out}");
}

#[test]
fn plaintext_to_a_tls_only_server_is_refused() {
    let pg = PgCluster::start_tls();
    let rt = runtime();
    rt.block_on(pg.create_db("shop"));
    let dir = workdir();
    let url = tls_url(&pg, "127.0.0.1", "sslmode=disable");
    let (code, stderr) = run_config(&config(dir.path(), &url, &["public.items"], ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no encryption"), "{stderr}");
}
