//! Expressions: names resolved against the FROM clause's columns, kinds
//! checked as PostgreSQL checks them, aggregates gathered for `Reduce`.

use sqlparser::ast::{
    self, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned, UnaryOperator,
};

use super::{function, ColumnDesc, Kind, PlanError, Width};
use crate::dataflow::Aggregate;
use crate::datum::Datum;
use crate::expr::{BinaryOp, Expr};

/// One column in scope: the relation (or alias) it comes from, its name.
#[derive(Debug, Clone)]
pub(super) struct ScopeColumn {
    pub(super) qualifier: String,
    name: String,
    kind: Kind,
}

impl ScopeColumn {
    pub(super) fn kind(&self) -> Kind {
        self.kind
    }

    /// `qualifier.name`, as a projection item named `name`.
    pub(super) fn reference(&self) -> (ast::Expr, String) {
        let e = ast::Expr::CompoundIdentifier(vec![
            ast::Ident::new(&self.qualifier),
            ast::Ident::new(&self.name),
        ]);
        (e, self.name.clone())
    }
}

/// The columns a SELECT's expressions can name, in the row's order.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    columns: Vec<ScopeColumn>,
}

impl Scope {
    pub(super) fn of_relation(qualifier: &str, columns: &[ColumnDesc]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|c| ScopeColumn {
                    qualifier: qualifier.to_owned(),
                    name: c.name.clone(),
                    kind: c.kind,
                })
                .collect(),
        }
    }

    pub(super) fn columns(&self) -> &[ScopeColumn] {
        &self.columns
    }

    /// This scope's columns, then `right`'s (a join's row).
    pub(super) fn join(&self, right: Scope) -> Result<Scope, PlanError> {
        if let Some(c) = right
            .columns
            .iter()
            .find(|c| self.columns.iter().any(|l| l.qualifier == c.qualifier))
        {
            return Err(PlanError::new(format!(
                "table name \"{}\" specified more than once",
                c.qualifier
            ))
            .with_hint("give one of them an alias"));
        }
        let mut columns = self.columns.clone();
        columns.extend(right.columns);
        Ok(Scope { columns })
    }

    fn resolve(&self, qualifier: Option<&str>, name: &str) -> Result<(usize, Kind), PlanError> {
        let mut found = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == name && qualifier.is_none_or(|q| c.qualifier == q));
        match (found.next(), found.next()) {
            (Some((_, c)), None) if c.kind == Kind::Unsupported => Err(PlanError::new(format!(
                "column \"{name}\" has a type views cannot compute with yet"
            ))
            .with_hint("leave the column out of the view (name the columns rather than *)")),
            (Some((i, c)), None) => Ok((i, c.kind)),
            (Some(_), Some(_)) => Err(PlanError::new(format!(
                "column reference \"{name}\" is ambiguous"
            ))),
            (None, _) => Err(PlanError::new(match qualifier {
                Some(q) => format!("column {q}.{name} does not exist"),
                None => format!("column \"{name}\" does not exist"),
            })),
        }
    }

    /// A scalar expression (no aggregates) over this scope's row.
    pub(super) fn expr(&self, e: &ast::Expr) -> Result<(Expr, Kind), PlanError> {
        scalar(e, &mut |e| match e {
            ast::Expr::Identifier(i) => Some(
                self.resolve(None, &i.value)
                    .map(|(c, k)| (Expr::Column(c), k)),
            ),
            ast::Expr::CompoundIdentifier(parts) => Some(match parts.as_slice() {
                [q, n] => self
                    .resolve(Some(&q.value), &n.value)
                    .map(|(c, k)| (Expr::Column(c), k)),
                _ => Err(PlanError::unsupported("this column reference", e.span())),
            }),
            ast::Expr::Function(f) if aggregate_name(f).is_some() => Some(Err(PlanError::new(
                format!("aggregate functions are not allowed here: {}", f.name),
            ))),
            _ => None,
        })
    }

    /// A predicate: an expression of kind boolean.
    pub(super) fn boolean(&self, e: &ast::Expr) -> Result<Expr, PlanError> {
        let (expr, kind) = self.expr(e)?;
        expect_bool(kind, e)?;
        Ok(expr)
    }
}

