//! A view's SQL, parsed with `sqlparser` (PostgreSQL dialect) and planned
//! into [`Plan`] operators over the input relations of a [`Catalog`].
//!
//! Whatever this planner does not evaluate exactly as PostgreSQL does is
//! refused when the view is declared, naming the construct and where it
//! is ([`PlanError`]); nothing is approximated.

mod expr;
mod function;
mod select;

use sqlparser::ast::{SetExpr, SetOperator, SetQuantifier, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use tributary_core::TableSchema;

use crate::dataflow::Plan;

/// What a column holds, as far as planning needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// `smallint`, `integer`, `bigint`: arithmetic stays in the wider
    /// operand's width and fails past it, as in PostgreSQL.
    Int(Width),
    Numeric,
    Float,
    Text,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Bytes,
    /// NULL literals: any kind.
    Unknown,
    /// A source column of a type views cannot compute with yet: it may
    /// not be named (nor reached by `*`); its values never enter a view.
    Unsupported,
}

impl Kind {
    /// The kind of a PostgreSQL type as `format_type` spells it; `None`
    /// for types views cannot compute with yet.
    pub fn of_sql_type(sql_type: &str) -> Option<Kind> {
        let base = sql_type.split('(').next().unwrap_or(sql_type).trim();
        Some(match base {
            "boolean" => Kind::Bool,
            "smallint" => Kind::Int(Width::I16),
            "integer" => Kind::Int(Width::I32),
            "bigint" => Kind::Int(Width::I64),
            "numeric" => Kind::Numeric,
            // `real` is float4: its arithmetic rounds to single precision,
            // which views do not reproduce yet, so it is not admitted.
            "double precision" => Kind::Float,
            "text" | "character varying" | "character" | "varchar" | "char" | "name" => Kind::Text,
            "date" => Kind::Date,
            "time without time zone" | "time" => Kind::Time,
            "timestamp without time zone" | "timestamp" => Kind::Timestamp,
            "timestamp with time zone" | "timestamptz" => Kind::TimestampTz,
            "uuid" => Kind::Uuid,
            "bytea" => Kind::Bytes,
            _ => return None,
        })
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Kind::Int(_) | Kind::Numeric | Kind::Float | Kind::Unknown
        )
    }

    /// The kind two values resolve to where PostgreSQL needs one (UNION,
    /// CASE, COALESCE): the wider integer, numeric over integers, double
    /// precision over both, NULL's kind the other's. `None`: no common
    /// kind (PostgreSQL would refuse, or convert in ways not admitted).
    pub(super) fn common(self, other: Kind) -> Option<Kind> {
        Some(match (self, other) {
            (x, y) if x == y => x,
            (Kind::Int(x), Kind::Int(y)) => Kind::Int(x.max(y)),
            (Kind::Int(_), Kind::Numeric) | (Kind::Numeric, Kind::Int(_)) => Kind::Numeric,
            (Kind::Float, Kind::Int(_) | Kind::Numeric)
            | (Kind::Int(_) | Kind::Numeric, Kind::Float) => Kind::Float,
            (Kind::Unknown, y) => y,
            (x, Kind::Unknown) => x,
            _ => return None,
        })
    }

    /// `expr` of this kind as a value of `to` (a kind [`Kind::common`]
    /// gave): integers widened to numeric or double precision.
    pub(super) fn coerce(self, expr: crate::expr::Expr, to: Kind) -> crate::expr::Expr {
        use crate::expr::{Cast, Expr};
        match (self, to) {
            (Kind::Int(_), Kind::Numeric) => Expr::ToNumeric(Box::new(expr)),
            (Kind::Int(_) | Kind::Numeric, Kind::Float) => Expr::Cast(Box::new(expr), Cast::Float),
            _ => expr,
        }
    }
}

/// The width of an integer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Width {
    I16,
    I32,
    I64,
}

/// One column of a relation or view: its name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDesc {
    pub name: String,
    pub kind: Kind,
}

/// One input relation views may read: `source.schema.table`.
#[derive(Debug, Clone)]
pub struct Relation {
    /// `[source, schema, table]`.
    pub name: [String; 3],
    pub columns: Vec<ColumnDesc>,
}

impl Relation {
    /// The relation of a source table as its events describe it.
    pub fn of_schema(name: [String; 3], schema: &TableSchema) -> Self {
        let columns = schema
            .columns()
            .iter()
            .map(|c| ColumnDesc {
                name: c.name.clone(),
                kind: Kind::of_sql_type(&c.sql_type).unwrap_or(Kind::Unsupported),
            })
            .collect();
        Self { name, columns }
    }
}

/// The relations views read, by input index, and the views declared so
/// far (a view may read the views declared before it).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    relations: Vec<Relation>,
    views: Vec<(String, PlannedView)>,
}

impl Catalog {
    /// Adds a relation; returns its input index.
    pub fn add(&mut self, relation: Relation) -> usize {
        self.relations.push(relation);
        self.relations.len() - 1
    }

    /// Adds a view later views may read by `name`: its plan is read in
    /// place of the name, so the engine keeps one dataflow per view.
    pub fn add_view(&mut self, name: &str, view: &PlannedView) {
        self.views.push((name.to_owned(), view.clone()));
    }

    /// A relation or view by its dotted name: its plan, its columns and
    /// the name its columns are qualified by.
    fn find(&self, parts: &[String]) -> Option<(Plan, &[ColumnDesc], &str)> {
        if let [name] = parts {
            if let Some((name, view)) = self.views.iter().find(|(n, _)| n == name) {
                return Some((view.plan.clone(), &view.columns, name));
            }
        }
        self.relations
            .iter()
            .enumerate()
            .find(|(_, r)| r.name.as_slice() == parts)
            .map(|(i, r)| (Plan::Get(i), r.columns.as_slice(), r.name[2].as_str()))
    }
}

