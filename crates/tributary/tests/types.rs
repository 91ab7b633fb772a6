//! Every built-in type's mapping, pinned by a golden file, identical whether
//! a row arrives by snapshot or by stream; and TOAST values never arriving as
//! placeholders.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const SCHEMA: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE types (
  id int PRIMARY KEY,
  i2 smallint, i4 int, i8 bigint, f4 real, f8 double precision,
  num numeric(20,6), num_nan numeric, cash money, flag bool,
  t text, vc varchar(10), ch char(5), bin bytea,
  d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb, ip inet, net cidr, mac macaddr,
  ints int[], texts text[], grid int[][], m mood, p posint, moods mood[],
  pt point, tsv tsvector, o oid
);";

const ROWS: &str = "
INSERT INTO types VALUES
 (1, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793,
  12345678901234.567891, 42, '-$1,234.56', true,
  'hé \"quoted\"\nline', 'short', 'ab', '\\x00ff10',
  '2024-05-01', '13:45:30.123456', '10:00:00+02', '2024-05-01 08:00:00.5', '2024-05-01 10:00:00+02',
  '1 year 2 mons 3 days 04:05:06.5',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"b\": 1,  \"a\": [1, 2]}', '{\"b\": 1, \"a\": [1, 2]}',
  '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  '{1,NULL,3}', '{\"a b\",NULL,\"NULL\",\"x,y\"}', '{{1,2},{3,4}}', 'happy', 7, '{sad,ok}',
  '(1.5,2)', 'fat:2 cat:1', 4000000000),
 (2, 0, 0, 0, 'NaN', '-Infinity', 0, 'NaN', 0, false,
  '', '', '', '\\x',
  '0044-03-15 BC', '24:00:00', '23:59:59.999999-14', 'infinity', '-infinity', '-1 day -00:00:01',
  '00000000-0000-0000-0000-000000000000', 'null', '[]', '::1', '::/0', '00:00:00:00:00:00',
  '{}', '{}', '{}', 'sad', 1, '{}', '(0,0)', '', 0),
 (3, NULL, NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  'infinity', NULL, NULL, '-infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);";

#[test]
fn every_type_maps_as_golden_by_snapshot_and_by_stream() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(SCHEMA)).unwrap();
    rt.block_on(db.batch_execute(ROWS)).unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.types"], ""),
    );
    t.wait_for(3, Duration::from_secs(60));
    // The same rows again, by stream this time.
    rt.block_on(
        db.batch_execute(
            &ROWS
                .replace("(1, ", "(11, ")
                .replace("(2, 0,", "(12, 0,")
                .replace("(3, NULL", "(13, NULL"),
        ),
    )
    .unwrap();
    let records = t.wait_for(6, Duration::from_secs(30));
    let after = |i: usize| -> Value {
        let mut a = records[i]["value"]["after"].clone();
        a.as_object_mut().unwrap().remove("id");
        a
    };
    for i in 0..3 {
        assert_eq!(
            after(i),
            after(i + 3),
            "row {} differs between snapshot and stream",
            i + 1
        );
    }
    let got = serde_json::to_string_pretty(&(0..3).map(after).collect::<Vec<_>>()).unwrap() + "\n";
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/types.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file (run with UPDATE_GOLDEN=1 to create)");
    assert_eq!(
        got, want,
        "type mapping changed; review and rerun with UPDATE_GOLDEN=1"
    );
    assert!(t.terminate().success());
}

#[test]
fn unchanged_toast_is_filled_never_a_placeholder() {
    let pg = PgCluster::start();
    let rt = runtime();
    let db = rt.block_on(pg.create_db("app"));
    rt.block_on(db.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, n int, doc text);
         ALTER TABLE docs ALTER COLUMN doc SET STORAGE EXTERNAL;
         INSERT INTO docs SELECT 1, 0, string_agg(md5(g::text), '') FROM generate_series(1, 300) g;",
    ))
    .unwrap();
    let dir = workdir();
    let mut t = Tributary::start(
        dir.path(),
        &config(dir.path(), &pg.url("app"), &["public.docs"], ""),
    );
    t.wait_for(1, Duration::from_secs(60));
    rt.block_on(db.batch_execute(
        "UPDATE docs SET n = 1 WHERE id = 1;
         INSERT INTO docs SELECT 2, 0, string_agg(md5((g * 7)::text), '') FROM generate_series(1, 300) g;
         UPDATE docs SET n = 2 WHERE id = 2;
         UPDATE docs SET n = 3;",
    ))
    .unwrap();
    let records = t.wait_for(6, Duration::from_secs(30));
    let want: Vec<(i64, String)> = rt
        .block_on(db.query("SELECT id::int8, doc FROM docs", &[]))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for r in &records {
        let v = &r["value"];
        assert!(
            v["source"]["unchanged_toast"].is_null(),
            "placeholder reported: {v}"
        );
        let id = v["after"]["id"].as_i64().unwrap();
        let doc = want.iter().find(|(i, _)| *i == id).unwrap();
        assert_eq!(
            v["after"]["doc"].as_str().unwrap(),
            doc.1,
            "doc of row {id} in {} event",
            v["op"]
        );
    }
    // The server really sent markers: the updates changed only n.
    assert_eq!(
        records.iter().filter(|r| r["value"]["op"] == "u").count(),
        4
    );
    assert!(t.terminate().success());
}
