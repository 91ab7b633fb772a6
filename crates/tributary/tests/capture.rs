//! Snapshot, streaming and their handoff.

use std::time::Duration;

use crate::support::*;

#[test]
fn snapshot_then_stream_then_clean_restart() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("cash"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 'owner' || g, g * 1.5 FROM generate_series(1, 100) g;",
    ))
    .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(dir.path(), &config(dir.path(), &pg.url("cash"), &["public.accounts"], ""));
    let records = t.wait_for(100, Duration::from_secs(60));
    assert!(changes(&records).iter().all(|r| r["value"]["op"] == "r"));
    assert_eq!(records[0]["value"]["source"]["snapshot"], "first");
    assert_eq!(records[99]["value"]["source"]["snapshot"], "last");
    assert_eq!(records[0]["topic"], "src.public.accounts");

    rt.block_on(db.batch_execute(
        "INSERT INTO accounts VALUES (101, 'new', 1);
         UPDATE accounts SET balance = 0 WHERE id = 1;
         DELETE FROM accounts WHERE id = 2;",
    ))
    .unwrap();
    // 100 reads + c + u + d + tombstone
    let records = t.wait_for(104, Duration::from_secs(30));
    let ops: Vec<&str> = records[100..].iter().map(|r| r["value"]["op"].as_str().unwrap_or("tombstone")).collect();
    assert_eq!(ops, ["c", "u", "d", "tombstone"]);
    assert_eq!(records[101]["value"]["after"]["balance"], "0.00");
    assert_eq!(records[102]["value"]["before"]["id"], 2);
    assert_eq!(records[103]["key"]["id"], 2);

    assert!(t.terminate().success(), "{}", t.log());
    // Restart: nothing is delivered twice, new changes arrive.
    t.restart();
    rt.block_on(db.batch_execute("INSERT INTO accounts VALUES (102, 'later', 2)")).unwrap();
    let records = t.wait_for(105, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let records_after = read_records(&t.events);
    assert_eq!(records_after.len(), 105, "duplicates after a clean restart:\n{}", t.log());
    assert_eq!(records[104]["key"]["id"], 102);
    assert!(t.terminate().success());
}
