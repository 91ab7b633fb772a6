//! COUNT and exact SUM as the difference type of a collection: a row's
//! contribution to its group, which differential dataflow adds up (and
//! takes away again when the row goes) as it consolidates, so a group's
//! aggregates move by what changed, never by recomputing the group.
//!
//! Exact means integers (in `i128`: no overflow from adding 64-bit
//! values, so the sum is exact until it leaves `i64`, when it becomes
//! `numeric` as before) and `numeric` (`BigDecimal`). A float sum depends
//! on the order of addition, and adding then taking away a float does not
//! give back what was there: float sums are recomputed (`reduce`).
//!
//! A `numeric` sum prints with the largest scale of the values it has now,
//! as PostgreSQL's does: the count of values per scale is accumulated too,
//! so after the value with the most decimals goes, the sum prints with
//! fewer.

use bigdecimal::BigDecimal;
use differential_dataflow::difference::{IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Serialize};

use super::plan::Aggregate;
use crate::datum::{exact_text, Datum, Row};

/// The accumulated contribution of a group's rows to its aggregates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) struct Accum {
    /// Rows (COUNT(*)).
    rows: i64,
    /// One per aggregate, in order; empty in a zero.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Part {
    /// COUNT(*): its value is `rows`.
    Rows,
    /// Non-NULL values.
    Count(i64),
    Sum {
        /// Non-NULL values (a sum over none is NULL).
        values: i64,
        int: i128,
        #[serde(with = "exact_text")]
        numeric: BigDecimal,
        /// (scale, values with that scale) of the numerics, by scale.
        scales: Vec<(i64, i64)>,
    },
}

impl Accum {
    /// Whether `aggregate` is accumulated (else recomputed).
    pub(super) fn accumulates(aggregate: Aggregate) -> bool {
        matches!(
            aggregate,
            Aggregate::CountRows | Aggregate::Count(_) | Aggregate::Sum(_)
        )
    }

    /// One row's contribution to `aggregates` (each accumulable).
    pub(super) fn of(row: &Row, aggregates: &[Aggregate]) -> Self {
        let parts = aggregates
            .iter()
            .map(|a| match *a {
                Aggregate::Count(c) => Part::Count(i64::from(!row[c].is_null())),
                Aggregate::Sum(c) => match &row[c] {
                    Datum::Int(i) => Part::Sum {
                        values: 1,
                        int: i128::from(*i),
                        numeric: BigDecimal::default(),
                        scales: Vec::new(),
                    },
                    Datum::Numeric(n) => Part::Sum {
                        values: 1,
                        int: 0,
                        numeric: n.clone(),
                        scales: vec![(n.fractional_digit_count(), 1)],
                    },
                    _ => Part::Sum {
                        values: 0,
                        int: 0,
                        numeric: BigDecimal::default(),
                        scales: Vec::new(),
                    },
                },
                _ => Part::Rows,
            })
            .collect();
        Accum { rows: 1, parts }
    }

    /// The aggregates' values.
    pub(super) fn values(&self, aggregates: &[Aggregate]) -> Vec<Datum> {
        aggregates
            .iter()
            .enumerate()
            .map(|(i, _)| match self.parts.get(i) {
                Some(Part::Rows) | None => Datum::Int(self.rows),
                Some(Part::Count(n)) => Datum::Int(*n),
                Some(Part::Sum {
                    values,
                    int,
                    numeric,
                    scales,
                }) => {
                    if *values == 0 {
                        Datum::Null
                    } else if let Some(&(scale, _)) = scales.last() {
                        Datum::Numeric(numeric.with_scale(scale))
                    } else {
                        match i64::try_from(*int) {
                            Ok(small) => Datum::Int(small),
                            Err(_) => Datum::Numeric(BigDecimal::from(*int)),
                        }
                    }
                }
            })
            .collect()
    }
}

