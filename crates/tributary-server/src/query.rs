//! A client's statement: parsed once (Parse, or a simple Query), then run
//! with its parameters' values against the views.
//!
//! A SELECT names one view. Its body is planned by the views' own planner
//! over a catalog whose relations are the views themselves, so a read's
//! WHERE and expressions mean exactly what they mean in a view; ORDER BY,
//! LIMIT and OFFSET are taken off first and done here. Reads only filter
//! and project: a join or aggregate belongs in a declared view, where it is
//! kept incrementally instead of recomputed per read.
//!
//! A view's rows are kept ordered by their columns (the first column
//! first), so `ORDER BY` on a leading prefix of the view's columns, and a
//! bound on the first column (`WHERE customer_id > $1`, `= $1`), walk that
//! order from the bound and stop after `OFFSET + LIMIT` rows: a keyset page
//! costs its own rows, not a scan and sort of the view.

use std::ops::Bound;
use std::sync::Arc;

use pgwire::api::Type;
use sqlparser::ast::{self, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use tributary_views::sql::{self, Catalog, ColumnDesc, Kind, PlannedView};
use tributary_views::{BinaryOp, Datum, Expr, Plan, Row, ViewSet};

use crate::catalog::{self, Answer};
use crate::encode::pg_type;

/// A statement refused or failed, as PostgreSQL reports it.
#[derive(Debug, Clone)]
pub(crate) struct QueryError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl QueryError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self::new("0A000", message)
    }
}

/// What the views and their catalog look like to clients.
pub(crate) struct Context {
    pub(crate) views: Arc<ViewSet>,
    /// The views as relations, each read as `Plan::Get(its index)`.
    catalog: Catalog,
}

impl Context {
    pub(crate) fn new(views: Arc<ViewSet>) -> Self {
        let mut catalog = Catalog::default();
        for (i, view) in views.views().iter().enumerate() {
            let planned = PlannedView {
                plan: Plan::Get(i),
                columns: view.columns.clone(),
                key: view.key.clone(),
            };
            catalog.add_view(&view.name, &planned);
        }
        Self { views, catalog }
    }
}

/// A parsed statement.
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    Select(Arc<Select>),
    Catalog(Arc<Answer>),
    /// A statement with nothing to do for a read-only endpoint, answered
    /// with its tag (`SET`, `BEGIN`, …).
    Command(Command),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Command {
    Set,
    Begin,
    Commit,
    Rollback,
    Discard,
}

