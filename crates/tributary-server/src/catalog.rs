//! The catalog queries clients send to list views and their columns:
//! psql's `\d`, `\dv` and `\d name` (`pg_class`, `pg_attribute`,
//! `pg_get_viewdef`), and `information_schema.tables`/`columns`.
//!
//! There is no catalog database behind them: each recognised query is
//! answered from the declared views, one value per item of the query's own
//! select list (by the item's expression, so psql versions that select a
//! few more or fewer columns still get a row of the shape they asked for;
//! items with no meaning here are NULL). Every view is in schema `public`
//! and has oid 16384 + its index. A catalog query not recognised gets an
//! error, never a made-up answer.

use sqlparser::ast::{self, SelectItem, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use tributary_views::DeclaredView;

use crate::encode::type_name;
use crate::query::{Context, QueryError};

/// Oids of views start here (PostgreSQL's first user oid).
const FIRST_OID: usize = 16_384;

/// A catalog query's result: text columns and rows.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

/// `None` when `sql` is no catalog query.
pub(crate) fn answer(sql: &str, ctx: &Context) -> Option<Result<Answer, QueryError>> {
    let lower = sql.to_lowercase();
    if !lower.contains("pg_catalog") && !lower.contains("information_schema") {
        return None;
    }
    Some(answer_catalog(sql, &lower, ctx))
}

fn answer_catalog(sql: &str, lower: &str, ctx: &Context) -> Result<Answer, QueryError> {
    let refuse = || {
        QueryError::new(
            "0A000",
            "this catalog query is not supported: Tributary answers the catalog queries of \
             psql's \\d and information_schema.tables/columns",
        )
    };
    let items = select_list(sql).ok_or_else(refuse)?;
    let views = ctx.views.views();
    let oid_of = |i: usize| (FIRST_OID + i).to_string();
    let by_oid = || {
        oid_in(lower)
            .and_then(|o| o.checked_sub(FIRST_OID))
            .filter(|&i| i < views.len())
    };
    let name_filter = regex_after(lower, "relname operator(pg_catalog.~) '");
    let matching = |v: &DeclaredView| {
        name_filter
            .as_ref()
            .is_none_or(|re| matches_pattern(re, &v.name))
    };

    let rows: Vec<Vec<Option<String>>> = if lower.contains("pg_get_viewdef(") {
        let i = by_oid().ok_or_else(refuse)?;
        vec![items.iter().map(|_| Some(views[i].sql.clone())).collect()]
    } else if lower.contains("from pg_catalog.pg_attribute a") {
        let Some(i) = by_oid() else {
            return Ok(empty(&items));
        };
        views[i]
            .columns
            .iter()
            .enumerate()
            .map(|(n, c)| {
                items
                    .iter()
                    .map(|item| attribute(&item.expr, &c.name, type_name(c.kind), n + 1))
                    .collect()
            })
            .collect()
    } else if lower.contains("from pg_catalog.pg_class c") && lower.contains("c.relchecks") {
        let Some(_) = by_oid() else {
            return Ok(empty(&items));
        };
        vec![items.iter().map(|item| relation_info(&item.expr)).collect()]
    } else if lower.contains("from pg_catalog.pg_class c") {
        let kinds = lower
            .split("c.relkind in (")
            .nth(1)
            .map(|s| s.split(')').next().unwrap_or(""));
        if kinds.is_some_and(|k| !k.contains("'v'")) {
            return Ok(empty(&items));
        }
        let schema_ok = regex_after(lower, "nspname operator(pg_catalog.~) '")
            .is_none_or(|re| matches_pattern(&re, "public"));
        views
            .iter()
            .enumerate()
            .filter(|(_, v)| schema_ok && matching(v))
            .map(|(i, v)| {
                items
                    .iter()
                    .map(|item| relation_row(&item.expr, &item.name, &oid_of(i), &v.name))
                    .collect()
            })
            .collect()
    } else if lower.contains("information_schema.columns") {
        let wanted = quoted_after(lower, "table_name = '");
        views
            .iter()
            .filter(|v| wanted.as_ref().is_none_or(|w| *w == v.name.to_lowercase()))
            .flat_map(|v| {
                v.columns.iter().enumerate().map(|(n, c)| {
                    items
                        .iter()
                        .map(|item| {
                            schema_column(&item.name, &v.name, &c.name, type_name(c.kind), n + 1)
                        })
                        .collect()
                })
            })
            .collect()
    } else if lower.contains("information_schema.tables") {
        let wanted = quoted_after(lower, "table_name = '");
        views
            .iter()
            .filter(|v| wanted.as_ref().is_none_or(|w| *w == v.name.to_lowercase()))
            .map(|v| {
                items
                    .iter()
                    .map(|item| schema_table(&item.name, &v.name))
                    .collect()
            })
            .collect()
    } else {
        return Err(refuse());
    };
    let mut rows = rows;
    // Columns come in their own order (psql orders them by attnum);
    // relation lists by name, as psql's ORDER BY asks.
    if lower.contains("order by") && !lower.contains("pg_attribute") {
        rows.sort();
    }
    Ok(Answer {
        columns: items.into_iter().map(|i| i.name).collect(),
        rows,
    })
}

/// The oid a query asks about (`c.oid = '…'`, `attrelid = '…'`,
/// `pg_get_viewdef('…'`).
fn oid_in(lower: &str) -> Option<usize> {
    ["c.oid = '", "attrelid = '", "pg_get_viewdef('"]
        .iter()
        .find_map(|m| quoted_after(lower, m))
        .and_then(|o| o.parse().ok())
}

fn empty(items: &[Item]) -> Answer {
    Answer {
        columns: items.iter().map(|i| i.name.clone()).collect(),
        rows: Vec::new(),
    }
}

/// One item of a select list: its expression's text (lower case) and the
/// column name PostgreSQL gives it.
struct Item {
    expr: String,
    name: String,
}

fn select_list(sql: &str) -> Option<Vec<Item>> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return None;
    };
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                _ => return None,
            };
            let name = alias.unwrap_or_else(|| column_name(expr));
            Some(Item {
                expr: expr.to_string().to_lowercase(),
                name,
            })
        })
        .collect()
}