/// A planned view: its plan and its output columns.
#[derive(Debug, Clone)]
pub struct PlannedView {
    pub plan: Plan,
    pub columns: Vec<ColumnDesc>,
    /// Output columns no two rows share the values of, when the SQL says
    /// so: the GROUP BY columns (when each is selected), every column of
    /// a DISTINCT or UNION, none of an ungrouped aggregate's one row.
    /// What a changefeed keys its events by.
    pub key: Option<Vec<usize>>,
}

/// Why a view's SQL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl PlanError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A construct the planner does not support, and where it starts.
    pub(crate) fn unsupported(construct: &str, at: sqlparser::tokenizer::Span) -> Self {
        let mut e = Self::new(format!("{construct} is not supported in views")).with_detail_at(at);
        e.hint = Some(
            "views support SELECT with expressions (CASE, COALESCE, NULLIF, CAST, lower, upper, \
             length, abs, round, date_trunc), WHERE, [LEFT|RIGHT|FULL] JOIN … ON equalities, \
             GROUP BY with COUNT/SUM/MIN/MAX/AVG, HAVING, DISTINCT, UNION [ALL] and subqueries in \
             FROM"
                .into(),
        );
        e
    }

    /// Adds where in the SQL the refused part starts.
    pub(crate) fn with_detail_at(mut self, at: sqlparser::tokenizer::Span) -> Self {
        if at.start.line > 0 {
            self.detail = Some(format!(
                "at line {}, column {}",
                at.start.line, at.start.column
            ));
        }
        self
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// Plans one view's `SELECT` over `catalog`.
pub fn plan(sql: &str, catalog: &Catalog) -> Result<PlannedView, PlanError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| PlanError::new("syntax error in view SQL").with_hint(e.to_string()))?;
    let statement = match statements.len() {
        1 => statements.remove(0),
        n => {
            return Err(PlanError::new(format!(
                "a view is one SELECT, not {n} statements"
            )))
        }
    };
    let Statement::Query(query) = statement else {
        return Err(PlanError::new("a view is a SELECT statement"));
    };
    select::query(&query, catalog)
}

/// Plans a parsed query (its ORDER BY and LIMIT already taken off by the
/// reader that evaluates them) over `catalog`.
pub fn plan_query(
    query: &sqlparser::ast::Query,
    catalog: &Catalog,
) -> Result<PlannedView, PlanError> {
    select::query(query, catalog)
}

/// A UNION's column kinds, resolved as PostgreSQL resolves them: the
/// wider integer, numeric over integers, a NULL column takes the other's;
/// each side converted where its kind differs. Other mixes are refused.
fn union_kinds(
    l: PlannedView,
    r: PlannedView,
    at: &SetExpr,
) -> Result<(Vec<ColumnDesc>, Plan, Plan), PlanError> {
    use crate::expr::Expr;
    use sqlparser::ast::Spanned;
    let mut columns = Vec::with_capacity(l.columns.len());
    let (mut l_exprs, mut r_exprs) = (Vec::new(), Vec::new());
    for (i, (a, b)) in l.columns.iter().zip(&r.columns).enumerate() {
        let Some(kind) = a.kind.common(b.kind) else {
            return Err(PlanError::new(format!(
                "UNION types {:?} and {:?} cannot be matched",
                a.kind, b.kind
            ))
            .with_detail_at(at.span()));
        };
        l_exprs.push(a.kind.coerce(Expr::Column(i), kind));
        r_exprs.push(b.kind.coerce(Expr::Column(i), kind));
        columns.push(ColumnDesc {
            name: a.name.clone(),
            kind,
        });
    }
    let wrap = |plan: Plan, exprs: Vec<Expr>| {
        if exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i)) {
            plan
        } else {
            Plan::Map {
                input: Box::new(plan),
                exprs,
            }
        }
    };
    Ok((columns, wrap(l.plan, l_exprs), wrap(r.plan, r_exprs)))
}

/// Plans a set expression: a SELECT, a parenthesised query, or a UNION.
fn set_expr(body: &SetExpr, catalog: &Catalog) -> Result<PlannedView, PlanError> {
    use sqlparser::ast::Spanned;
    match body {
        SetExpr::Select(select) => select::select(select, catalog),
        SetExpr::Query(query) => select::query(query, catalog),
        SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier,
            left,
            right,
        } => {
            let (l, r) = (set_expr(left, catalog)?, set_expr(right, catalog)?);
            if l.columns.len() != r.columns.len() {
                return Err(PlanError::new(
                    "each UNION query must have the same number of columns",
                ));
            }
            let (columns, l_plan, r_plan) = union_kinds(l, r, body)?;
            let plan = Plan::Union(vec![l_plan, r_plan]);
            let (plan, key) = match set_quantifier {
                SetQuantifier::All => (plan, None),
                SetQuantifier::None | SetQuantifier::Distinct => (
                    Plan::Distinct(Box::new(plan)),
                    Some((0..columns.len()).collect()),
                ),
                _ => return Err(PlanError::unsupported("this UNION quantifier", body.span())),
            };
            Ok(PlannedView { plan, columns, key })
        }
        other => Err(PlanError::unsupported(
            match other {
                SetExpr::SetOperation { op, .. } => match op {
                    SetOperator::Intersect => "INTERSECT",
                    SetOperator::Except => "EXCEPT",
                    _ => "this set operation",
                },
                SetExpr::Values(_) => "VALUES",
                _ => "this query form",
            },
            other.span(),
        )),
    }
}
