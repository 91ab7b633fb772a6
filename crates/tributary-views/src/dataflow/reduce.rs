//! `GROUP BY` and aggregates, two ways, both differential dataflow's own
//! operators:
//!
//! - COUNT and exact SUM only (`accumulate`): each row's contribution is
//!   the *difference* of a collection (`explode`), which `count_total`
//!   accumulates per group; a change costs what the change is, whatever
//!   the group's size. This is how Materialize reduces "accumulable"
//!   aggregates. A group of a million rows (an ungrouped `count(*)`)
//!   would otherwise be recomputed from all its rows at every change.
//! - anything else (`recompute`): `reduce`, which recomputes a group from
//!   its current rows whenever they change, so MIN/MAX stay right when the
//!   extreme row is deleted, DISTINCT aggregates see each value once, and
//!   a float sum adds in one order.

use bigdecimal::BigDecimal;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::vec::ToStream;

use super::accumulate::Accum;
use super::plan::Aggregate;
use super::render::Rows;
use crate::datum::{Datum, Float, Row};

pub(super) fn reduce<'s>(
    rows: Rows<'s>,
    group: Vec<usize>,
    aggregates: Vec<Aggregate>,
) -> Rows<'s> {
    let scope = rows.scope();
    let reduced = if aggregates.iter().all(|a| Accum::accumulates(*a)) {
        accumulate(rows, group.clone(), aggregates.clone())
    } else {
        recompute(rows, group.clone(), aggregates.clone())
    };
    if !group.is_empty() {
        return reduced;
    }
    // Without GROUP BY, SQL gives one row even over no rows: that row,
    // until the reduction yields its own.
    let default: Row = aggregates
        .iter()
        .map(|a| match a {
            Aggregate::CountRows | Aggregate::Count(_) | Aggregate::CountDistinct(_) => {
                Datum::Int(0)
            }
            _ => Datum::Null,
        })
        .collect();
    let constant = vec![(default.clone(), 0, 1)]
        .to_stream(scope)
        .as_collection();
    constant
        .concat(reduced.clone().map(move |_| default.clone()).negate())
        .concat(reduced)
}

/// Each group's row from the accumulated contributions of its rows.
fn accumulate<'s>(rows: Rows<'s>, group: Vec<usize>, aggregates: Vec<Aggregate>) -> Rows<'s> {
    let aggs = aggregates.clone();
    rows.explode(move |row: Row| {
        let key: Row = group.iter().map(|&i| row[i].clone()).collect();
        Some((key, Accum::of(&row, &aggs)))
    })
    .count_total()
    .map(move |(mut group, accum)| {
        group.extend(accum.values(&aggregates));
        group
    })
}

/// Each group's row recomputed from its current rows.
fn recompute<'s>(rows: Rows<'s>, group: Vec<usize>, aggregates: Vec<Aggregate>) -> Rows<'s> {
    let columns = group;
    let aggs = aggregates;
    rows.map(move |row| {
        (
            columns.iter().map(|&i| row[i].clone()).collect::<Row>(),
            row,
        )
    })
    .reduce(
        move |_group, rows: &[(&Row, isize)], out: &mut Vec<(Row, isize)>| {
            out.push((aggs.iter().map(|a| aggregate(*a, rows)).collect(), 1));
        },
    )
    .map(|(mut group, values)| {
        group.extend(values);
        group
    })
}

/// One aggregate over a group's rows (each with its multiplicity).
fn aggregate(aggregate: Aggregate, rows: &[(&Row, isize)]) -> Datum {
    let present = |column: usize| {
        rows.iter()
            .filter(move |(row, _)| !row[column].is_null())
            .map(move |(row, n)| (&row[column], *n))
    };
    match aggregate {
        Aggregate::CountRows => Datum::Int(rows.iter().map(|(_, n)| *n as i64).sum()),
        Aggregate::Count(c) => Datum::Int(present(c).map(|(_, n)| n as i64).sum()),
        Aggregate::Sum(c) | Aggregate::SumFloat(c) => sum(present(c)),
        Aggregate::CountDistinct(c) => Datum::Int(distinct(present(c)).count() as i64),
        Aggregate::SumDistinct(c) => sum(distinct(present(c))),
        Aggregate::Min(c) => present(c)
            .map(|(d, _)| d)
            .min()
            .cloned()
            .unwrap_or(Datum::Null),
        Aggregate::Max(c) => present(c)
            .map(|(d, _)| d)
            .max()
            .cloned()
            .unwrap_or(Datum::Null),
    }
}

/// Each value once (a group's rows arrive sorted, so equal values of a
/// column need not be adjacent: they are gathered in a set).
fn distinct<'a>(
    values: impl Iterator<Item = (&'a Datum, isize)>,
) -> impl Iterator<Item = (&'a Datum, isize)> {
    values
        .filter(|(_, n)| *n > 0)
        .map(|(d, _)| d)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|d| (d, 1))
}

/// SUM: exact for integers (widened, as PostgreSQL's `sum(bigint)` returns
/// numeric) and numerics; NULL over no values.
pub(super) fn sum<'a>(mut values: impl Iterator<Item = (&'a Datum, isize)>) -> Datum {
    let Some((first, n)) = values.next() else {
        return Datum::Null;
    };
    match first {
        Datum::Int(i) => {
            let mut total = i128::from(*i) * n as i128;
            let mut exact: Option<BigDecimal> = None;
            for (d, n) in values {
                if let Datum::Int(i) = d {
                    match total.checked_add(i128::from(*i) * n as i128) {
                        Some(t) => total = t,
                        None => {
                            let big = exact.get_or_insert_with(BigDecimal::default);
                            *big += BigDecimal::from(total);
                            total = i128::from(*i) * n as i128;
                        }
                    }
                }
            }
            match (exact, i64::try_from(total)) {
                (None, Ok(small)) => Datum::Int(small),
                (exact, _) => Datum::Numeric(exact.unwrap_or_default() + BigDecimal::from(total)),
            }
        }
        Datum::Numeric(x) => {
            let mut total = x * BigDecimal::from(n as i64);
            for (d, n) in values {
                if let Datum::Numeric(x) = d {
                    total += x * BigDecimal::from(n as i64);
                }
            }
            Datum::Numeric(total)
        }
        Datum::Float(x) => {
            let mut total = x.get() * n as f64;
            for (d, n) in values {
                if let Datum::Float(x) = d {
                    total += x.get() * n as f64;
                }
            }
            Datum::Float(Float::new(total))
        }
        other => other.clone(),
    }
}
