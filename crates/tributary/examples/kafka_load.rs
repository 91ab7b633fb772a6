//! Load and the peer for `bench/streams.sh`'s Kafka part: produces
//! payments to a topic, or reads them back with a plain librdkafka
//! consumer (every partition assigned from the start), timing both.
//!
//! ```text
//! kafka_load publish BROKERS TOPIC COUNT [RATE]   # RATE msg/s, 0: as fast as acks allow
//! kafka_load drain   BROKERS TOPIC COUNT          # every partition from its start
//! kafka_load follow  BROKERS TOPIC COUNT          # every partition from its end
//! kafka_load create  BROKERS TOPIC PARTITIONS
//! ```
//! `drain` and `follow` print the rate and, per message, the time from its
//! producer timestamp to its receipt (p50/p99, millisecond resolution).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: kafka_load publish|drain|follow|create BROKERS TOPIC COUNT [RATE]";
    let [_, command, brokers, topic, count, rest @ ..] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    match command.as_str() {
        "publish" => {
            let rate: f64 = rest.first().map_or(0.0, |r| r.parse().expect("RATE"));
            publish(brokers, topic, count, rate).await;
        }
        "create" => {
            use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
            let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .create()
                .expect("admin client");
            let partitions = i32::try_from(count).expect("PARTITIONS");
            let created = admin
                .create_topics(
                    &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                )
                .await
                .expect("create topics");
            for result in created {
                result
                    .map_err(|(t, e)| format!("{t}: {e}"))
                    .expect("topic created");
            }
        }
        "drain" => drain(brokers, topic, count, Offset::Beginning),
        "follow" => drain(brokers, topic, count, Offset::End),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

async fn publish(brokers: &str, topic: &str, count: usize, rate: f64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", if rate > 0.0 { "0" } else { "5" })
        .create()
        .expect("producer");
    let began = Instant::now();
    let mut pending = Vec::with_capacity(4096);
    for i in 0..count {
        let key = format!(r#"{{"customer_id": {}}}"#, i % 1000);
        let payload = format!(
            r#"{{"customer_id": {}, "amount": {}.{:02}}}"#,
            i % 1000,
            i % 5000,
            i % 100
        );
        // `send_result` hands back a future that owns nothing of the
        // record, so many can be in flight.
        let mut record = FutureRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((_, back)) => {
                    // The local queue is full: let deliveries finish.
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        if rate > 0.0 {
            let due = began + Duration::from_secs_f64((i + 1) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if pending.len() == 4096 || rate > 0.0 {
            for sent in pending.drain(..) {
                stored(sent.await);
            }
        }
    }
    for sent in pending {
        stored(sent.await);
    }
    let took = began.elapsed().as_secs_f64();
    println!(
        "published {count} in {took:.2} s: {:.0} msg/s",
        count as f64 / took
    );
}

/// A delivery report: the message is stored, or the load stops.
fn stored<E: std::fmt::Debug>(
    delivery: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) {
    let _ = delivery
        .expect("delivery report")
        .map_err(|(e, _)| e)
        .expect("stored");
}

fn drain(brokers: &str, topic: &str, count: usize, from: Offset) {
    let began = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-load-peer")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), from)
                .expect("partition");
        }
    }
    consumer.assign(&assignment).expect("assign");
    let mut latencies = Vec::with_capacity(count);
    while latencies.len() < count {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let sent_ms = message.timestamp().to_millis().unwrap_or(now_ms);
        latencies.push((now_ms - sent_ms).max(0));
    }
    let took = began.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "drained {count} in {took:.2} s: {:.0} msg/s; produced→received p50 {} ms, p99 {} ms",
        count as f64 / took,
        q(0.5),
        q(0.99)
    );
}
