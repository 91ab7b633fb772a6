//! The NATS source's faults, against a real `nats-server -js`: `kill -9`
//! of Tributary and a restart of the NATS server mid-stream neither lose an
//! event nor apply one twice; a message that is not a row stops the source,
//! or goes to the dead-letter file; the server is reached over verified TLS.

use std::time::Duration;

use async_nats::jetstream;
use tributary_testkit::{free_port, NatsServer};

use crate::stream_support::{read_totals, wait_for_totals, Publisher, Totals, STREAM};
use crate::support::*;
use crate::views::connect;

fn totals_config(dir: &std::path::Path, nats: &NatsServer, port: u16) -> String {
    let transport = format!(
        "type = \"nats\"\nurl = \"{}\"\nstream = \"{STREAM}\"\nsubject = \"payments.>\"",
        nats.url()
    );
    crate::stream_support::totals_config(dir, &transport, port)
}

#[test]
fn kill_9_and_a_broker_restart_neither_lose_nor_repeat_an_event() {
    const EVENTS: usize = 3000;
    let mut nats = NatsServer::start();
    let rt = runtime();
    Publisher::connect(&rt, &nats).create_stream(&rt);
    let dir = workdir();
    let port = free_port();
    let mut t = Tributary::start(dir.path(), &totals_config(dir.path(), &nats, port));

    // Published by a client of its own while Tributary crashes and the
    // server restarts; each message once (its id dedups a retry).
    let url = nats.url();
    let publisher = std::thread::spawn(move || {
        let rt = runtime();
        let js = rt.block_on(async {
            let options = async_nats::ConnectOptions::new().retry_on_initial_connect();
            jetstream::new(options.connect(url).await.unwrap())
        });
        let publisher = Publisher { js };
        let mut rng = fastrand::Rng::with_seed(9);
        let mut expected = Totals::new();
        for i in 0..EVENTS {
            let (customer, amount) = (rng.i32(1..=40), rng.i64(-1000..100_000));
            let payload = format!(r#"{{"customer_id": {customer}, "amount": {amount}}}"#);
            publisher.publish(&rt, "payments.made", &format!("p{i}"), &[], &payload);
            let e = expected.entry(customer).or_default();
            e.0 += 1;
            e.1 += amount;
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(12));
            }
        }
        expected
    });
    let seed = std::env::var("TRIBUTARY_FAULT_SEED").map_or(3, |s| s.parse().unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(rng.u64(300..900)));
        if round == 2 {
            nats.restart();
        } else {
            t.kill9();
            t.restart();
        }
    }
    let expected = publisher.join().unwrap();
    assert!(!t.log().contains("panicked"), "{}", t.log());
    wait_for_totals(&rt, port, &expected, &t);
    // Every message reached the file sink under its stable id.
    let ids: std::collections::HashSet<String> = read_records(&dir.path().join("events.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), EVENTS, "distinct event ids in the file sink");

    // A clean stop acknowledges everything; the view comes back the same.
    assert!(t.terminate().success(), "{}", t.log());
    let acked = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let stream = jetstream::new(client).get_stream(STREAM).await.unwrap();
        let mut consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>("tributary_payments")
            .await
            .unwrap();
        consumer.info().await.unwrap().ack_floor.stream_sequence
    });
    assert_eq!(
        acked, EVENTS as u64,
        "the consumer's ack floor after a clean stop"
    );
    t.restart();
    let view = connect(&rt, &mut t, port);
    drop(view);
    assert_eq!(
        read_totals(&rt, port).as_ref(),
        Some(&expected),
        "after the restart"
    );
    assert!(t.terminate().success(), "{}", t.log());
}

