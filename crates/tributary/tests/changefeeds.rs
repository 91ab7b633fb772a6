//! Changefeeds: sinks that follow a view (`[[sink]] view = "…"`). The
//! asset overview over three services' databases is followed by a
//! PostgreSQL sink, whose table must equal the overview computed from
//! scratch by PostgreSQL after every transaction, through a SIGTERM and a
//! `kill -9`; and by a NATS sink, whose messages replayed by key (the
//! latest wins, `d` deletes) give the same rows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tributary_testkit::{free_port, NatsServer};

use crate::nats::stream_messages;
use crate::support::*;
use crate::views::{fast_cluster, views_config_with, Scenario, OVERVIEW};

const COLUMNS: &str = "customer_id, cash, stocks, deposits, total, holdings";

fn config(dir: &std::path::Path, pg: &PgCluster, nats: &NatsServer, port: u16) -> String {
    let mut text = views_config_with(dir, pg, port, &[("customer_overview", OVERVIEW)]);
    text.push_str(&format!(
        r#"
[[sink]]
name = "replica"
type = "postgres"
url = "{replica}"
view = "customer_overview"

[[sink]]
name = "bus"
type = "nats"
url = "{nats}"
stream = "OVERVIEW"
subject = "overview"
view = "customer_overview"
"#,
        replica = pg.url("replica"),
        nats = nats.url(),
    ));
    text
}

/// Waits until the sink's table equals the overview computed by PostgreSQL.
fn assert_table_converges(
    s: &Scenario,
    replica: &tokio_postgres::Client,
    t: &Tributary,
    after: &str,
) {
    let want = s.expected();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = s.rt.block_on(replica.simple_query(&format!(
            "SELECT {COLUMNS} FROM public.customer_overview ORDER BY customer_id"
        )));
        // The table appears with the first event.
        if let Ok(messages) = got {
            let rows: Vec<Vec<Option<String>>> = messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect();
            if rows == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {after}\ntable:  {rows:?}\noracle: {want:?}\n{}",
                t.log()
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "no table after {after}\n{}",
                t.log()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_changefeed_keeps_a_postgresql_table_and_a_subject_equal_to_the_view_through_crashes() {
    let pg = fast_cluster();
    let nats = NatsServer::start();
    let mut s = Scenario::start(&pg, 21);
    let replica = s.rt.block_on(pg.create_db("replica"));
    for _ in 0..30 {
        s.step();
    }
    let dir = workdir();
    let port = free_port();
    let mut t = Tributary::start(dir.path(), &config(dir.path(), &pg, &nats, port));
    assert_table_converges(&s, &replica, &t, "the first start");
    for phase in 0..3 {
        for _ in 0..50 {
            let after = s.step();
            assert_table_converges(&s, &replica, &t, &after);
        }
        match phase {
            0 => assert!(t.terminate().success(), "{}", t.log()),
            1 => t.kill9(),
            _ => break,
        }
        // Changes while it is down reach the table after the restart.
        for _ in 0..10 {
            s.step();
        }
        t.restart();
        assert_table_converges(&s, &replica, &t, &format!("restart {phase}"));
    }
    // The subject's messages, replayed by key, are the view's rows.
    let want = s.expected();
    let mut replayed: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for (subject, id, key, value) in stream_messages(&s.rt, &nats.url(), "OVERVIEW") {
        assert_eq!(subject, "overview");
        assert!(ids.insert(id.clone()), "two messages with id {id}");
        assert!(id.starts_with("customer_overview:"), "{id}");
        let op = value["op"].as_str().unwrap();
        match op {
            "c" | "u" => {
                let after = &value["after"];
                let text = |v: &serde_json::Value| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                };
                let row = COLUMNS.split(", ").map(|c| text(&after[c])).collect();
                replayed.insert(key, row);
            }
            "d" => {
                assert!(
                    replayed.remove(&key).is_some(),
                    "a delete of a key never created: {key}"
                );
            }
            other => panic!("op {other}"),
        }
    }
    let replayed: Vec<Vec<Option<String>>> = replayed.into_values().collect();
    let mut want_sorted = want.clone();
    want_sorted.sort_by_key(|r| r[0].clone());
    let mut replayed_sorted = replayed;
    replayed_sorted.sort_by_key(|r| r[0].clone());
    assert_eq!(replayed_sorted, want_sorted, "the subject replayed by key");
    assert!(
        want.len() > 20,
        "the scenario left {} customers",
        want.len()
    );
    assert!(t.terminate().success(), "{}", t.log());
}
