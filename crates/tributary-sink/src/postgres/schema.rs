//! Target tables: found, created from the schema the events carry, or given
//! the columns a schema change added; and how a JSON-encoded value becomes a
//! value of the target column's type.
//!
//! Rows travel to PostgreSQL as one `jsonb` parameter per statement (one
//! round trip per table per batch, not per row), written with
//! [`Encoding::EXACT`](tributary_core::debezium::Encoding::EXACT) whatever
//! the source's Debezium settings: decimals exact, intervals as ISO-8601
//! with their months and days. Each column then needs the inverse of that
//! encoding in SQL: `date` arrives as days since the epoch,
//! `timestamp`/`time` as microseconds, `bytea` as base64; everything else is
//! the type's own text input (ISO timestamps and intervals, exact decimals,
//! json text, uuid…).

use std::collections::HashMap;

use tokio_postgres::Client;
use tributary_core::TableSchema;
use tributary_pg::quote_ident;

use crate::Error;

/// Bookkeeping columns every target table gets.
pub(super) const LSN: &str = "_tributary_lsn";
pub(super) const ORDINAL: &str = "_tributary_ordinal";
pub(super) const OP: &str = "_tributary_op";
pub(super) const TS: &str = "_tributary_ts";
pub(super) const ID: &str = "_tributary_id";

/// A target table as it is in the target database.
#[derive(Debug, Clone)]
pub(super) struct TargetTable {
    /// `"schema"."table"`, quoted.
    pub name: String,
    /// Column name → `format_type` of the target column.
    pub types: HashMap<String, String>,
    /// The source key (the conflict target in upsert mode).
    pub key: Vec<String>,
}

/// `schema.table` from a rendered template (`table` alone: `public`).
pub(super) fn split_name(rendered: &str) -> (String, String) {
    match rendered.split_once('.') {
        Some((s, t)) => (s.to_owned(), t.to_owned()),
        None => ("public".to_owned(), rendered.to_owned()),
    }
}

pub(super) fn query_error(what: &str, e: tokio_postgres::Error) -> Error {
    Error::postgres(what, e)
}

/// The target's columns and types, or `None` when the table is missing.
pub(super) async fn read_target(
    client: &Client,
    schema: &str,
    table: &str,
) -> Result<Option<HashMap<String, String>>, Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema, &table],
        )
        .await
        .map_err(|e| query_error("reading the target table's columns", e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// `CREATE TABLE` for a source table's schema: in upsert mode keyed like
/// the source plus the position columns; in history mode every column
/// nullable plus op, position, commit time and the event id as the key.
pub(super) fn create_table_sql(name: &str, def: &TableSchema, history: bool) -> String {
    let mut cols: Vec<String> = def
        .columns()
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.sql_type))
        .collect();
    if history {
        cols.push(format!("{OP} text NOT NULL"));
        cols.push(format!("{LSN} pg_lsn NOT NULL"));
        cols.push(format!("{ORDINAL} bigint NOT NULL"));
        cols.push(format!("{TS} timestamptz"));
        cols.push(format!("{ID} text PRIMARY KEY"));
    } else {
        cols.push(format!("{LSN} pg_lsn NOT NULL"));
        cols.push(format!("{ORDINAL} bigint NOT NULL"));
        let key: Vec<String> = def.key().map(|k| quote_ident(&k.name)).collect();
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {name} ({})", cols.join(", "))
}

/// The bookkeeping columns a mode needs, with their types.
pub(super) fn bookkeeping(history: bool) -> &'static [(&'static str, &'static str)] {
    if history {
        &[
            (OP, "text"),
            (LSN, "pg_lsn"),
            (ORDINAL, "bigint"),
            (TS, "timestamptz"),
            (ID, "text"),
        ]
    } else {
        &[(LSN, "pg_lsn"), (ORDINAL, "bigint")]
    }
}

/// `CREATE SCHEMA IF NOT EXISTS`, for a target schema that is missing.
pub(super) fn create_schema_sql(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema))
}

/// `ALTER TABLE … ADD COLUMN IF NOT EXISTS` for a column a schema change added.
pub(super) fn add_column_sql(name: &str, column: &str, sql_type: &str) -> String {
    format!(
        "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {sql_type}",
        quote_ident(column)
    )
}

/// SQL turning the jsonb element `v` into a value of `sql_type`.
pub(super) fn convert(v: &str, sql_type: &str) -> String {
    let text = format!("({v} #>> '{{}}')");
    if let Some(element) = sql_type.strip_suffix("[]") {
        return format!(
            "CASE WHEN jsonb_typeof({v}) = 'array' THEN ARRAY(SELECT {} FROM \
             jsonb_array_elements({v}) AS x(e))::{sql_type} END",
            convert("x.e", element)
        );
    }
    let number = |expr: String| {
        format!("CASE WHEN jsonb_typeof({v}) = 'number' THEN {expr} ELSE {text}::{sql_type} END")
    };
    let micros = format!("{text}::bigint * interval '1 microsecond'");
    let base = sql_type.split('(').next().unwrap_or(sql_type).trim();
    match base {
        "date" => number(format!("date '1970-01-01' + {text}::int")),
        "timestamp" | "timestamp without time zone" => {
            number(format!("(timestamp '1970-01-01' + {micros})::{sql_type}"))
        }
        "time" | "time without time zone" => {
            number(format!("(time '00:00' + {micros})::{sql_type}"))
        }
        "interval" => number(format!("({micros})::{sql_type}")),
        "bytea" => format!("decode({text}, 'base64')"),
        _ => format!("{text}::{sql_type}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_invert_the_mapping() {
        assert_eq!(convert("v", "integer"), "(v #>> '{}')::integer");
        assert!(convert("v", "date").contains("date '1970-01-01' + (v #>> '{}')::int"));
        assert!(convert("v", "timestamp(3) without time zone")
            .contains("::timestamp(3) without time zone"));
        assert_eq!(convert("v", "bytea"), "decode((v #>> '{}'), 'base64')");
        let array = convert("v", "date[]");
        assert!(array.contains("jsonb_array_elements(v)"), "{array}");
        assert!(
            array.contains("date '1970-01-01' + (x.e #>> '{}')::int"),
            "{array}"
        );
    }

    #[test]
    fn names_default_to_public() {
        assert_eq!(
            split_name("cash.accounts"),
            ("cash".into(), "accounts".into())
        );
        assert_eq!(split_name("accounts"), ("public".into(), "accounts".into()));
    }

    #[test]
    fn upsert_tables_are_keyed_history_tables_by_event() {
        let def = TableSchema::untyped(&["id", "n"], 1);
        let upsert = create_table_sql("\"s\".\"t\"", &def, false);
        assert!(upsert.ends_with("PRIMARY KEY (\"id\"))"), "{upsert}");
        let history = create_table_sql("\"s\".\"t\"", &def, true);
        assert!(
            history.contains("_tributary_id text PRIMARY KEY"),
            "{history}"
        );
    }
}
