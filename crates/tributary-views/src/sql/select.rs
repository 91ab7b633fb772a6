//! `SELECT … FROM … [JOIN … ON …] [WHERE …] [GROUP BY …] [HAVING …]`.

use sqlparser::ast::{
    self, Distinct, GroupByExpr, JoinConstraint, JoinOperator, ObjectNamePart, Query, Select,
    SelectItem, Spanned, TableFactor, TableWithJoins,
};

use super::expr::{Aggregates, Scope, ScopeColumn};
use super::{set_expr, Catalog, ColumnDesc, PlanError, PlannedView};
use crate::dataflow::{JoinKind, Plan};
use crate::expr::{BinaryOp, Expr};

/// A whole query: only its body; ordering and limits belong to reads.
pub(super) fn query(query: &Query, catalog: &Catalog) -> Result<PlannedView, PlanError> {
    let refuse = |what: &str| Err(PlanError::unsupported(what, query.span()));
    if query.with.is_some() {
        return refuse("WITH");
    }
    if query.order_by.is_some() {
        return Err(PlanError::unsupported("ORDER BY in a view", query.span())
            .with_hint("a view is unordered: put ORDER BY in the SELECT that reads it"));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return refuse("LIMIT/OFFSET/FETCH in a view");
    }
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return refuse("FOR UPDATE/SHARE");
    }
    if query.settings.is_some() || query.format_clause.is_some() || !query.pipe_operators.is_empty()
    {
        return refuse("this query clause");
    }
    set_expr(&query.body, catalog)
}

pub(super) fn select(select: &Select, catalog: &Catalog) -> Result<PlannedView, PlanError> {
    refuse_extras(select)?;
    let (mut plan, scope) = from(&select.from, catalog, select.span())?;
    if let Some(predicate) = &select.selection {
        let predicate = scope.boolean(predicate)?;
        plan = Plan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    let group = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
        other => return Err(PlanError::unsupported("this GROUP BY form", other.span())),
    };
    let items = projection(&select.projection, &scope)?;
    let grouped = !group.is_empty()
        || select.having.is_some()
        || items.iter().any(|(e, _)| Aggregates::contains(e));
    let (plan, exprs, columns, key) = if grouped {
        let mut aggregates = Aggregates::new(&scope);
        let mut group_columns = Vec::new();
        for g in group {
            match scope.expr(g)? {
                (Expr::Column(i), _) => group_columns.push(i),
                _ => {
                    return Err(PlanError::unsupported(
                        "GROUP BY on an expression (group by columns)",
                        g.span(),
                    ))
                }
            }
        }
        // The GROUP BY columns name a row of the result, if each is selected.
        let selected: Vec<Option<usize>> = items
            .iter()
            .map(|(item, _)| match scope.expr(item) {
                Ok((Expr::Column(i), _)) if group_columns.contains(&i) => Some(i),
                _ => None,
            })
            .collect();
        let key = group_columns
            .iter()
            .map(|g| selected.iter().position(|s| *s == Some(*g)))
            .collect::<Option<Vec<usize>>>();
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        for (item, name) in &items {
            let (e, kind) = aggregates.expr(item, &group_columns)?;
            exprs.push(e);
            columns.push(ColumnDesc {
                name: name.clone(),
                kind,
            });
        }
        let having = match &select.having {
            Some(h) => Some(aggregates.boolean(h, &group_columns)?),
            None => None,
        };
        let (aggregates, computed) = aggregates.into_parts();
        let input = if computed.is_empty() {
            plan
        } else {
            let exprs = (0..scope.columns().len())
                .map(Expr::Column)
                .chain(computed)
                .collect();
            Plan::Map {
                input: Box::new(plan),
                exprs,
            }
        };
        let mut plan = Plan::Reduce {
            input: Box::new(input),
            group: group_columns,
            aggregates,
        };
        if let Some(predicate) = having {
            plan = Plan::Filter {
                input: Box::new(plan),
                predicate,
            };
        }
        (plan, exprs, columns, key)
    } else {
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        for (item, name) in &items {
            let (e, kind) = scope.expr(item)?;
            exprs.push(e);
            columns.push(ColumnDesc {
                name: name.clone(),
                kind,
            });
        }
        (plan, exprs, columns, None)
    };
    let mut plan = Plan::Map {
        input: Box::new(plan),
        exprs,
    };
    let mut key = key;
    match &select.distinct {
        None | Some(Distinct::All) => {}
        Some(Distinct::Distinct) => {
            plan = Plan::Distinct(Box::new(plan));
            key = Some((0..columns.len()).collect());
        }
        Some(_) => return Err(PlanError::unsupported("DISTINCT ON", select.span())),
    }
    Ok(PlannedView { plan, columns, key })
}