fn expect_bool(kind: Kind, e: &ast::Expr) -> Result<(), PlanError> {
    match kind {
        Kind::Bool | Kind::Unknown => Ok(()),
        other => Err(PlanError::new(format!(
            "argument must be type boolean, not {other:?}: {e}"
        ))),
    }
}

/// The aggregates of a grouped SELECT, gathered as its expressions are
/// planned over the `Reduce` output (group columns, then aggregates).
pub(super) struct Aggregates<'a> {
    scope: &'a Scope,
    list: Vec<Aggregate>,
    /// Expressions aggregated (`sum(qty * price)`): computed per input row
    /// after the scope's columns, so each aggregate still reads a column.
    computed: Vec<Expr>,
}

impl<'a> Aggregates<'a> {
    pub(super) fn new(scope: &'a Scope) -> Self {
        Self {
            scope,
            list: Vec::new(),
            computed: Vec::new(),
        }
    }

    /// The aggregates, and the expressions to append to each input row
    /// before the `Reduce` (empty: the input row as it is).
    pub(super) fn into_parts(self) -> (Vec<Aggregate>, Vec<Expr>) {
        (self.list, self.computed)
    }

    /// Whether `e` calls an aggregate function anywhere.
    pub(super) fn contains(e: &ast::Expr) -> bool {
        let mut found = false;
        let _ = ast::visit_expressions(e, |e| {
            if matches!(e, ast::Expr::Function(f) if aggregate_name(f).is_some()) {
                found = true;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        found
    }

    /// An expression over the reduced row: group columns by position in
    /// `group`, aggregate calls by their own column.
    pub(super) fn expr(
        &mut self,
        e: &ast::Expr,
        group: &[usize],
    ) -> Result<(Expr, Kind), PlanError> {
        let scope = self.scope;
        scalar(e, &mut |e| match e {
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                Some(scope.expr(e).and_then(|(col, kind)| match col {
                    Expr::Column(c) => match group.iter().position(|g| *g == c) {
                        Some(p) => Ok((Expr::Column(p), kind)),
                        None => Err(PlanError::new(format!(
                            "column \"{e}\" must appear in the GROUP BY clause or be used in \
                             an aggregate function"
                        ))),
                    },
                    _ => unreachable!("a name resolves to a column"),
                }))
            }
            ast::Expr::Function(f) => aggregate_name(f).map(|name| {
                let (call, kind) = self.call(name, f)?;
                let mut column = |aggregate| Expr::Column(group.len() + self.register(aggregate));
                Ok(match call {
                    Call::One(aggregate) => (column(aggregate), kind),
                    // avg is sum / count with numeric division (double
                    // precision for floats), as PostgreSQL's avg finishes.
                    Call::Avg { sum, count } => {
                        let (sum, count) = (column(sum), column(count));
                        let quotient = if kind == Kind::Float {
                            Expr::binary(BinaryOp::Div, sum, count)
                        } else {
                            Expr::binary(
                                BinaryOp::Div,
                                Expr::ToNumeric(Box::new(sum)),
                                Expr::ToNumeric(Box::new(count)),
                            )
                        };
                        (quotient, kind)
                    }
                })
            }),
            _ => None,
        })
    }

    /// The index of `aggregate` among the reduction's outputs.
    fn register(&mut self, aggregate: Aggregate) -> usize {
        match self.list.iter().position(|a| *a == aggregate) {
            Some(i) => i,
            None => {
                self.list.push(aggregate);
                self.list.len() - 1
            }
        }
    }

    pub(super) fn boolean(&mut self, e: &ast::Expr, group: &[usize]) -> Result<Expr, PlanError> {
        let (expr, kind) = self.expr(e, group)?;
        expect_bool(kind, e)?;
        Ok(expr)
    }

    /// `count(*)`, `count([DISTINCT] x)`, `sum([DISTINCT] x)`, `min(x)`,
    /// `max(x)`, `avg([DISTINCT] x)` of a column or an expression.
    fn call(&mut self, name: &str, f: &ast::Function) -> Result<(Call, Kind), PlanError> {
        let refuse = |what: &str| Err(PlanError::unsupported(what, f.span()));
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return refuse("FILTER/OVER/WITHIN GROUP on an aggregate");
        }
        let FunctionArguments::List(list) = &f.args else {
            return refuse("this aggregate call");
        };
        if !list.clauses.is_empty() {
            return refuse("ORDER BY inside an aggregate");
        }
        let distinct = matches!(
            list.duplicate_treatment,
            Some(ast::DuplicateTreatment::Distinct)
        );
        let arg = match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if name == "count" && !distinct => {
                return Ok((Call::One(Aggregate::CountRows), Kind::Int(Width::I64)))
            }
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => e,
            _ => return refuse("this aggregate's arguments"),
        };
        if Aggregates::contains(arg) {
            return refuse("an aggregate inside an aggregate");
        }
        let (column, kind) = match self.scope.expr(arg)? {
            (Expr::Column(c), kind) => (c, kind),
            (computed, kind) => {
                let index = match self.computed.iter().position(|c| *c == computed) {
                    Some(i) => i,
                    None => {
                        self.computed.push(computed);
                        self.computed.len() - 1
                    }
                };
                (self.scope.columns().len() + index, kind)
            }
        };
        let count = if distinct {
            Aggregate::CountDistinct(column)
        } else {
            Aggregate::Count(column)
        };
        let sum = match (distinct, kind) {
            (true, _) => Aggregate::SumDistinct(column),
            // Float addition depends on its order: recomputed, not accumulated.
            (false, Kind::Float) => Aggregate::SumFloat(column),
            (false, _) => Aggregate::Sum(column),
        };
        let no_such = || {
            Err(PlanError::new(format!(
                "function {name}({kind:?}) does not exist"
            )))
        };
        Ok(match name {
            "count" => (Call::One(count), Kind::Int(Width::I64)),
            // sum(smallint/integer) is bigint; sum(bigint) is numeric.
            "sum" => match kind {
                Kind::Int(Width::I64) => (Call::One(sum), Kind::Numeric),
                Kind::Int(_) => (Call::One(sum), Kind::Int(Width::I64)),
                k if k.is_numeric() => (Call::One(sum), k),
                _ => return no_such(),
            },
            // avg of integers and numerics is numeric; of floats, a float.
            "avg" => match kind {
                Kind::Int(_) | Kind::Numeric | Kind::Unknown => {
                    (Call::Avg { sum, count }, Kind::Numeric)
                }
                Kind::Float => (Call::Avg { sum, count }, Kind::Float),
                _ => return no_such(),
            },
            // DISTINCT changes nothing for the extremes.
            "min" => (Call::One(Aggregate::Min(column)), kind),
            _ => (Call::One(Aggregate::Max(column)), kind),
        })
    }
}

