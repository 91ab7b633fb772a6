//! The NATS JetStream sink against a real `nats-server -js`: the stream is
//! created, every event lands once with its id as `Nats-Msg-Id`, and a batch
//! redelivered after a crash is dropped by JetStream's duplicate window.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use tributary_testkit::NatsServer;

use crate::support::*;

/// Every message of `stream`: (subject, msg id, key header, payload JSON).
pub fn stream_messages(
    rt: &tokio::runtime::Runtime,
    url: &str,
    stream: &str,
) -> Vec<(String, String, String, Value)> {
    rt.block_on(async {
        // `nats://user:pass@host` or `nats://token@host`, as options.
        let (options, url) = match url.strip_prefix("nats://").and_then(|r| r.split_once('@')) {
            Some((creds, host)) => (
                match creds.split_once(':') {
                    Some((u, p)) => {
                        async_nats::ConnectOptions::with_user_and_password(u.into(), p.into())
                    }
                    None => async_nats::ConnectOptions::with_token(creds.into()),
                },
                format!("nats://{host}"),
            ),
            None => (async_nats::ConnectOptions::new(), url.to_owned()),
        };
        let client = options.connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let Ok(mut s) = js.get_stream(stream).await else {
            return Vec::new(); // not created yet
        };
        let last = s.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = s.get_raw_message(seq).await.unwrap();
            let header = |name: &str| {
                m.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push((
                m.subject.to_string(),
                header("Nats-Msg-Id"),
                header("Tributary-Key"),
                serde_json::from_slice(&m.payload).unwrap(),
            ));
        }
        out
    })
}

fn sink_config(dir: &std::path::Path, pg: &PgCluster, nats: &NatsServer) -> String {
    crate::support::retarget_sink(
        &config(dir, &pg.url("app"), &["public.t"], ""),
        &format!(
            "type = \"nats\"\nurl = \"{}\"\nstream = \"CDC\"",
            nats.url()
        ),
    )
}

#[test]
fn every_event_lands_once_even_after_a_crash() {
    let pg = PgCluster::start();
    let nats = NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, 100);
    let dir = workdir();
    // Crash after the 3rd batch is stored in JetStream but not checkpointed.
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &sink_config(dir.path(), &pg, &nats),
        Some("sink.after_write:3"),
    );
    crate::capture::wait_for_slot(&rt, &db);
    let (code, out) = crate::check::check(dir.path(), &sink_config(dir.path(), &pg, &nats));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    sink \"archive\": JetStream stream \"CDC\" at nats://"),
        "{out}"
    );
    for i in 0..40 {
        rt.block_on(db.batch_execute(&format!("INSERT INTO t VALUES ({}, 1)", 1000 + i)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", t.log());
    t.restart();

    let expected = 140;
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let m = stream_messages(&rt, &nats.url(), "CDC");
        if m.len() >= expected {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} messages\n{}",
            m.len(),
            t.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Give a late duplicate the chance to show up before counting.
    std::thread::sleep(Duration::from_millis(500));
    let messages_after = stream_messages(&rt, &nats.url(), "CDC");
    assert_eq!(messages_after.len(), messages.len());
    assert_eq!(messages.len(), expected, "JetStream stored a duplicate");
    let ids: HashSet<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids.len(), expected);
    assert!(t.log().contains("fault injected"), "{}", t.log());
    assert!(
        t.log()
            .contains("JetStream dropped redelivered messages as duplicates"),
        "the crash caused no redelivery, so dedup was not exercised:\n{}",
        t.log()
    );
    let (subject, id, key, value) = &messages[expected - 1];
    assert_eq!(subject, "src.public.t");
    assert!(id.starts_with("src:"), "{id}");
    assert_eq!(key, "{\"id\":1039}");
    assert_eq!(value["op"], "c");
    assert_eq!(value["after"]["id"], 1039);
    let reads = messages.iter().filter(|m| m.3["op"] == "r").count();
    assert_eq!(reads, 100);
    assert!(t.terminate().success());
}

#[test]
fn an_existing_stream_that_misses_the_subjects_is_refused() {
    let pg = PgCluster::start();
    let nats = NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)"))
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        async_nats::jetstream::new(client)
            .create_stream(async_nats::jetstream::stream::Config {
                name: "CDC".into(),
                subjects: vec!["other.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
    });
    let dir = workdir();
    let (code, out) = crate::check::check(dir.path(), &sink_config(dir.path(), &pg, &nats));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  sink \"archive\": JetStream stream \"CDC\" does not capture the subjects src.*.*"),
        "{out}"
    );
    let (code, stderr) = run_config(&sink_config(dir.path(), &pg, &nats));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("JetStream stream \"CDC\" does not capture the subjects src.*.*"),
        "{stderr}"
    );
}

