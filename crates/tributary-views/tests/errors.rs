//! A row whose expression PostgreSQL would refuse to evaluate is reported
//! as the view's error for as long as the row is there, never dropped
//! silently nor computed in a wider type.

use tributary_views::sql::{self, Catalog, ColumnDesc, Kind, Relation, Width};
use tributary_views::{Datum, Engine};

#[test]
fn integer_arithmetic_fails_past_its_width_as_in_postgresql() {
    let mut catalog = Catalog::default();
    catalog.add(Relation {
        name: ["s".into(), "public".into(), "t".into()],
        columns: vec![ColumnDesc {
            name: "n".into(),
            kind: Kind::Int(Width::I32),
        }],
    });
    let view = sql::plan("SELECT n * 1000000000 FROM s.public.t", &catalog).unwrap();
    assert_eq!(view.columns[0].kind, Kind::Int(Width::I32));
    let engine = Engine::start(1, vec![view.plan]);
    // 2 * 10^9 fits in an integer (below 2^31); 3 * 10^9 does not.
    engine.apply(vec![(0, vec![Datum::Int(2)], 1)]);
    assert_eq!(
        engine.read(0).rows.keys().collect::<Vec<_>>(),
        [&vec![Datum::Int(2_000_000_000)]]
    );
    assert!(engine.read(0).errors.is_empty());
    engine.apply(vec![(0, vec![Datum::Int(3)], 1)]);
    assert_eq!(
        engine.read(0).errors.keys().collect::<Vec<_>>(),
        ["integer out of range"]
    );
    // The error goes with the row.
    engine.apply(vec![(0, vec![Datum::Int(3)], -1)]);
    assert!(engine.read(0).errors.is_empty());
    assert_eq!(engine.read(0).rows.len(), 1);
}