/// What one aggregate call reduces to.
enum Call {
    One(Aggregate),
    Avg { sum: Aggregate, count: Aggregate },
}

fn aggregate_name(f: &ast::Function) -> Option<&'static str> {
    let name = f.name.to_string().to_lowercase();
    ["count", "sum", "min", "max", "avg"]
        .into_iter()
        .find(|n| *n == name)
}

/// A planned expression and its kind.
type Planned = Result<(Expr, Kind), PlanError>;

/// Plans the scalar parts of `e`; `leaf` plans names and function calls
/// (returning `None` for what it does not handle).
fn scalar(e: &ast::Expr, leaf: &mut dyn FnMut(&ast::Expr) -> Option<Planned>) -> Planned {
    if let Some(planned) = leaf(e) {
        return planned;
    }
    Ok(match e {
        ast::Expr::Nested(inner) => scalar(inner, leaf)?,
        ast::Expr::Value(v) => literal(&v.value, e)?,
        ast::Expr::IsNull(inner) => (Expr::IsNull(Box::new(scalar(inner, leaf)?.0)), Kind::Bool),
        ast::Expr::IsNotNull(inner) => (
            Expr::Not(Box::new(Expr::IsNull(Box::new(scalar(inner, leaf)?.0)))),
            Kind::Bool,
        ),
        ast::Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => {
            let (x, kind) = scalar(expr, leaf)?;
            expect_bool(kind, expr)?;
            (Expr::Not(Box::new(x)), Kind::Bool)
        }
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => {
            let (x, kind) = scalar(expr, leaf)?;
            match (x, kind) {
                (Expr::Literal(Datum::Int(i)), kind) => (Expr::Literal(Datum::Int(-i)), kind),
                (Expr::Literal(Datum::Numeric(n)), _) => {
                    (Expr::Literal(Datum::Numeric(-n)), Kind::Numeric)
                }
                (x, kind @ (Kind::Int(_) | Kind::Numeric)) => (
                    narrow(
                        Expr::binary(BinaryOp::Sub, Expr::Literal(Datum::Int(0)), x),
                        kind,
                    ),
                    kind,
                ),
                _ => return Err(PlanError::unsupported("unary minus of this type", e.span())),
            }
        }
        ast::Expr::BinaryOp { left, op, right } => {
            let (l, lk) = scalar(left, leaf)?;
            let (r, rk) = scalar(right, leaf)?;
            binary(op, (l, lk), (r, rk), e)?
        }
        ast::Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = operand.as_deref().map(|o| scalar(o, leaf)).transpose()?;
            let whens = conditions
                .iter()
                .map(|w| Ok((scalar(&w.condition, leaf)?, scalar(&w.result, leaf)?)))
                .collect::<Result<Vec<_>, PlanError>>()?;
            let otherwise = else_result
                .as_deref()
                .map(|x| scalar(x, leaf))
                .transpose()?;
            function::case(operand, whens, otherwise, e)?
        }
        ast::Expr::Cast {
            kind,
            expr,
            data_type,
            format: None,
        } => function::cast(scalar(expr, leaf)?, kind, data_type, e)?,
        ast::Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            let args = plain_arguments(f)?
                .into_iter()
                .map(|a| scalar(a, leaf))
                .collect::<Result<Vec<_>, _>>()?;
            function::call(&name, args, e)?
        }
        _ => return Err(PlanError::unsupported(&construct(e), e.span())),
    })
}

