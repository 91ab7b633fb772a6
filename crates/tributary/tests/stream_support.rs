//! What the stream-source tests share: a JetStream publisher, and the
//! `totals` view (per customer: payments and their sum) that the crash
//! tests of the NATS and Kafka sources read to tell a lost or repeated
//! message.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::HeaderMap;
use tributary_testkit::NatsServer;

use crate::support::*;

/// Events on one stream: coupons (upserted by id) and payments (appended).
pub(crate) const STREAM: &str = "EVENTS";

/// A JetStream client that publishes and waits for each message's ack.
pub(crate) struct Publisher {
    pub(crate) js: jetstream::Context,
}

impl Publisher {
    pub(crate) fn connect(rt: &tokio::runtime::Runtime, nats: &NatsServer) -> Self {
        let js = rt.block_on(async {
            let client = async_nats::connect(nats.url()).await.unwrap();
            jetstream::new(client)
        });
        Publisher { js }
    }

    pub(crate) fn create_stream(&self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.js.create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec!["coupons.>".into(), "payments.>".into()],
            ..Default::default()
        }))
        .unwrap();
    }

    /// Publishes until JetStream stores it (retried while the server is
    /// away; the message id makes a retry land once); its stream sequence.
    pub(crate) fn publish(
        &self,
        rt: &tokio::runtime::Runtime,
        subject: &str,
        id: &str,
        headers: &[(&str, &str)],
        payload: &str,
    ) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut map = HeaderMap::new();
            map.insert("Nats-Msg-Id", id);
            for (k, v) in headers {
                map.insert(*k, *v);
            }
            let sent = rt.block_on(async {
                let ack = self
                    .js
                    .publish_with_headers(subject.to_owned(), map, payload.to_owned().into())
                    .await?;
                tokio::time::timeout(Duration::from_secs(2), ack)
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            });
            match sent {
                Ok(ack) => return ack.sequence,
                Err(e) => {
                    assert!(Instant::now() < deadline, "could not publish {id}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// A config with one append-mode `payments` source (its `type` and
/// transport keys in `transport`), the `totals` view over it on the query
/// endpoint at `port`, and a file sink.
pub(crate) fn totals_config(dir: &std::path::Path, transport: &str, port: u16) -> String {
    format!(
        r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[[source]]
name = "payments"
{transport}
mode = "append"
columns = ["customer_id integer not null", "amount bigint not null"]

[[view]]
name = "totals"
sql = "SELECT customer_id, count(*) AS n, sum(amount) AS total FROM payments.public.payments GROUP BY customer_id"

[[sink]]
name = "archive"
type = "file"
path = "{events}"
"#,
        state = dir.join("state").display(),
        events = dir.join("events.jsonl").display(),
    )
}

/// Per customer: (payments, their sum).
pub(crate) type Totals = std::collections::BTreeMap<i32, (u64, i64)>;

/// Waits until the view `totals` equals `expected`, failing as soon as it
/// holds more rows than were sent (a message applied twice).
pub(crate) fn wait_for_totals(
    rt: &tokio::runtime::Runtime,
    port: u16,
    expected: &Totals,
    t: &Tributary,
) {
    let sent: u64 = expected.values().map(|v| v.0).sum();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = read_totals(rt, port);
        if got.as_ref() == Some(expected) {
            return;
        }
        if let Some(got) = &got {
            let n: u64 = got.values().map(|v| v.0).sum();
            assert!(
                n <= sent,
                "a message was applied twice: {n} rows of {sent}\n{}",
                t.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "view {got:?}\nwanted {expected:?}\n{}",
            t.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The view `totals` as totals, or `None` while the server is not up.
pub(crate) fn read_totals(rt: &tokio::runtime::Runtime, port: u16) -> Option<Totals> {
    let url = format!("host=127.0.0.1 port={port} user=app dbname=tributary");
    let (client, conn) = rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .ok()?;
    rt.spawn(async move {
        let _ = conn.await;
    });
    let rows = rt
        .block_on(client.simple_query("SELECT * FROM totals"))
        .ok()?;
    Some(
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap().parse().unwrap(),
                    (
                        r.get(1).unwrap().parse().unwrap(),
                        r.get(2).unwrap().parse().unwrap(),
                    ),
                )),
                _ => None,
            })
            .collect(),
    )
}