impl Prepared {
    pub(crate) fn parameter_types(&self) -> Vec<Type> {
        match self {
            Prepared::Select(s) => s.params.clone(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn columns(&self) -> Vec<(String, Type)> {
        match self {
            Prepared::Select(s) => s
                .columns
                .iter()
                .map(|c| (c.name.clone(), pg_type(c.kind)))
                .collect(),
            Prepared::Catalog(a) => a.columns.iter().map(|c| (c.clone(), Type::TEXT)).collect(),
            Prepared::Command(_) => Vec::new(),
        }
    }
}

/// A SELECT over one view, ready to run with its parameters.
#[derive(Debug)]
pub(crate) struct Select {
    /// The body: no ORDER BY, LIMIT or OFFSET; placeholders still in it.
    body: ast::Query,
    order: Vec<ast::OrderByExpr>,
    limit: Option<ast::Expr>,
    offset: Option<ast::Expr>,
    /// The type of each `$n`.
    params: Vec<Type>,
    columns: Vec<ColumnDesc>,
}

/// Parses one statement; `None` for an empty one. `types` are the
/// parameter types the client gave (any may be missing).
pub(crate) fn prepare(
    sql_text: &str,
    types: &[Option<Type>],
    ctx: &Context,
) -> Result<Option<Prepared>, QueryError> {
    if let Some(answer) = catalog::answer(sql_text, ctx) {
        return answer.map(|a| Some(Prepared::Catalog(Arc::new(a))));
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql_text)
        .map_err(|e| QueryError::new("42601", format!("syntax error: {e}")))?;
    let statement = match statements.len() {
        0 => return Ok(None),
        1 => statements.remove(0),
        _ => {
            return Err(QueryError::unsupported(
                "cannot run several statements in one query",
            ))
        }
    };
    let command = match statement {
        Statement::Query(query) => return select(*query, types, ctx).map(Some),
        Statement::Set(_) => Command::Set,
        Statement::StartTransaction { .. } => Command::Begin,
        Statement::Commit { .. } => Command::Commit,
        Statement::Rollback { .. } => Command::Rollback,
        Statement::Discard { .. } => Command::Discard,
        other => {
            let verb = other.to_string();
            let verb = verb.split_whitespace().next().unwrap_or("this statement");
            return Err(QueryError::new(
                "25006",
                format!("cannot execute {verb}: Tributary serves read-only views"),
            )
            .with_hint("change the data in the source databases; views follow"));
        }
    };
    Ok(Some(Prepared::Command(command)))
}

fn select(
    mut query: ast::Query,
    types: &[Option<Type>],
    ctx: &Context,
) -> Result<Prepared, QueryError> {
    let order = match query.order_by.take().map(|o| o.kind) {
        None => Vec::new(),
        Some(ast::OrderByKind::Expressions(items)) => items,
        Some(ast::OrderByKind::All(_)) => return Err(QueryError::unsupported("ORDER BY ALL")),
    };
    let (limit, offset) = match query.limit_clause.take() {
        None => (None, None),
        Some(ast::LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => (limit, offset.map(|o| o.value)),
        Some(_) => return Err(QueryError::unsupported("this LIMIT form")),
    };
    if query.fetch.is_some() || !query.locks.is_empty() {
        return Err(QueryError::unsupported(
            "FETCH and FOR UPDATE/SHARE in a read",
        ));
    }
    unqualify_public(&mut query);
    let mut params = infer_parameters(&query, ctx, types);
    for e in limit.iter().chain(&offset) {
        if let Some(n) = placeholder(e) {
            set_param(&mut params, n, Type::INT8);
        }
    }
    // Plan once with every parameter NULL: the columns do not depend on
    // the values.
    let nulls = vec![Datum::Null; params.len()];
    let planned = plan(&query, &nulls, ctx)?;
    Ok(Prepared::Select(Arc::new(Select {
        body: query,
        order,
        limit,
        offset,
        params,
        columns: planned.columns,
    })))
}

impl Select {
    /// Runs the read with these parameter values: its columns and rows.
    pub(crate) fn run(
        &self,
        ctx: &Context,
        values: &[Datum],
    ) -> Result<(Vec<ColumnDesc>, Vec<Row>), QueryError> {
        let planned = plan(&self.body, values, ctx)?;
        let (view, steps) = pipeline(&planned.plan).ok_or_else(|| {
            QueryError::unsupported("joins, aggregates, DISTINCT and UNION in a read").with_hint(
                "declare the query as a [[view]]: it is then kept incrementally, and read here",
            )
        })?;
        let order = self.order_keys(&planned.columns)?;
        let limit = count(self.limit.as_ref(), values, "LIMIT")?;
        let offset = count(self.offset.as_ref(), values, "OFFSET")?.unwrap_or(0);
        let snapshot = ctx.views.read(view);
        if let Some(message) = snapshot.errors.keys().next() {
            let code = if message.contains("out of range") {
                "22003"
            } else {
                "22000"
            };
            return Err(QueryError::new(
                code,
                format!("view \"{}\": {message}", ctx.views.views()[view].name),
            ));
        }
        let walk = Walk::plan(
            &steps,
            &order,
            ctx.views.views()[view].columns.first().map(|c| c.kind),
        );
        let wanted = limit.map(|l| l.saturating_add(offset));
        let mut rows = Vec::new();
        let mut each = |row: &Row, times: isize| -> Result<bool, QueryError> {
            if let Some(out) = apply(&steps, row)? {
                for _ in 0..times.max(0) {
                    rows.push(out.clone());
                }
            }
            Ok(walk.ordered && wanted.is_some_and(|w| rows.len() as u64 >= w))
        };
        match walk.direction {
            Direction::Forward => {
                let start = walk
                    .start
                    .clone()
                    .map_or(Bound::Unbounded, |d| Bound::Included(vec![d]));
                for (row, &times) in snapshot.rows.range((start, Bound::Unbounded)) {
                    if walk.past(row) || each(row, times)? {
                        break;
                    }
                }
            }
            Direction::Backward => {
                let end = walk
                    .start
                    .clone()
                    .map_or(Bound::Unbounded, |d| Bound::Excluded(vec![d]));
                for (row, &times) in snapshot.rows.range((Bound::Unbounded, end)).rev() {
                    if walk.past(row) || each(row, times)? {
                        break;
                    }
                }
            }
        }
        drop(snapshot);
        if !walk.ordered && !order.is_empty() {
            rows.sort_by(|a, b| compare(a, b, &order));
        }
        let rows = rows
            .into_iter()
            .skip(offset.min(usize::MAX as u64) as usize)
            .take(limit.map_or(usize::MAX, |l| l.min(usize::MAX as u64) as usize))
            .collect();
        Ok((planned.columns, rows))
    }

    /// ORDER BY items as output column indices.
    fn order_keys(&self, columns: &[ColumnDesc]) -> Result<Vec<OrderKey>, QueryError> {
        self.order
            .iter()
            .map(|item| {
                let column = match &item.expr {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::Number(n, _) => n
                            .parse::<usize>()
                            .ok()
                            .filter(|&n| (1..=columns.len()).contains(&n))
                            .map(|n| n - 1),
                        _ => None,
                    },
                    ast::Expr::Identifier(id) => columns.iter().position(|c| c.name == id.value),
                    ast::Expr::CompoundIdentifier(ids) => ids
                        .last()
                        .and_then(|id| columns.iter().position(|c| c.name == id.value)),
                    _ => None,
                }
                .ok_or_else(|| {
                    QueryError::unsupported(format!(
                        "ORDER BY {}: a read orders by output columns (by name or position)",
                        item.expr
                    ))
                })?;
                let descending = match &item.options.sort {
                    None | Some(ast::OrderBySort::Asc) => false,
                    Some(ast::OrderBySort::Desc) => true,
                    Some(ast::OrderBySort::Using(_)) => {
                        return Err(QueryError::unsupported("ORDER BY … USING"))
                    }
                };
                // PostgreSQL's default: NULLs last ascending, first descending.
                let nulls_first = item.options.nulls_first.unwrap_or(descending);
                Ok(OrderKey {
                    column,
                    descending,
                    nulls_first,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct OrderKey {
    column: usize,
    descending: bool,
    nulls_first: bool,
}

fn compare(a: &Row, b: &Row, order: &[OrderKey]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for key in order {
        let (x, y) = (&a[key.column], &b[key.column]);
        let ordering = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if key.nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if key.nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) if key.descending => y.cmp(x),
            (false, false) => x.cmp(y),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Plans the body with the parameters' values in place of `$n`.
fn plan(body: &ast::Query, values: &[Datum], ctx: &Context) -> Result<PlannedView, QueryError> {
    let mut body = body.clone();
    let mut missing = None;
    let _ = ast::visit_expressions_mut(&mut body, |e| {
        if let Some(n) = placeholder(e) {
            match values.get(n) {
                Some(value) => match literal(value) {
                    Ok(lit) => *e = lit,
                    Err(err) => missing = Some(err),
                },
                None => {
                    missing = Some(QueryError::new(
                        "42P02",
                        format!("there is no parameter ${}", n + 1),
                    ))
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if let Some(err) = missing {
        return Err(err);
    }
    sql::plan_query(&body, &ctx.catalog).map_err(|e| {
        let known: Vec<&str> = ctx.views.views().iter().map(|v| v.name.as_str()).collect();
        let mut err = QueryError::new(code_of(&e.to_string()), e.to_string());
        err.hint = e
            .hint()
            .map(str::to_owned)
            .or_else(|| Some(format!("the views here are: {}", known.join(", "))));
        err
    })
}

/// The SQLSTATE for a planner refusal.
fn code_of(message: &str) -> &'static str {
    if message.contains("does not exist") {
        if message.contains("column") {
            "42703"
        } else {
            "42P01"
        }
    } else if message.contains("not supported") || message.contains("not yet") {
        "0A000"
    } else {
        "42000"
    }
}

/// A parameter's value as the literal the planner reads.
fn literal(value: &Datum) -> Result<ast::Expr, QueryError> {
    let v = match value {
        Datum::Null => ast::Value::Null,
        Datum::Bool(b) => ast::Value::Boolean(*b),
        Datum::Int(_) | Datum::Numeric(_) | Datum::Float(_) => {
            ast::Value::Number(value.to_string(), false)
        }
        Datum::Text(s) => ast::Value::SingleQuotedString(s.clone()),
        other => {
            return Err(QueryError::unsupported(format!(
                "a parameter like {other} (only boolean, numbers and text yet)"
            )))
        }
    };
    Ok(ast::Expr::Value(v.with_empty_span()))
}

/// `$n` as its zero-based index.
fn placeholder(e: &ast::Expr) -> Option<usize> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => {
                p.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
            }
            _ => None,
        },
        _ => None,
    }
}

fn set_param(params: &mut Vec<Type>, n: usize, ty: Type) {
    if params.len() <= n {
        params.resize(n + 1, Type::TEXT);
    }
    params[n] = ty;
}

/// Each `$n`'s type: the client's, else the column it is compared with.
fn infer_parameters(query: &ast::Query, ctx: &Context, given: &[Option<Type>]) -> Vec<Type> {
    let columns = from_view(query, ctx).map(|v| &ctx.views.views()[v].columns);
    let mut params: Vec<Type> = Vec::new();
    let _ = ast::visit_expressions(query, |e| {
        if let Some(n) = placeholder(e) {
            if params.len() <= n {
                params.resize(n + 1, Type::TEXT);
            }
        }
        if let ast::Expr::BinaryOp { left, right, .. } = e {
            for (side, other) in [(left, right), (right, left)] {
                if let (Some(n), Some(columns)) = (placeholder(side), columns) {
                    let name = match other.as_ref() {
                        ast::Expr::Identifier(id) => Some(&id.value),
                        ast::Expr::CompoundIdentifier(ids) => ids.last().map(|id| &id.value),
                        _ => None,
                    };
                    if let Some(c) = name.and_then(|n| columns.iter().find(|c| &c.name == n)) {
                        set_param(&mut params, n, pg_type(c.kind));
                    }
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    for (i, ty) in given.iter().enumerate() {
        if let Some(ty) = ty.clone().filter(|t| *t != Type::UNKNOWN) {
            set_param(&mut params, i, ty);
        }
    }
    params
}

/// The view a plain `SELECT … FROM view` reads.
fn from_view(query: &ast::Query, ctx: &Context) -> Option<usize> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let ast::TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    let [part] = name.0.as_slice() else {
        return None;
    };
    ctx.views.find(&part.as_ident()?.value)
}

/// `public.view` names the view `view` (the views live in `public`).
fn unqualify_public(query: &mut ast::Query) {
    let _ = ast::visit_relations_mut(query, |name| {
        if name.0.len() == 2
            && name.0[0]
                .as_ident()
                .is_some_and(|id| id.value.eq_ignore_ascii_case("public"))
        {
            name.0.remove(0);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// A LIMIT or OFFSET value.
fn count(e: Option<&ast::Expr>, values: &[Datum], what: &str) -> Result<Option<u64>, QueryError> {
    let Some(e) = e else { return Ok(None) };
    let value = match placeholder(e) {
        Some(n) => values.get(n).cloned().unwrap_or(Datum::Null),
        None => match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n.parse::<i64>().map(Datum::Int).unwrap_or(Datum::Null),
                ast::Value::Null => Datum::Null,
                _ => return Err(QueryError::unsupported(format!("{what} {e}"))),
            },
            _ => return Err(QueryError::unsupported(format!("{what} {e}"))),
        },
    };
    match value {
        Datum::Null => Ok(None), // LIMIT NULL / ALL: no limit
        Datum::Int(n) if n >= 0 => Ok(Some(n as u64)),
        Datum::Int(_) => Err(QueryError::new(
            "2201W",
            format!("{what} must not be negative"),
        )),
        _ => Err(QueryError::new(
            "42804",
            format!("{what} must be an integer"),
        )),
    }
}

/// A read's plan as one view and the steps applied to each of its rows,
/// innermost first; `None` for anything but filters and projections.
fn pipeline(plan: &Plan) -> Option<(usize, Vec<&Plan>)> {
    let mut steps = Vec::new();
    let mut at = plan;
    loop {
        match at {
            Plan::Get(view) => {
                steps.reverse();
                return Some((*view, steps));
            }
            Plan::Filter { input, .. } | Plan::Map { input, .. } => {
                steps.push(at);
                at = input;
            }
            _ => return None,
        }
    }
}

/// One view row through the steps: the output row, or `None` if filtered.
fn apply(steps: &[&Plan], row: &Row) -> Result<Option<Row>, QueryError> {
    let eval_error = |e: tributary_views::expr::EvalError| {
        let message = e.to_string();
        QueryError::new(
            if message.contains("out of range") {
                "22003"
            } else {
                "22000"
            },
            message,
        )
    };
    let mut current: Option<Row> = None;
    for step in steps {
        let input = current.as_ref().unwrap_or(row);
        match step {
            Plan::Filter { predicate, .. } => {
                if !predicate.holds(input).map_err(eval_error)? {
                    return Ok(None);
                }
            }
            Plan::Map { exprs, .. } => {
                let mapped = exprs
                    .iter()
                    .map(|e| e.eval(input))
                    .collect::<Result<Row, _>>()
                    .map_err(eval_error)?;
                current = Some(mapped);
            }
            _ => unreachable!("pipeline() admits only filters and projections"),
        }
    }
    Ok(Some(current.unwrap_or_else(|| row.clone())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// How to walk a view's ordered rows for one read.
#[derive(Debug)]
struct Walk {
    direction: Direction,
    /// The rows come out in the ORDER BY's order, so the walk may stop
    /// once it has OFFSET + LIMIT rows.
    ordered: bool,
    /// Where to start: rows whose first column is before this (after it,
    /// walking backward) cannot pass the filter.
    start: Option<Datum>,
    /// Where to stop: no row past this first-column value passes.
    stop: Option<(Datum, bool)>,
}

impl Walk {
    fn plan(steps: &[&Plan], order: &[OrderKey], first_kind: Option<Kind>) -> Self {
        let traced: Option<Vec<usize>> = order.iter().map(|k| trace(steps, k.column)).collect();
        let forward = order.iter().all(|k| !k.descending && !k.nulls_first);
        let backward = order.iter().all(|k| k.descending && k.nulls_first);
        let prefix = traced.is_some_and(|t| t.iter().enumerate().all(|(i, &c)| i == c));
        let direction = if prefix && backward && !order.is_empty() {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let ordered = order.is_empty() || (prefix && (forward || backward));
        let mut walk = Walk {
            direction,
            ordered,
            start: None,
            stop: None,
        };
        // Bounds on the view's first column, from the filter right over it.
        if let (Some(Plan::Filter { predicate, .. }), Some(kind)) = (steps.first(), first_kind) {
            let mut conjuncts = Vec::new();
            flatten_and(predicate, &mut conjuncts);
            for c in conjuncts {
                if let Some((op, d)) = bound_on_first(c).filter(|(_, d)| same_kind(d, kind)) {
                    walk.tighten(op, d);
                }
            }
        }
        walk
    }

    /// Narrows the walk by `first_column op value`.
    fn tighten(&mut self, op: BinaryOp, value: Datum) {
        use BinaryOp::*;
        let (lower, upper) = match op {
            Gt => (Some((value, false)), None),
            GtEq => (Some((value, true)), None),
            Lt => (None, Some((value, false))),
            LtEq => (None, Some((value, true))),
            Eq => (Some((value.clone(), true)), Some((value, true))),
            _ => (None, None),
        };
        let (from, to) = match self.direction {
            Direction::Forward => (lower, upper),
            Direction::Backward => (upper, lower),
        };
        if let Some((value, _)) = from {
            // Several bounds: the walk starts at the tightest.
            let tighter = match (&self.start, self.direction) {
                (None, _) => true,
                (Some(s), Direction::Forward) => value > *s,
                (Some(s), Direction::Backward) => value < *s,
            };
            // Walking backward the start is excluded, so only `<` (not
            // `<=` or `=`) may start there.
            let usable = self.direction == Direction::Forward || matches!(op, Lt);
            if tighter && usable {
                self.start = Some(value);
            }
        }
        if let Some(stop) = to {
            self.stop = Some(stop);
        }
    }

    /// Whether `row` and every row after it in the walk fail the bound.
    fn past(&self, row: &Row) -> bool {
        let (Some((value, inclusive)), Some(first)) = (&self.stop, row.first()) else {
            return false;
        };
        match self.direction {
            Direction::Forward => first > value || (!inclusive && first == value),
            Direction::Backward => first < value || (!inclusive && first == value),
        }
    }
}

/// Output column `column` as the view column it copies, if it does.
fn trace(steps: &[&Plan], mut column: usize) -> Option<usize> {
    for step in steps.iter().rev() {
        if let Plan::Map { exprs, .. } = step {
            match exprs.get(column)? {
                Expr::Column(c) => column = *c,
                _ => return None,
            }
        }
    }
    Some(column)
}

fn flatten_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

/// `column0 op literal` (either way round) as `(op, literal)`.
fn bound_on_first(e: &Expr) -> Option<(BinaryOp, Datum)> {
    use BinaryOp::*;
    let Expr::Binary(op, left, right) = e else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(0), Expr::Literal(d)) if !d.is_null() => Some((*op, d.clone())),
        (Expr::Literal(d), Expr::Column(0)) if !d.is_null() => {
            let flipped = match op {
                Gt => Lt,
                GtEq => LtEq,
                Lt => Gt,
                LtEq => GtEq,
                other => *other,
            };
            Some((flipped, d.clone()))
        }
        _ => None,
    }
}

/// Whether `d` orders among a column of `kind`'s values as the column's
/// own values do (the index order is the datums' order).
fn same_kind(d: &Datum, kind: Kind) -> bool {
    matches!(
        (d, kind),
        (Datum::Int(_), Kind::Int(_))
            | (Datum::Text(_), Kind::Text)
            | (Datum::Bool(_), Kind::Bool)
            | (Datum::Date(_), Kind::Date)
            | (Datum::Timestamp(_), Kind::Timestamp)
            | (Datum::TimestampTz(_), Kind::TimestampTz)
            | (Datum::Uuid(_), Kind::Uuid)
    )
}