fn binary(
    op: &BinaryOperator,
    (l, lk): (Expr, Kind),
    (r, rk): (Expr, Kind),
    e: &ast::Expr,
) -> Result<(Expr, Kind), PlanError> {
    use BinaryOperator as B;
    let mismatch = || PlanError::new(format!("operator does not exist: {lk:?} {op} {rk:?}"));
    Ok(match op {
        B::And | B::Or => {
            if !matches!(lk, Kind::Bool | Kind::Unknown)
                || !matches!(rk, Kind::Bool | Kind::Unknown)
            {
                return Err(mismatch());
            }
            let (l, r) = (Box::new(l), Box::new(r));
            (
                if *op == B::And {
                    Expr::And(l, r)
                } else {
                    Expr::Or(l, r)
                },
                Kind::Bool,
            )
        }
        B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
            let kind = match (lk, rk) {
                (Kind::Unknown, Kind::Unknown) => Kind::Unknown,
                // There is no double precision `%`.
                (Kind::Float, _) | (_, Kind::Float) if *op == B::Modulo => return Err(mismatch()),
                (a, b) if a.is_numeric() && b.is_numeric() => a.common(b).ok_or_else(mismatch)?,
                _ => return Err(mismatch()),
            };
            let op = match op {
                B::Plus => BinaryOp::Add,
                B::Minus => BinaryOp::Sub,
                B::Multiply => BinaryOp::Mul,
                B::Modulo => BinaryOp::Mod,
                _ => BinaryOp::Div,
            };
            (narrow(Expr::binary(op, l, r), kind), kind)
        }
        B::StringConcat => {
            // text || anything (but an array) casts the other side to text.
            let text = |x: Expr, k: Kind, side: &ast::Expr| match k {
                Kind::Text | Kind::Unknown => Ok(x),
                k => function::cast((x, k), &ast::CastKind::Cast, &ast::DataType::Text, side)
                    .map(|(x, _)| x),
            };
            if !matches!(lk, Kind::Text | Kind::Unknown)
                && !matches!(rk, Kind::Text | Kind::Unknown)
            {
                return Err(mismatch());
            }
            let ast::Expr::BinaryOp { left, right, .. } = e else {
                unreachable!("a binary operator's expression")
            };
            let (l, r) = (text(l, lk, left)?, text(r, rk, right)?);
            (Expr::binary(BinaryOp::Concat, l, r), Kind::Text)
        }
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
            if !function::comparable(lk, rk) {
                return Err(mismatch());
            }
            let op = match op {
                B::Eq => BinaryOp::Eq,
                B::NotEq => BinaryOp::NotEq,
                B::Lt => BinaryOp::Lt,
                B::LtEq => BinaryOp::LtEq,
                B::Gt => BinaryOp::Gt,
                _ => BinaryOp::GtEq,
            };
            (Expr::binary(op, l, r), Kind::Bool)
        }
        other => {
            return Err(PlanError::unsupported(
                &format!("operator {other} (not yet)"),
                e.span(),
            ))
        }
    })
}