#[test]
fn a_broker_down_for_ten_seconds_pauses_capture_and_loses_nothing() {
    let pg = PgCluster::start();
    let mut nats = NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, 20);
    let dir = workdir();
    let text = sink_config(dir.path(), &pg, &nats).replace(
        "stream = \"CDC\"",
        "stream = \"CDC\"\nretry_initial = \"50ms\"\nretry_max = \"1s\"",
    );
    let mut t = Tributary::start(dir.path(), &text);
    wait_until(&t, Duration::from_secs(60), || {
        stream_messages(&rt, &nats.url(), "CDC").len() >= 20
    });
    let confirmed = || confirmed_flush(&rt, &db);

    nats.stop();
    let down_at = Instant::now();
    let before_writes = confirmed();
    for i in 0..30 {
        rt.block_on(db.batch_execute(&format!("INSERT INTO t VALUES ({}, 1)", 100 + i)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed()));
    // Nothing durable, so nothing confirmed past what was before the writes.
    assert!(
        confirmed() <= before_writes + 1_000,
        "confirmed moved while the broker was down"
    );
    assert!(
        t.log().contains("sink write failed; retrying"),
        "{}",
        t.log()
    );

    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let m = stream_messages(&rt, &nats.url(), "CDC");
        if m.len() >= 50 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 50 messages\n{}",
            m.len(),
            t.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(messages.len(), 50);
    let ids: HashSet<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids.len(), 50, "a duplicate was stored");
    let inserted: HashSet<i64> = messages
        .iter()
        .filter(|m| m.3["op"] == "c")
        .map(|m| m.3["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(inserted, (100..130).collect());
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_poison_event_is_dead_lettered_or_stops_the_pipeline() {
    let pg = PgCluster::start();
    let nats = NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY, body text)"))
        .unwrap();
    let insert_poison = "INSERT INTO t VALUES (1, 'small');
         INSERT INTO t VALUES (2, repeat('x', 2000000));
         INSERT INTO t VALUES (3, 'small');";

    // on_error = "dead_letter": the 2 MB event (over NATS's 1 MB max_payload)
    // goes to the file with its reason; the others flow.
    let dir = workdir();
    let letters = dir.path().join("dead.jsonl");
    let text = sink_config(dir.path(), &pg, &nats).replace(
        "stream = \"CDC\"",
        &format!(
            "stream = \"CDC\"\non_error = \"dead_letter\"\ndead_letter_path = \"{}\"",
            letters.display()
        ),
    );
    let mut t = Tributary::start(dir.path(), &text);
    crate::capture::wait_for_slot(&rt, &db);
    rt.block_on(db.batch_execute(insert_poison)).unwrap();
    // The warning follows the dead letter's write, so wait for it too: it
    // proves the file is complete before it is read.
    wait_until(&t, Duration::from_secs(60), || {
        stream_messages(&rt, &nats.url(), "CDC").len() >= 2
            && t.log().contains("event refused; written as a dead letter")
    });
    let stored: Vec<i64> = stream_messages(&rt, &nats.url(), "CDC")
        .iter()
        .map(|m| m.3["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, [1, 3]);
    let dead = read_records(&letters);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["sink"], "archive");
    assert_eq!(dead[0]["value"]["after"]["id"], 2);
    assert_eq!(dead[0]["topic"], "src.public.t");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("max_payload"),
        "{}",
        dead[0]["reason"]
    );
    assert!(!t.log().contains("xxxxxxxx"), "a row value was logged");
    assert!(t.terminate().success(), "{}", t.log());

    // The default, on_error = "stop": a fresh pipeline meets the same event
    // in its snapshot and exits 1 naming it, with a hint.
    let dir = workdir();
    let text = sink_config(dir.path(), &pg, &nats).replace(
        "stream = \"CDC\"",
        "stream = \"CDC2\"\nsubject = \"two.{table}\"",
    );
    let mut t = Tributary::start(dir.path(), &text);
    let status = t.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", t.log());
    let log = t.log();
    assert!(
        log.contains("error: sink \"archive\" refused event src:"),
        "{log}"
    );
    assert!(
        log.contains("hint: set on_error = \"dead_letter\""),
        "{log}"
    );
}

#[test]
fn with_one_sink_down_the_other_keeps_receiving_and_the_slot_waits() {
    let pg = PgCluster::start();
    let mut nats = NatsServer::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute("CREATE TABLE t (id int PRIMARY KEY)"))
        .unwrap();
    let dir = workdir();
    // The file sink "archive" plus a NATS sink "bus".
    let text = format!(
        "{}\n[[sink]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"{}\"\nstream = \"CDC\"\nretry_max = \"500ms\"\n",
        config(dir.path(), &pg.url("app"), &["public.t"], ""),
        nats.url()
    );
    let mut t = Tributary::start(dir.path(), &text);
    crate::capture::wait_for_slot(&rt, &db);
    let confirmed = || confirmed_flush(&rt, &db);
    rt.block_on(db.batch_execute("INSERT INTO t VALUES (0)"))
        .unwrap();
    t.wait_for(1, Duration::from_secs(60));

    nats.stop();
    let before = confirmed();
    for i in 1..=10 {
        rt.block_on(db.batch_execute(&format!("INSERT INTO t VALUES ({i})")))
            .unwrap();
    }
    // The file sink gets all ten while the bus is down...
    let records = t.wait_for(11, Duration::from_secs(30));
    assert_eq!(records.last().unwrap()["key"]["id"], 10);
    std::thread::sleep(Duration::from_secs(2));
    // ...but the slot is not confirmed past what the bus has.
    assert!(
        confirmed() <= before + 1_000,
        "confirmed passed the down sink"
    );

    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = stream_messages(&rt, &nats.url(), "CDC");
        if m.len() == 11 && confirmed() > before + 1_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 11 on the bus\n{}",
            m.len(),
            t.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn user_password_and_token_authenticate_and_a_wrong_password_is_named_not_printed() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(
        db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);"),
    )
    .unwrap();

    // User and password (from the environment).
    let nats = NatsServer::start_with(&["--user", "cdc", "--pass", "s3cret-pw"]);
    let dir = workdir();
    let text = sink_config(dir.path(), &pg, &nats).replace(
        "stream = \"CDC\"",
        "stream = \"CDC\"\nuser = \"cdc\"\npassword_env = \"NATS_PW\"",
    );
    let wrong = cli("check", dir.path(), &text, &[("NATS_PW", Some("wrong-pw"))]);
    assert_eq!(wrong.code, 1, "{}{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stdout.contains("FAIL  sink \"archive\""),
        "{}",
        wrong.stdout
    );
    assert!(
        !(wrong.stdout + &wrong.stderr).contains("wrong-pw"),
        "the password was printed"
    );
    let mut t = Tributary::start_with_env(dir.path(), &text, &[("NATS_PW", "s3cret-pw")]);
    let authed = nats.url().replace("nats://", "nats://cdc:s3cret-pw@");
    wait_until(&t, Duration::from_secs(60), || {
        stream_messages(&rt, &authed, "CDC").len() >= 2
    });
    assert!(t.terminate().success(), "{}", t.log());
    assert!(!t.log().contains("s3cret-pw"), "the password was logged");

    // A token (from the environment).
    let nats = NatsServer::start_with(&["--auth", "t0ken-value"]);
    let dir = workdir();
    let text = sink_config(dir.path(), &pg, &nats).replace(
        "stream = \"CDC\"",
        "stream = \"CDC\"\ntoken_env = \"NATS_TOKEN\"",
    );
    let mut t = Tributary::start_with_env(dir.path(), &text, &[("NATS_TOKEN", "t0ken-value")]);
    let authed = nats.url().replace("nats://", "nats://t0ken-value@");
    wait_until(&t, Duration::from_secs(60), || {
        stream_messages(&rt, &authed, "CDC").len() >= 2
    });
    assert!(t.terminate().success(), "{}", t.log());
    assert!(!t.log().contains("t0ken-value"), "the token was logged");
}

#[test]
fn tls_with_the_servers_ca_delivers_and_an_untrusted_server_is_refused() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(
        db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);"),
    )
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start_tls();
    let dir = workdir();
    // Without the CA the server's certificate is not trusted.
    let untrusted = sink_config(dir.path(), &pg, &nats)
        .replace("stream = \"CDC\"", "stream = \"CDC\"\nrequire_tls = true");
    let out = cli("check", dir.path(), &untrusted, &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAIL  sink \"archive\""),
        "{}",
        out.stdout
    );

    let text = sink_config(dir.path(), &pg, &nats).replace(
        "stream = \"CDC\"",
        &format!(
            "stream = \"CDC\"\ntls_ca = \"{}\"",
            nats.ca_file().display()
        ),
    );
    let mut t = Tributary::start(dir.path(), &text);
    let messages = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(nats.ca_file())
            .require_tls(true)
            .connect(nats.url())
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = js.get_stream("CDC").await {
                let n = s.info().await.unwrap().state.messages;
                if n >= 2 {
                    break n;
                }
            }
            assert!(Instant::now() < deadline, "no messages over TLS");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(messages, 2, "{}", t.log());
    assert!(t.terminate().success(), "{}", t.log());
}
