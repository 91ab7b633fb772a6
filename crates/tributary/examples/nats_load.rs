//! Load and the peer for `bench/streams.sh`: publishes payments to a
//! JetStream subject, or drains them with a plain durable pull consumer
//! (what any service reading the subject would do), timing both.
//!
//! ```text
//! nats_load publish URL STREAM SUBJECT COUNT [RATE]   # RATE msg/s, 0: as fast as acks allow
//! nats_load drain   URL STREAM SUBJECT COUNT NAME     # a durable consumer NAME, from the start
//! nats_load follow  URL STREAM SUBJECT COUNT NAME     # a new consumer NAME, new messages only
//! nats_load send    URL STREAM SUBJECT - JSON         # one message (the demo's coupon events)
//! ```
//! `publish` and `send` create STREAM (capturing `<first token of SUBJECT>.>`)
//! if it is missing.
//! `drain` and `follow` print the rate and, per message, the time from the
//! server's publish timestamp to its receipt (p50/p99).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy};
use futures_util::StreamExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: nats_load publish|drain|follow|send URL STREAM SUBJECT COUNT|- [RATE|NAME|JSON]";
    let [_, command, url, stream, subject, count, rest @ ..] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let count: usize = if command == "send" {
        1
    } else {
        count.parse().expect("COUNT is a number")
    };
    let client = async_nats::connect(url.as_str()).await.expect("connect");
    let js = jetstream::new(client.clone());
    match command.as_str() {
        "publish" => {
            let rate: f64 = rest
                .first()
                .map_or(0.0, |r| r.parse().expect("RATE is a number"));
            ensure_stream(&js, stream, subject).await;
            publish(&js, subject, count, rate).await;
        }
        "send" => {
            let json = rest.first().expect(usage);
            ensure_stream(&js, stream, subject).await;
            let ack = js
                .publish(subject.clone(), json.clone().into())
                .await
                .expect("publish");
            let stored = ack.await.expect("stored");
            println!("published to {subject}: sequence {}", stored.sequence);
        }
        "drain" | "follow" => {
            let name = rest.first().expect(usage);
            let began = Instant::now();
            let stream = js.get_stream(stream.as_str()).await.expect("stream exists");
            let consumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some(name.clone()),
                    deliver_policy: if command == "drain" {
                        DeliverPolicy::All
                    } else {
                        DeliverPolicy::New
                    },
                    ack_policy: AckPolicy::All,
                    filter_subject: subject.clone(),
                    max_ack_pending: 65_536,
                    ..Default::default()
                })
                .await
                .expect("consumer");
            drain(consumer, count, began).await;
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    client.flush().await.expect("flush");
}

/// The stream, created to capture `<first token of subject>.>` if missing.
async fn ensure_stream(js: &jetstream::Context, stream: &str, subject: &str) {
    let token = subject.split('.').next().unwrap_or(subject);
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.to_owned(),
        subjects: vec![format!("{token}.>")],
        ..Default::default()
    })
    .await
    .expect("stream");
}

async fn publish(js: &jetstream::Context, subject: &str, count: usize, rate: f64) {
    let began = Instant::now();
    let mut acks = Vec::with_capacity(1024);
    for i in 0..count {
        let payload = format!(
            r#"{{"customer_id": {}, "amount": {}.{:02}}}"#,
            i % 1000,
            i % 5000,
            i % 100
        );
        acks.push(
            js.publish(subject.to_owned(), payload.into())
                .await
                .expect("publish"),
        );
        if rate > 0.0 {
            let due = began + Duration::from_secs_f64((i + 1) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if acks.len() == 1024 || rate > 0.0 {
            for ack in acks.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored");
    }
    let took = began.elapsed().as_secs_f64();
    println!(
        "published {count} in {took:.2} s: {:.0} msg/s",
        count as f64 / took
    );
}

/// Receives `count` messages; the rate counts from `began` (before the
/// consumer was created), as a service starting to read would see it.
async fn drain(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    count: usize,
    began: Instant,
) {
    let mut messages = consumer.messages().await.expect("messages");
    let mut latencies = Vec::with_capacity(count);
    let mut last = None;
    for n in 1..=count {
        let message = messages.next().await.expect("open").expect("message");
        let info = message.info().expect("jetstream message");
        let published_us = (info.published.unix_timestamp_nanos() / 1000) as i64;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros() as i64;
        latencies.push((now_us - published_us).max(0));
        if n % 1000 == 0 || n == count {
            message.ack().await.expect("ack");
        }
        last = Some(message);
    }
    drop(last);
    let took = began.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "drained {count} in {took:.2} s: {:.0} msg/s; publish→received p50 {:.1} ms, p99 {:.1} ms",
        count as f64 / took.max(1e-9),
        q(0.5),
        q(0.99)
    );
}