/// The name PostgreSQL gives an unaliased select item.
fn column_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(id) => id.value.clone(),
        ast::Expr::CompoundIdentifier(ids) => {
            ids.last().map_or("?column?".into(), |i| i.value.clone())
        }
        ast::Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map_or("?column?".into(), |i| i.value.clone()),
        ast::Expr::Cast { expr, .. } => column_name(expr),
        _ => "?column?".into(),
    }
}

/// A `pg_class` row of the relation list or name lookup.
fn relation_row(expr: &str, name: &str, oid: &str, view: &str) -> Option<String> {
    let is = |s: &str| expr.contains(s);
    Some(match () {
        _ if expr == "c.oid" => oid.to_owned(),
        _ if is("nspname") => "public".into(),
        _ if expr == "c.relname" => view.to_owned(),
        _ if is("case c.relkind") => "view".into(),
        _ if is("pg_get_userbyid") => "tributary".into(),
        _ if is("relpersistence") => "permanent".into(),
        _ if name == "Access method" => return None,
        _ if is("pg_size_pretty") => "0 bytes".into(),
        _ => return None,
    })
}

/// The `pg_class` details psql's `\d name` reads (`c.relchecks, …`).
fn relation_info(expr: &str) -> Option<String> {
    let is = |s: &str| expr.contains(s);
    Some(match () {
        _ if is("relchecks") => "0".into(),
        _ if is("relkind") => "v".into(),
        _ if is("reltablespace") => "0".into(),
        _ if is("reloftype") => String::new(),
        _ if is("relpersistence") => "p".into(),
        _ if is("relreplident") => "d".into(),
        _ if is("amname") => return None,
        _ if expr == "''" => String::new(),
        _ if is("relhas") || is("rowsecurity") || is("relispartition") || is("false") => "f".into(),
        _ => return None,
    })
}