fn payments_to_file(dir: &std::path::Path, nats: &NatsServer, on_error: &str) -> String {
    format!(
        r#"state_dir = "{state}"

[[source]]
name = "payments"
type = "nats"
url = "{url}"
stream = "{STREAM}"
subject = "payments.>"
mode = "append"
columns = ["customer_id integer not null", "amount numeric(12,2) not null"]
on_error = "{on_error}"

[[sink]]
name = "archive"
type = "file"
path = "{events}"
"#,
        state = dir.join("state").display(),
        url = nats.url(),
        events = dir.join("events.jsonl").display(),
    )
}

#[test]
fn a_message_that_is_not_a_row_stops_the_source_until_it_is_set_aside() {
    let nats = NatsServer::start();
    let rt = runtime();
    let publisher = Publisher::connect(&rt, &nats);
    let dir = workdir();
    // Before the stream exists, check says so.
    let out = cli(
        "check",
        dir.path(),
        &payments_to_file(dir.path(), &nats, "stop"),
        &[],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_contains_all(
        &out.stdout,
        &[
            "JetStream stream \"EVENTS\" does not exist",
            "hint: create the stream",
        ],
    );
    publisher.create_stream(&rt);
    let out = cli(
        "check",
        dir.path(),
        &payments_to_file(dir.path(), &nats, "stop"),
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_contains_all(
        &out.stdout,
        &[
            "JetStream stream \"EVENTS\"",
            "reading subject \"payments.>\"",
            "durable consumer \"tributary_payments\" does not exist yet",
        ],
    );

    publisher.publish(
        &rt,
        "payments.made",
        "a",
        &[],
        r#"{"customer_id": 1, "amount": 5}"#,
    );
    publisher.publish(
        &rt,
        "payments.made",
        "b",
        &[],
        r#"{"customer_id": 2, "amount": "secret-amount"}"#,
    );
    publisher.publish(
        &rt,
        "payments.made",
        "c",
        &[],
        r#"{"customer_id": 3, "amount": 7.5}"#,
    );
    let mut t = Tributary::start(dir.path(), &payments_to_file(dir.path(), &nats, "stop"));
    let status = t.wait_exit(Duration::from_secs(30));
    let log = t.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_contains_all(
        &log,
        &[
            "message 2 on subject \"payments.made\" is not a row of public.payments: field \"amount\": not a decimal number",
            "hint: fix the message's producer; to set such messages aside and go on, set on_error = \"dead_letter\"",
        ],
    );
    assert!(!log.contains("secret-amount"), "a value was logged:\n{log}");
    let records = read_records(&dir.path().join("events.jsonl"));
    assert!(
        records.iter().all(|r| r["id"] == "payments:0/1:0"),
        "nothing past the refused message: {records:?}"
    );

    // Set aside: the source goes on, the message is in the dead-letter file.
    std::fs::write(
        dir.path().join("tributary.toml"),
        payments_to_file(dir.path(), &nats, "dead_letter"),
    )
    .unwrap();
    t.restart();
    let records = t.wait_for(2, Duration::from_secs(30));
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["payments:0/1:0", "payments:0/3:0"], "{}", t.log());
    let value = &records[1]["value"];
    assert_eq!(value["after"]["_seq"], 3);
    assert_eq!(value["after"]["amount"], "7.50");
    assert_eq!(value["op"], "c");
    assert_eq!(value["source"]["connector"], "nats");
    assert_eq!(value["source"]["db"], STREAM);
    assert_eq!(records[1]["key"]["_seq"], 3);
    let letters =
        std::fs::read_to_string(dir.path().join("state/dead-letter-payments.jsonl")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.trim()).unwrap();
    assert_eq!(letter["seq"], 2);
    assert_eq!(letter["subject"], "payments.made");
    assert_eq!(letter["reason"], "field \"amount\": not a decimal number");
    assert!(letter["payload"]
        .as_str()
        .unwrap()
        .contains("secret-amount"));
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_nats_source_reads_over_verified_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start_tls();
    let rt = runtime();
    let js = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .add_root_certificates(nats.ca_file())
            .require_tls(true)
            .connect(nats.url())
            .await
            .unwrap();
        jetstream::new(client)
    });
    let publisher = Publisher { js };
    publisher.create_stream(&rt);
    publisher.publish(
        &rt,
        "payments.made",
        "a",
        &[],
        r#"{"customer_id": 1, "amount": 5}"#,
    );
    let dir = workdir();
    let base = payments_to_file(dir.path(), &nats, "stop");
    // The server's certificate is not trusted without its CA.
    let untrusted = base.replace("mode = \"append\"", "mode = \"append\"\nrequire_tls = true");
    let out = cli("check", dir.path(), &untrusted, &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAIL  source \"payments\""),
        "{}",
        out.stdout
    );
    let trusted = base.replace(
        "mode = \"append\"",
        &format!(
            "mode = \"append\"\ntls_ca = \"{}\"",
            nats.ca_file().display()
        ),
    );
    let out = cli("check", dir.path(), &trusted, &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut t = Tributary::start(dir.path(), &trusted);
    let records = t.wait_for(1, Duration::from_secs(30));
    assert_eq!(records[0]["value"]["after"]["amount"], "5.00");
    assert!(t.terminate().success(), "{}", t.log());
}

