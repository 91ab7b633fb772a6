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
use crate::expr::Expr;
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
            kind,
            left,
            right,
            left_key,
            right_key,
            residual,
            widths,
        } => {
            let (l, r) = (render(left, inputs), render(right, inputs));
            let keyed = |rows: Rows<'s>, key: Vec<Expr>| {
                // A NULL key equals nothing, not even another NULL.
                let checked = rows.flat_map(move |row| {
                    match key.iter().map(|e| e.eval(&row)).collect::<Result<Row, _>>() {
                        Ok(k) => (!k.iter().any(Datum::is_null)).then_some(Ok((k, row))),
                        Err(e) => Some(Err(e.to_string())),
                    }
                });
                (
                    checked.clone().flat_map(Result::ok),
                    checked.flat_map(Result::err),
                )
            };
            let (left_keyed, left_errors) = keyed(l.rows.clone(), left_key.clone());
            let (right_keyed, right_errors) = keyed(r.rows.clone(), right_key.clone());
            let errors = l
                .errors
                .concat(r.errors)
                .concat(left_errors)
                .concat(right_errors);
            let pairs = left_keyed.join(right_keyed).map(|(_, (mut l, r))| {
                l.extend(r);
                l
            });
            let mut out = match residual.clone() {
                None => Rendered {
                    rows: pairs,
                    errors,
                },
                Some(condition) => {
                    let checked = pairs.flat_map(move |row| match condition.holds(&row) {
                        Ok(true) => Some(Ok(row)),
                        Ok(false) => None,
                        Err(e) => Some(Err(e.to_string())),
                    });
                    split(checked, errors)
                }
            };
            let (lw, rw) = *widths;
            let matched_pairs = out.rows.clone();
            // The rows of a preserved side no pair came from: that side's
            // rows less those matched (each matched row once, as a set).
            if kind.keeps_left() {
                let matched = matched_pairs
                    .clone()
                    .map(move |row| row[..lw].to_vec())
                    .distinct();
                let unmatched =
                    l.rows
                        .map(|row| (row, ()))
                        .antijoin(matched)
                        .map(move |(mut row, ())| {
                            row.extend(std::iter::repeat_n(Datum::Null, rw));
                            row
                        });
                out.rows = out.rows.concat(unmatched);
            }
            if kind.keeps_right() {
                let matched = matched_pairs.map(move |row| row[lw..].to_vec()).distinct();
                let unmatched =
                    r.rows
                        .map(|row| (row, ()))
                        .antijoin(matched)
                        .map(move |(row, ())| {
                            let mut padded: Row = std::iter::repeat_n(Datum::Null, lw).collect();
                            padded.extend(row);
                            padded
                        });
                out.rows = out.rows.concat(unmatched);
            }
            out
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