/// The projection's expressions and their output names; `*` and `t.*`
/// expand to the scope's columns.
fn projection(items: &[SelectItem], scope: &Scope) -> Result<Vec<(ast::Expr, String)>, PlanError> {
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => out.push((e.clone(), output_name(e))),
            SelectItem::ExprWithAlias { expr, alias } => {
                out.push((expr.clone(), alias.value.clone()))
            }
            SelectItem::Wildcard(options) if options.opt_exclude.is_none() => {
                out.extend(scope.columns().iter().map(ScopeColumn::reference))
            }
            SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) => {
                let qualifier = name.to_string();
                let matching: Vec<_> = scope
                    .columns()
                    .iter()
                    .filter(|c| c.qualifier == qualifier)
                    .map(ScopeColumn::reference)
                    .collect();
                if matching.is_empty() {
                    return Err(PlanError::new(format!(
                        "missing FROM-clause entry for table \"{qualifier}\""
                    )));
                }
                out.extend(matching);
            }
            other => return Err(PlanError::unsupported("this select item", other.span())),
        }
    }
    Ok(out)
}

/// PostgreSQL's name for an unaliased output column.
fn output_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => i.value.clone(),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map_or("?column?".into(), |i| i.value.clone())
        }
        ast::Expr::Function(f) => f.name.to_string().to_lowercase(),
        ast::Expr::Nested(inner) => output_name(inner),
        ast::Expr::Case { .. } => "case".into(),
        ast::Expr::Cast {
            expr, data_type, ..
        } => match output_name(expr) {
            unnamed if unnamed == "?column?" => super::function::type_column_name(data_type)
                .unwrap_or("?column?")
                .into(),
            named => named,
        },
        _ => "?column?".into(),
    }
}

/// The FROM clause: one relation and its joins.
fn from(
    from: &[TableWithJoins],
    catalog: &Catalog,
    at: sqlparser::tokenizer::Span,
) -> Result<(Plan, Scope), PlanError> {
    let [first] = from else {
        return Err(match from {
            [] => PlanError::unsupported("SELECT without FROM", at),
            _ => PlanError::unsupported("a comma-separated FROM list", at)
                .with_hint("write the joins as JOIN … ON a.x = b.y"),
        });
    };
    let (mut plan, mut scope) = relation(&first.relation, catalog)?;
    for join in &first.joins {
        let (kind, constraint) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, c),
            JoinOperator::FullOuter(c) => (JoinKind::Full, c),
            _ => return Err(PlanError::unsupported("this kind of join", join.span())),
        };
        let JoinConstraint::On(on) = constraint else {
            return Err(
                PlanError::unsupported("a join without ON (USING, NATURAL)", join.span())
                    .with_hint("write the condition as JOIN … ON a.x = b.y"),
            );
        };
        let (right, right_scope) = relation(&join.relation, catalog)?;
        let offset = scope.columns().len();
        let widths = (offset, right_scope.columns().len());
        let joined = scope.join(right_scope)?;
        let (left_key, right_key, residual) = equalities(on, &joined, offset)?;
        plan = Plan::Join {
            kind,
            left: Box::new(plan),
            right: Box::new(right),
            left_key,
            right_key,
            // The rest of the condition decides which pairs match (for an
            // outer join, before the unmatched rows are padded).
            residual: residual
                .into_iter()
                .reduce(|a, b| Expr::And(Box::new(a), Box::new(b))),
            widths,
        };
        scope = joined;
    }
    Ok((plan, scope))
}

/// `ON a.x = b.y [AND …]`: key columns of the left side (indices below
/// `offset`) and of the right side (indices from `offset`), and the other
/// conjuncts (over the joined row).
type JoinKeys = (Vec<Expr>, Vec<Expr>, Vec<Expr>);

