//! Kafka topics as sources, against a real Kafka-compatible broker (`tansu`,
//! written to by librdkafka like any Kafka): messages spread over three
//! partitions become a table's rows, and a view over them equals what was
//! produced, through `kill -9` mid-stream. The batches formed before a
//! crash are formed again the same after it (same messages under the same
//! ids), so no message is applied twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tributary_testkit::{free_port, KafkaBroker};

use crate::stream_support::{totals_config, wait_for_totals, Totals};
use crate::support::*;

fn create_topic(rt: &tokio::runtime::Runtime, broker: &KafkaBroker, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let created = rt.block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ));
    assert!(created.unwrap().iter().all(Result::is_ok), "topic {topic}");
}

fn config(dir: &std::path::Path, broker: &KafkaBroker, port: u16) -> String {
    let transport = format!(
        "type = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"payments\"]",
        broker.brokers()
    );
    totals_config(dir, &transport, port)
}

#[test]
fn messages_on_three_partitions_are_applied_once_through_kill_9() {
    const MESSAGES: usize = 2000;
    let broker = KafkaBroker::start();
    let rt = runtime();
    create_topic(&rt, &broker, "payments", 3);
    let dir = workdir();
    let port = free_port();
    // The first run dies after the file sink wrote its 3rd batch, before
    // the checkpoint: the batches recorded by then are formed again.
    let mut t = Tributary::start_with_fault(
        dir.path(),
        &config(dir.path(), &broker, port),
        Some("sink.after_write:3"),
    );

    let brokers = broker.brokers();
    let producer = std::thread::spawn(move || {
        let rt = runtime();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .unwrap();
        let mut rng = fastrand::Rng::with_seed(12);
        let mut expected = Totals::new();
        for i in 0..MESSAGES {
            let (customer, amount) = (rng.i32(1..=30), rng.i64(-500..50_000));
            let key = format!(r#"{{"customer_id": {customer}}}"#);
            let payload = format!(r#"{{"customer_id": {customer}, "amount": {amount}}}"#);
            rt.block_on(producer.send(
                FutureRecord::to("payments").key(&key).payload(&payload),
                Duration::from_secs(30),
            ))
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
            let e = expected.entry(customer).or_default();
            e.0 += 1;
            e.1 += amount;
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(15));
            }
        }
        expected
    });
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the fault did not fire:\n{}", t.log());
    t.restart();
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.u64(300..900)));
        t.kill9();
        t.restart();
    }
    let expected = producer.join().unwrap();
    wait_for_totals(&rt, port, &expected, &t);
    // Each id stands for one message, however often a crash made it go out.
    let mut by_id: HashMap<String, serde_json::Value> = HashMap::new();
    for record in read_records(&dir.path().join("events.jsonl")) {
        let id = record["id"].as_str().unwrap().to_owned();
        let after = record["value"]["after"].clone();
        if let Some(earlier) = by_id.insert(id.clone(), after.clone()) {
            assert_eq!(earlier, after, "id {id} named two different messages");
        }
    }
    assert_eq!(by_id.len(), MESSAGES, "distinct event ids in the file sink");
    let mut positions: Vec<(String, i64, i64)> = by_id
        .values()
        .map(|a| {
            (
                a["_topic"].as_str().unwrap().to_owned(),
                a["_partition"].as_i64().unwrap(),
                a["_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    positions.sort();
    positions.dedup();
    assert_eq!(
        positions.len(),
        MESSAGES,
        "each message once, by topic, partition and offset"
    );
    assert!(
        positions.iter().any(|p| p.1 == 2),
        "all three partitions were read"
    );
    let log = t.log();
    let replays = log
        .split("replayed=")
        .skip(1)
        .filter(|rest| !rest.starts_with('0'))
        .count();
    assert!(replays > 0, "no recorded batch was formed again:\n{log}");
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn keyed_messages_upsert_and_tombstones_delete() {
    let broker = KafkaBroker::start();
    let rt = runtime();
    create_topic(&rt, &broker, "coupons", 2);
    let dir = workdir();
    let port = free_port();
    let text = format!(
        r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[[source]]
name = "coupons"
type = "kafka"
brokers = "{brokers}"
topics = ["coupons"]
mode = "upsert"
columns = ["id bigint not null", "customer_id integer not null", "amount numeric(10,2) not null"]
key = ["id"]
on_error = "dead_letter"

[[view]]
name = "per_customer"
sql = "SELECT customer_id, count(*) AS n, sum(amount) AS total FROM coupons.public.coupons GROUP BY customer_id"
"#,
        state = dir.path().join("state").display(),
        brokers = broker.brokers(),
    );
    let out = cli("check", dir.path(), &text, &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_contains_all(
        &out.stdout,
        &[
            "topics coupons (2 partitions)",
            "group \"tributary_coupons\"",
        ],
    );
    let missing = cli(
        "check",
        dir.path(),
        &text.replace("[\"coupons\"]", "[\"nope\"]"),
        &[],
    );
    assert_eq!(missing.code, 1, "{}{}", missing.stdout, missing.stderr);
    assert_contains_all(
        &missing.stdout,
        &[
            "Kafka topic \"nope\" does not exist",
            "hint: create the topic",
        ],
    );
    let mut t = Tributary::start(dir.path(), &text);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(44);
    // id → (customer, amount in cents): the latest message per key.
    let mut coupons: BTreeMap<i64, (i32, i64)> = BTreeMap::new();
    let mut poison = 0;
    for i in 0..600 {
        let id = rng.i64(1..=80);
        let key = format!(r#"{{"id": {id}}}"#);
        let payload = if rng.u8(..5) == 0 {
            coupons.remove(&id);
            None
        } else if i % 97 == 0 {
            poison += 1;
            Some(r#"{"id": 1, "customer_id": "x", "amount": 1}"#.to_owned())
        } else {
            let (customer, cents) = (rng.i32(1..=9), rng.i64(0..100_000));
            coupons.insert(id, (customer, cents));
            Some(format!(
                r#"{{"id": {id}, "customer_id": {customer}, "amount": "{}.{:02}"}}"#,
                cents / 100,
                cents % 100
            ))
        };
        let mut record = FutureRecord::to("coupons").key(&key);
        if let Some(payload) = &payload {
            record = record.payload(payload);
        }
        rt.block_on(producer.send(record, Duration::from_secs(30)))
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
    }
    let mut want: BTreeMap<i32, (u64, i64)> = BTreeMap::new();
    for (customer, cents) in coupons.values() {
        let e = want.entry(*customer).or_default();
        e.0 += 1;
        e.1 += cents;
    }
    let want: Vec<Vec<Option<String>>> = want
        .into_iter()
        .map(|(c, (n, cents))| {
            vec![
                Some(c.to_string()),
                Some(n.to_string()),
                Some(format!("{}.{:02}", cents / 100, cents % 100)),
            ]
        })
        .collect();
    let view = crate::views::connect(&rt, &mut t, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = crate::views::text_rows(
            &rt,
            &view,
            "SELECT * FROM per_customer ORDER BY customer_id",
        );
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "view {got:?}\nwanted {want:?}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let letters =
        std::fs::read_to_string(dir.path().join("state/dead-letter-coupons.jsonl")).unwrap();
    assert!(poison > 2);
    assert_eq!(letters.lines().count(), poison, "{letters}");
    assert!(
        letters.contains("coupons[")
            && letters.contains("field \\\"customer_id\\\": a string is not a number"),
        "{letters}"
    );
    assert!(t.terminate().success(), "{}", t.log());
}