/// A `pg_attribute` row of psql's column list.
fn attribute(expr: &str, column: &str, ty: &str, number: usize) -> Option<String> {
    let is = |s: &str| expr.contains(s);
    Some(match () {
        _ if expr == "a.attname" => column.to_owned(),
        _ if is("format_type") => ty.to_owned(),
        _ if is("attnotnull") => "f".into(),
        _ if expr == "a.attnum" => number.to_string(),
        _ if expr == "a.attidentity" || expr == "a.attgenerated" => String::new(),
        _ if expr == "a.attstorage" => "p".into(),
        _ => return None,
    })
}

fn schema_column(name: &str, view: &str, column: &str, ty: &str, number: usize) -> Option<String> {
    Some(match name {
        "table_catalog" => "tributary".into(),
        "table_schema" => "public".into(),
        "table_name" => view.to_owned(),
        "column_name" => column.to_owned(),
        "ordinal_position" => number.to_string(),
        "data_type" => ty.to_owned(),
        "is_nullable" => "YES".into(),
        _ => return None,
    })
}

fn schema_table(name: &str, view: &str) -> Option<String> {
    Some(match name {
        "table_catalog" => "tributary".into(),
        "table_schema" => "public".into(),
        "table_name" => view.to_owned(),
        "table_type" => "VIEW".into(),
        _ => return None,
    })
}

/// The text of the single-quoted literal right after `marker`.
fn quoted_after(sql: &str, marker: &str) -> Option<String> {
    let rest = &sql[sql.find(marker)? + marker.len()..];
    Some(rest[..rest.find('\'')?].to_owned())
}

/// psql's name pattern as it sends it: `'^(name)$'`, with `.*` for `*`
/// and `.` for `?`; only those are understood.
fn regex_after(sql: &str, marker: &str) -> Option<String> {
    let re = quoted_after(sql, marker)?;
    Some(
        re.strip_prefix("^(")
            .and_then(|r| r.strip_suffix(")$"))
            .unwrap_or(&re)
            .to_owned(),
    )
}

/// Whether `name` matches a psql pattern (`.*` any run, `.` any char,
/// otherwise literal; case-insensitive as psql lowers unquoted names).
fn matches_pattern(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p {
            [] => n.is_empty(),
            [b'.', b'*', rest @ ..] => (0..=n.len()).any(|i| go(rest, &n[i..])),
            [b'.', rest @ ..] => !n.is_empty() && go(rest, &n[1..]),
            [c, rest @ ..] => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.to_lowercase().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_patterns() {
        assert!(matches_pattern("customer_overview", "customer_overview"));
        assert!(matches_pattern("cust.*", "customer_overview"));
        assert!(!matches_pattern("cust", "customer_overview"));
        assert!(matches_pattern("customer_overvie.", "customer_overview"));
    }
}

#[cfg(test)]
mod psql_queries {
    use super::*;

    const ATTRIBUTES: &str = "SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16389' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;";

    #[test]
    fn psql_column_list() {
        let items = select_list(ATTRIBUTES).expect("parses");
        let values: Vec<Option<String>> = items
            .iter()
            .map(|i| attribute(&i.expr, "id", "integer", 1))
            .collect();
        assert_eq!(
            values[0].as_deref(),
            Some("id"),
            "{:?}",
            items.iter().map(|i| &i.expr).collect::<Vec<_>>()
        );
        assert_eq!(values[1].as_deref(), Some("integer"));
        assert_eq!(values.len(), 7);
        assert_eq!(oid_in(&ATTRIBUTES.to_lowercase()), Some(16389));
    }
}
