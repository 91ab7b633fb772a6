//! Per-sink transforms: only the chosen tables, and sensitive columns
//! dropped, masked, hashed with a salt or truncated in before, after and key.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::*;

#[test]
fn tables_and_columns_are_filtered_masked_hashed_and_truncated() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, email text, ssn text, phone text, note text);
         ALTER TABLE accounts REPLICA IDENTITY FULL;
         CREATE TABLE audit (id int PRIMARY KEY);
         INSERT INTO accounts VALUES (1, 'a@x.io', '123-45-6789', '555-0100', 'a long note indeed');
         INSERT INTO audit VALUES (1);",
    ))
    .unwrap();
    let dir = workdir();
    let text = config(
        dir.path(),
        &pg.url("app"),
        &["public.accounts", "public.audit"],
        "",
    )
    .replace(
        "type = \"file\"",
        "type = \"file\"\n\
         tables = [\"public.accounts\"]\n\
         exclude_columns = [\"public.accounts.ssn\"]\n\
         mask_columns = [\"public.accounts.email\"]\n\
         hash_columns = [\"public.accounts.phone\"]\n\
         hash_salt_env = \"TEST_SALT\"\n\
         truncate_columns = { \"public.accounts.note\" = 6 }\n\
         routes = { \"public.accounts\" = \"{source}.private.{table}\" }",
    );
    std::fs::write(dir.path().join("tributary.toml"), &text).unwrap();
    let mut t = Tributary::start(dir.path(), &text);
    // TEST_SALT is not set for the first start: a clear config error.
    let status = t.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", t.log());
    assert!(t.log().contains("TEST_SALT is not set"), "{}", t.log());

    t.set_env("TEST_SALT", "pepper");
    t.restart();
    t.wait_for(1, Duration::from_secs(60));
    rt.block_on(db.batch_execute(
        "UPDATE accounts SET note = 'another long note' WHERE id = 1; INSERT INTO audit VALUES (2);",
    ))
    .unwrap();
    let records = t.wait_for(2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let records_now = read_records(&t.events);
    assert_eq!(
        records_now.len(),
        records.len(),
        "audit leaked: {records_now:?}"
    );
    assert!(
        records.iter().all(|r| r["topic"] == "src.private.accounts"),
        "{records:?}"
    );

    let phone_hash: String = Sha256::digest(b"pepper555-0100")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let update = &records[1]["value"];
    assert_eq!(update["op"], "u");
    for image in [&update["before"], &update["after"]] {
        assert!(image.get("ssn").is_none(), "{image}");
        assert_eq!(image["email"], "****");
        assert_eq!(image["phone"], phone_hash.as_str());
    }
    assert_eq!(update["before"]["note"], "a long");
    assert_eq!(update["after"]["note"], "anothe");
    assert_eq!(records[1]["key"]["id"], 1);
    assert!(t.terminate().success());
}
