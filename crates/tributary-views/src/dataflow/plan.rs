//! The plan a view's SQL becomes: relational operators over rows, each
//! rendered to differential dataflow's operators (which keep joins and
//! aggregates exact under retractions), never to hand-written incremental
//! logic.

use serde::{Deserialize, Serialize};

use crate::expr::Expr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Plan {
    /// The current rows of one input relation, by its index.
    Get(usize),
    /// The rows for which the predicate is TRUE (not FALSE, not NULL).
    Filter { input: Box<Plan>, predicate: Expr },
    /// One output row per input row: these expressions' values.
    Map { input: Box<Plan>, exprs: Vec<Expr> },
    /// An equi-join: the left row's columns, then the right row's, for
    /// each pair whose key columns are equal and not NULL and for which
    /// the residual condition (over the joined row) is TRUE. An outer
    /// join adds each row of its preserved side(s) that has no such pair,
    /// padded with NULLs (`widths` are the two sides' column counts).
    Join {
        kind: JoinKind,
        left: Box<Plan>,
        right: Box<Plan>,
        /// Key expressions over each side's row (columns, converted to
        /// one kind where the sides differ, as `=` would convert them).
        left_key: Vec<Expr>,
        right_key: Vec<Expr>,
        residual: Option<Expr>,
        widths: (usize, usize),
    },
    /// `GROUP BY group` with these aggregates: the group columns, then one
    /// column per aggregate. With no group columns the result is one row
    /// even over no input, as in SQL.
    Reduce {
        input: Box<Plan>,
        group: Vec<usize>,
        aggregates: Vec<Aggregate>,
    },
    /// Each distinct row once.
    Distinct(Box<Plan>),
    /// Every input's rows (`UNION ALL`).
    Union(Vec<Plan>),
}

/// Which unmatched rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    pub fn keeps_left(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Full)
    }

    pub fn keeps_right(self) -> bool {
        matches!(self, JoinKind::Right | JoinKind::Full)
    }
}

/// An aggregate over one column of the input (or the rows, for `COUNT(*)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregate {
    CountRows,
    /// Non-NULL values.
    Count(usize),
    /// Distinct non-NULL values.
    CountDistinct(usize),
    /// Of integers or numerics; NULL when no value is non-NULL.
    Sum(usize),
    /// Of floats (their sum depends on the order of addition).
    SumFloat(usize),
    /// Of the distinct non-NULL values.
    SumDistinct(usize),
    Min(usize),
    Max(usize),
}