fn equalities(on: &ast::Expr, scope: &Scope, offset: usize) -> Result<JoinKeys, PlanError> {
    let mut conjuncts = vec![scope.boolean(on)?];
    let (mut left, mut right, mut residual) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(e) = conjuncts.pop() {
        match e {
            Expr::And(a, b) => {
                conjuncts.push(*a);
                conjuncts.push(*b);
            }
            Expr::Binary(BinaryOp::Eq, a, b) => match (*a, *b) {
                (Expr::Column(x), Expr::Column(y))
                    if (x < offset) != (y < offset) && key_kind(scope, x, y).is_some() =>
                {
                    let (l, r) = if x < offset { (x, y) } else { (y, x) };
                    let kind = key_kind(scope, l, r).expect("checked in the guard");
                    left.push(scope.columns()[l].kind().coerce(Expr::Column(l), kind));
                    let right_kind = scope.columns()[r].kind();
                    right.push(right_kind.coerce(Expr::Column(r - offset), kind));
                }
                (a, b) => residual.push(Expr::binary(BinaryOp::Eq, a, b)),
            },
            other => residual.push(other),
        }
    }
    if left.is_empty() {
        return Err(join_condition(on));
    }
    Ok((left, right, residual))
}

/// The kind two columns compare as, so equal values are equal keys (an
/// integer 1 and a numeric 1.0 both as numeric).
fn key_kind(scope: &Scope, x: usize, y: usize) -> Option<super::Kind> {
    scope.columns()[x].kind().common(scope.columns()[y].kind())
}

fn join_condition(on: &ast::Expr) -> PlanError {
    PlanError::unsupported("this join condition", on.span()).with_hint(
        "a join needs at least one equality of a column of each side (… AND other conditions)",
    )
}

/// One named relation of the catalog, with its alias.
fn relation(factor: &TableFactor, catalog: &Catalog) -> Result<(Plan, Scope), PlanError> {
    if let TableFactor::Derived {
        lateral,
        subquery,
        alias,
        ..
    } = factor
    {
        if *lateral {
            return Err(PlanError::unsupported("LATERAL", factor.span()));
        }
        if let Some(alias) = alias.as_ref().filter(|a| !a.columns.is_empty()) {
            return Err(PlanError::unsupported(
                "column aliases in FROM",
                alias.span(),
            ));
        }
        // A subquery in FROM is planned in place: its plan feeds the outer
        // query's operators, its output columns are the scope.
        let planned = query(subquery, catalog)?;
        let qualifier = alias.as_ref().map_or("subquery", |a| a.name.value.as_str());
        return Ok((
            planned.plan,
            Scope::of_relation(qualifier, &planned.columns),
        ));
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = factor
    else {
        return Err(PlanError::unsupported("this FROM item", factor.span()));
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i.value.clone()),
            _ => Err(PlanError::unsupported("this relation name", factor.span())),
        })
        .collect::<Result<_, _>>()?;
    let (plan, columns, table) = catalog.find(&parts).ok_or_else(|| {
        PlanError::new(format!("relation \"{name}\" does not exist")).with_hint(
            "name a source's table as source.schema.table, with the source's `name` and a \
             table it lists, or a view declared before this one by its name",
        )
    })?;
    if let Some(alias) = alias.as_ref().filter(|a| !a.columns.is_empty()) {
        return Err(PlanError::unsupported(
            "column aliases in FROM",
            alias.span(),
        ));
    }
    let qualifier = alias
        .as_ref()
        .map_or_else(|| table.to_owned(), |a| a.name.value.clone());
    Ok((plan, Scope::of_relation(&qualifier, columns)))
}

/// SELECT clauses this planner does not know: refused, never ignored.
fn refuse_extras(s: &Select) -> Result<(), PlanError> {
    let at = s.span();
    let extras = [
        (s.top.is_some(), "TOP"),
        (s.into.is_some(), "SELECT INTO"),
        (!s.lateral_views.is_empty(), "LATERAL VIEW"),
        (s.prewhere.is_some(), "PREWHERE"),
        (!s.connect_by.is_empty(), "CONNECT BY"),
        (!s.cluster_by.is_empty(), "CLUSTER BY"),
        (!s.distribute_by.is_empty(), "DISTRIBUTE BY"),
        (!s.sort_by.is_empty(), "SORT BY"),
        (!s.named_window.is_empty(), "WINDOW"),
        (s.qualify.is_some(), "QUALIFY"),
        (s.exclude.is_some(), "EXCLUDE"),
        (s.value_table_mode.is_some(), "SELECT AS VALUE"),
    ];
    match extras.iter().find(|(present, _)| *present) {
        Some((_, what)) => Err(PlanError::unsupported(what, at)),
        None => Ok(()),
    }
}