impl Part {
    fn add(&mut self, other: &Part) {
        match (self, other) {
            (Part::Count(a), Part::Count(b)) => *a += b,
            (
                Part::Sum {
                    values,
                    int,
                    numeric,
                    scales,
                },
                Part::Sum {
                    values: v,
                    int: i,
                    numeric: n,
                    scales: s,
                },
            ) => {
                *values += v;
                *int += i;
                *numeric += n;
                for &(scale, count) in s {
                    match scales.binary_search_by_key(&scale, |(sc, _)| *sc) {
                        Ok(at) => {
                            scales[at].1 += count;
                            if scales[at].1 == 0 {
                                scales.remove(at);
                            }
                        }
                        Err(at) => scales.insert(at, (scale, count)),
                    }
                }
            }
            _ => {}
        }
    }

    fn times(&self, n: i64) -> Part {
        match self {
            Part::Rows => Part::Rows,
            Part::Count(c) => Part::Count(c * n),
            Part::Sum {
                values,
                int,
                numeric,
                scales,
            } => Part::Sum {
                values: values * n,
                int: int * i128::from(n),
                numeric: numeric * BigDecimal::from(n),
                scales: scales.iter().map(|&(s, c)| (s, c * n)).collect(),
            },
        }
    }

    fn is_zero(&self) -> bool {
        match self {
            Part::Rows => true,
            Part::Count(c) => *c == 0,
            Part::Sum {
                values,
                int,
                numeric,
                scales,
            } => {
                *values == 0 && *int == 0 && numeric == &BigDecimal::default() && scales.is_empty()
            }
        }
    }
}

impl IsZero for Accum {
    fn is_zero(&self) -> bool {
        self.rows == 0 && self.parts.iter().all(Part::is_zero)
    }
}

impl Semigroup for Accum {
    fn plus_equals(&mut self, rhs: &Self) {
        self.rows += rhs.rows;
        if self.parts.is_empty() {
            self.parts = rhs.parts.clone();
            return;
        }
        for (part, other) in self.parts.iter_mut().zip(&rhs.parts) {
            part.add(other);
        }
    }
}

impl Monoid for Accum {
    fn zero() -> Self {
        Accum {
            rows: 0,
            parts: Vec::new(),
        }
    }
}

impl Multiply<isize> for Accum {
    type Output = Accum;

    fn multiply(self, n: &isize) -> Accum {
        let n = *n as i64;
        Accum {
            rows: self.rows * n,
            parts: self.parts.iter().map(|p| p.times(n)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(text: &str) -> Datum {
        Datum::Numeric(text.parse().unwrap())
    }

    #[test]
    fn sums_and_counts_move_by_what_changes() {
        let aggs = [Aggregate::CountRows, Aggregate::Count(0), Aggregate::Sum(0)];
        let row = |d: Datum| Accum::of(&vec![d], &aggs);
        let mut group = Accum::zero();
        group.plus_equals(&row(numeric("1.5")));
        group.plus_equals(&row(numeric("2.25")));
        group.plus_equals(&row(Datum::Null));
        assert_eq!(
            group.values(&aggs),
            [Datum::Int(3), Datum::Int(2), numeric("3.75")]
        );
        // The value with two decimals goes: the sum prints with one, as
        // PostgreSQL's sum of what is left.
        group.plus_equals(&row(numeric("2.25")).multiply(&-1));
        let values = group.values(&aggs);
        assert_eq!(values[2].to_string(), "1.5");
        group.plus_equals(&row(numeric("1.5")).multiply(&-1));
        assert_eq!(group.values(&aggs)[2], Datum::Null);
        group.plus_equals(&row(Datum::Null).multiply(&-1));
        assert!(group.is_zero());
    }

    #[test]
    fn integer_sums_leave_bigint_as_numeric() {
        let aggs = [Aggregate::Sum(0)];
        let mut group = Accum::zero();
        for _ in 0..3 {
            group.plus_equals(&Accum::of(&vec![Datum::Int(i64::MAX)], &aggs));
        }
        assert_eq!(
            group.values(&aggs)[0].to_string(),
            (3 * i128::from(i64::MAX)).to_string()
        );
        group.plus_equals(&Accum::of(&vec![Datum::Int(i64::MAX)], &aggs).multiply(&-2));
        assert_eq!(group.values(&aggs)[0], Datum::Int(i64::MAX));
    }
}
