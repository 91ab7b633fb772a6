//! A [`Plan`] as differential dataflow collections.
//!
//! Every operator yields two collections: the rows, and the errors of rows
//! whose expressions cannot be evaluated (PostgreSQL would fail the query;
//! a view instead reports the error for as long as the offending rows are
//! there, as Materialize does, and never drops them silently).

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use timely::dataflow::operators::vec::ToStream;

use super::plan::Plan;
use super::reduce::reduce;
use crate::datum::{Datum, Row};
use crate::Time;

pub(crate) type Rows<'s> = VecCollection<'s, Time, Row, isize>;
pub(crate) type Errors<'s> = VecCollection<'s, Time, String, isize>;

/// A rendered plan: its rows and its evaluation errors.
pub(crate) struct Rendered<'s> {
    pub(crate) rows: Rows<'s>,
    pub(crate) errors: Errors<'s>,
}

/// Renders `plan` over the input collections (by input index).
pub(crate) fn render<'s>(plan: &Plan, inputs: &[Rows<'s>]) -> Rendered<'s> {
    match plan {
        Plan::Get(i) => {
            let rows = inputs[*i].clone();
            let errors = empty(&rows);
            Rendered { rows, errors }
        }
        Plan::Filter { input, predicate } => {
            let input = render(input, inputs);
            let predicate = predicate.clone();
            let checked = input.rows.flat_map(move |row| match predicate.holds(&row) {
                Ok(true) => Some(Ok(row)),
                Ok(false) => None,
                Err(e) => Some(Err(e.to_string())),
            });
            split(checked, input.errors)
        }
        Plan::Map { input, exprs } => {
            let input = render(input, inputs);
            let exprs = exprs.clone();
            let mapped = input.rows.map(move |row| {
                exprs
                    .iter()
                    .map(|e| e.eval(&row))
                    .collect::<Result<Row, _>>()
                    .map_err(|e| e.to_string())
            });
            split(mapped.flat_map(Some), input.errors)
        }
        Plan::Join {
            left,
            right,
            left_key,
            right_key,
        } => {
            let (l, r) = (render(left, inputs), render(right, inputs));
            let keyed = |rows: Rows<'s>, key: Vec<usize>| {
                // A NULL key equals nothing, not even another NULL.
                rows.flat_map(move |row| {
                    let k: Row = key.iter().map(|&i| row[i].clone()).collect();
                    (!k.iter().any(Datum::is_null)).then_some((k, row))
                })
            };
            let rows = keyed(l.rows, left_key.clone())
                .join(keyed(r.rows, right_key.clone()))
                .map(|(_, (mut l, r))| {
                    l.extend(r);
                    l
                });
            Rendered {
                rows,
                errors: l.errors.concat(r.errors),
            }
        }
        Plan::Reduce {
            input,
            group,
            aggregates,
        } => {
            let input = render(input, inputs);
            Rendered {
                rows: reduce(input.rows, group.clone(), aggregates.clone()),
                errors: input.errors,
            }
        }
        Plan::Distinct(input) => {
            let input = render(input, inputs);
            Rendered {
                rows: input.rows.distinct(),
                errors: input.errors,
            }
        }
        Plan::Union(parts) => {
            let mut parts = parts.iter().map(|p| render(p, inputs));
            let first = parts.next().expect("a union has parts");
            parts.fold(first, |acc, p| Rendered {
                rows: acc.rows.concat(p.rows),
                errors: acc.errors.concat(p.errors),
            })
        }
    }
}

/// Rows and errors of a checked collection, the earlier errors added.
fn split<'s>(
    checked: VecCollection<'s, Time, Result<Row, String>, isize>,
    errors: Errors<'s>,
) -> Rendered<'s> {
    Rendered {
        rows: checked.clone().flat_map(Result::ok),
        errors: errors.concat(checked.flat_map(Result::err)),
    }
}

/// An empty error collection in the scope of `rows`.
fn empty<'s>(rows: &Rows<'s>) -> Errors<'s> {
    Vec::<(String, Time, isize)>::new()
        .to_stream(rows.scope())
        .as_collection()
}