/// A stream with interest retention drops messages no consumer wants, and
/// this source recreates its consumer after a crash: refused by `check`
/// and `run`, with the reason.
#[test]
fn a_stream_with_interest_retention_is_refused() {
    let nats = NatsServer::start();
    let rt = runtime();
    let publisher = Publisher::connect(&rt, &nats);
    rt.block_on(publisher.js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["payments.>".into()],
        retention: jetstream::stream::RetentionPolicy::Interest,
        ..Default::default()
    }))
    .unwrap();
    let dir = workdir();
    let text = payments_to_file(dir.path(), &nats, "stop");
    let out = cli("check", dir.path(), &text, &[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_contains_all(
        &out.stdout,
        &[
            "has interest retention",
            "hint: a stream with interest retention",
        ],
    );
    let (code, stderr) = run_config(&text);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has interest retention"), "{stderr}");
}

/// Without a subject filter, messages the stream dropped after this
/// source's checkpoint (its limits, here a purge) stop the source rather
/// than leave a silent gap.
#[test]
fn messages_gone_from_the_stream_stop_the_source() {
    let nats = NatsServer::start();
    let rt = runtime();
    let publisher = Publisher::connect(&rt, &nats);
    publisher.create_stream(&rt);
    let dir = workdir();
    let text =
        payments_to_file(dir.path(), &nats, "stop").replace("subject = \"payments.>\"\n", "");
    assert!(!text.contains("subject ="), "{text}");
    publisher.publish(
        &rt,
        "payments.made",
        "a",
        &[],
        r#"{"customer_id": 1, "amount": 5}"#,
    );
    let mut t = Tributary::start(dir.path(), &text);
    t.wait_for(1, Duration::from_secs(30));
    assert!(t.terminate().success(), "{}", t.log());
    // Two more while it is down, then dropped before it reads them.
    publisher.publish(
        &rt,
        "payments.made",
        "b",
        &[],
        r#"{"customer_id": 2, "amount": 6}"#,
    );
    publisher.publish(
        &rt,
        "payments.made",
        "c",
        &[],
        r#"{"customer_id": 3, "amount": 7}"#,
    );
    rt.block_on(async {
        let stream = publisher.js.get_stream(STREAM).await.unwrap();
        stream.purge().await.unwrap();
    });
    publisher.publish(
        &rt,
        "payments.made",
        "d",
        &[],
        r#"{"customer_id": 4, "amount": 8}"#,
    );
    t.restart();
    let status = t.wait_exit(Duration::from_secs(30));
    let log = t.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_contains_all(
        &log,
        &[
            "no longer holds the messages from sequence 2: its first message is 4",
            "hint: the stream's limits",
        ],
    );
    assert_eq!(
        read_records(&dir.path().join("events.jsonl")).len(),
        1,
        "nothing past the gap"
    );
}