/// A scalar function's positional arguments; the forms only aggregates
/// and window functions take are refused.
fn plain_arguments(f: &ast::Function) -> Result<Vec<&ast::Expr>, PlanError> {
    let refuse = |what: &str| Err(PlanError::unsupported(what, f.span()));
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return refuse(&format!("FILTER/OVER/WITHIN GROUP on {}", f.name));
    }
    let list = match &f.args {
        FunctionArguments::List(list) => list,
        FunctionArguments::None => return Ok(Vec::new()),
        FunctionArguments::Subquery(_) => return refuse("a subquery as a function argument"),
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return refuse(&format!("DISTINCT or ORDER BY in {}()", f.name));
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(PlanError::unsupported("this function argument", a.span())),
        })
        .collect()
}

/// Integer arithmetic of a narrower kind fails past its width.
fn narrow(e: Expr, kind: Kind) -> Expr {
    match kind {
        Kind::Int(Width::I16) => Expr::InRange(16, Box::new(e)),
        Kind::Int(Width::I32) => Expr::InRange(32, Box::new(e)),
        _ => e,
    }
}

fn literal(v: &ast::Value, e: &ast::Expr) -> Result<(Expr, Kind), PlanError> {
    Ok(match v {
        ast::Value::Null => (Expr::Literal(Datum::Null), Kind::Unknown),
        ast::Value::Boolean(b) => (Expr::Literal(Datum::Bool(*b)), Kind::Bool),
        ast::Value::SingleQuotedString(s) => (Expr::Literal(Datum::Text(s.clone())), Kind::Text),
        ast::Value::Number(text, _) => match text.parse::<i64>() {
            // PostgreSQL: an integer literal that fits is an integer.
            Ok(i) if !text.contains(['.', 'e', 'E']) => {
                // `integer` if it fits, else `bigint`, as PostgreSQL types it.
                let width = if i32::try_from(i).is_ok() {
                    Width::I32
                } else {
                    Width::I64
                };
                (Expr::Literal(Datum::Int(i)), Kind::Int(width))
            }
            _ => (
                Expr::Literal(Datum::Numeric(
                    text.parse()
                        .map_err(|_| PlanError::new(format!("invalid number \"{text}\"")))?,
                )),
                Kind::Numeric,
            ),
        },
        _ => return Err(PlanError::unsupported("this literal", e.span())),
    })
}

/// A short name for an expression form, for refusals.
fn construct(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Cast { .. } => "CAST … FORMAT".into(),
        ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. } => {
            "a subquery in an expression".into()
        }
        ast::Expr::InList { .. } => "IN (…) (not yet)".into(),
        ast::Expr::Between { .. } => "BETWEEN (not yet)".into(),
        ast::Expr::Like { .. } | ast::Expr::ILike { .. } => "LIKE (not yet)".into(),
        _ => "this expression".into(),
    }
}
