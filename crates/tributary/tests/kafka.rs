//! The Kafka sink against a real Kafka-compatible broker (`tansu`, driven by
//! librdkafka like any Kafka): every event arrives with its id header, keyed
//! by the row so each key stays on one partition and in order, deletes are
//! followed by tombstones; a crash redelivers with the same ids; a broker
//! that goes away for 10 s only pauses delivery.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_testkit::KafkaBroker;

use crate::support::*;

/// One consumed message.
#[derive(Debug)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    id: String,
    value: Option<serde_json::Value>,
}

/// Every message of `topic` (partitions 0..`partitions`) from the start,
/// read by a real consumer until `expected` arrived or `timeout` passed.
fn consume(
    brokers: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "tributary-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(m) = message else { continue };
        let id = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "tributary-id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        out.push(Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            id,
            value: m.payload().map(|p| serde_json::from_slice(p).unwrap()),
        });
    }
    out
}

fn kafka_config(dir: &std::path::Path, pg: &PgCluster, broker: &KafkaBroker) -> String {
    crate::support::retarget_sink(
        &config(dir, &pg.url("app"), &["public.t"], ""),
        &format!(
            "type = \"kafka\"\nbrokers = \"{}\"\ncompression = \"zstd\"\npartitions = 3\n\
             retry_initial = \"100ms\"\nretry_max = \"1s\"",
            broker.brokers()
        ),
    )
}

/// `src:0/16B3F00:2` → (commit, ordinal), the order of events.
fn position(id: &str) -> (u64, u64) {
    let mut parts = id.rsplitn(3, ':');
    let ordinal = parts.next().unwrap().parse().unwrap();
    let (hi, lo) = parts.next().unwrap().split_once('/').unwrap();
    let commit =
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    (commit, ordinal)
}

#[test]
fn every_event_arrives_keyed_and_in_order_per_key_across_a_crash() {
    let pg = PgCluster::start();
    let broker = KafkaBroker::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, 100);
    let dir = workdir();
    let text = kafka_config(dir.path(), &pg, &broker);
    let mut t = Tributary::start_with_fault(dir.path(), &text, Some("sink.after_write:3"));
    crate::capture::wait_for_slot(&rt, &db);
    let (code, out) = crate::check::check(dir.path(), &text);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    sink \"archive\": Kafka at 127.0.0.1:"),
        "{out}"
    );
    // 40 transactions: an update of one of five hot keys and an insert;
    // every 10th also deletes a row.
    for i in 0..40 {
        let mut sql = format!(
            "BEGIN; UPDATE t SET n = n + 1 WHERE id = {}; INSERT INTO t VALUES ({}, {i});",
            i % 5 + 1,
            1000 + i
        );
        if i % 10 == 9 {
            sql.push_str(&format!(" DELETE FROM t WHERE id = {};", 50 + i));
        }
        sql.push_str(" COMMIT;");
        rt.block_on(db.batch_execute(&sql)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", t.log());
    t.restart();

    // 100 reads + 40 updates + 40 inserts + 4 deletes, and 4 tombstones.
    let expected_events = 184;
    let deadline = Instant::now() + Duration::from_secs(90);
    let records = loop {
        let records = consume(
            &broker.brokers(),
            "src.public.t",
            3,
            usize::MAX,
            Duration::from_secs(3),
        );
        let ids: HashSet<&str> = records
            .iter()
            .filter(|r| r.value.is_some())
            .map(|r| r.id.as_str())
            .collect();
        if ids.len() >= expected_events {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected_events} events\n{}",
            ids.len(),
            t.log()
        );
    };
    let events: Vec<&Record> = records.iter().filter(|r| r.value.is_some()).collect();
    let ids: HashSet<&str> = events.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), expected_events);
    let duplicates = events.len() - ids.len();
    assert!(
        duplicates > 0,
        "the crash caused no redelivery:\n{}",
        t.log()
    );
    println!(
        "kafka: {} events found, {duplicates} redelivered duplicates (same ids)",
        ids.len()
    );

    // Keyed: one partition per key; in order per key (a redelivery repeats
    // a stretch, it never goes back before what the key had).
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    // (commit, ordinal) per key, in the order the partition holds them.
    type Positions = Vec<(i64, (u64, u64))>;
    let mut per_key: BTreeMap<&str, Positions> = BTreeMap::new();
    for r in &records {
        let key = r.key.as_deref().expect("every event of t is keyed");
        let p = *partition_of.entry(key).or_insert(r.partition);
        assert_eq!(p, r.partition, "key {key} on two partitions");
        per_key
            .entry(key)
            .or_default()
            .push((r.offset, position(&r.id)));
    }
    assert!(
        partition_of.values().collect::<HashSet<_>>().len() > 1,
        "all keys on one partition"
    );
    for (key, mut list) in per_key {
        list.sort();
        // Each position's first appearance comes in ascending order; a
        // redelivery only repeats what the partition already had.
        let mut seen = HashSet::new();
        let first_seen: Vec<(u64, u64)> = list
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| seen.insert(*p))
            .collect();
        assert!(
            first_seen.windows(2).all(|w| w[0] < w[1]),
            "events of key {key} out of order: {first_seen:?}"
        );
    }
    // A hot key saw its 8 updates in order, the last with n = 8.
    let hot: Vec<&serde_json::Value> = events
        .iter()
        .filter(|r| r.key.as_deref() == Some("{\"id\":1}"))
        .map(|r| r.value.as_ref().unwrap())
        .collect();
    assert_eq!(hot.last().unwrap()["after"]["n"], 8);
    // Every delete is followed by a tombstone for its key.
    let tombstones = records.iter().filter(|r| r.value.is_none()).count();
    assert!(tombstones >= 4, "{tombstones} tombstones");
    let deleted = events
        .iter()
        .filter(|r| r.value.as_ref().unwrap()["op"] == "d")
        .count();
    assert!(deleted >= 4);
    assert!(t.terminate().success(), "{}", t.log());
}

#[test]
fn a_broker_down_for_ten_seconds_pauses_delivery_and_it_resumes() {
    let pg = PgCluster::start();
    let mut broker = KafkaBroker::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    create_table_t(&rt, &db, 20);
    let dir = workdir();
    let mut t = Tributary::start(dir.path(), &kafka_config(dir.path(), &pg, &broker));
    let first = consume(
        &broker.brokers(),
        "src.public.t",
        3,
        20,
        Duration::from_secs(60),
    );
    assert_eq!(first.len(), 20, "{}", t.log());

    broker.stop();
    let down_at = Instant::now();
    let before = confirmed_flush(&rt, &db);
    for i in 0..30 {
        rt.block_on(db.batch_execute(&format!("INSERT INTO t VALUES ({}, 1)", 100 + i)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed()));
    assert!(
        confirmed_flush(&rt, &db) <= before + 1_000,
        "confirmed moved while the broker was down"
    );
    // (librdkafka itself retries for message.timeout.ms before the write
    // fails and the pipeline's backoff takes over.)

    // tansu keeps topics in memory: the restarted broker is empty, so what
    // arrives now is exactly what was committed while it was down.
    broker.restart();
    let records = consume(
        &broker.brokers(),
        "src.public.t",
        3,
        30,
        Duration::from_secs(90),
    );
    let inserted: HashSet<i64> = records
        .iter()
        .filter_map(|r| r.value.as_ref())
        .map(|v| v["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(inserted, (100..130).collect(), "{}", t.log());
    assert!(t.terminate().success(), "{}", t.log());
}
