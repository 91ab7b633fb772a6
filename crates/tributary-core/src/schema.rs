//! What a relation's rows are: column names, SQL types, nullability and key,
//! carried with every event so a consumer never asks the source's database.
//!
//! The PostgreSQL sink creates and widens its target tables from it, a view
//! engine types its inputs by it. SQL types are spelled as PostgreSQL spells
//! them (`numeric(10,2)`, `timestamp with time zone`, `text[]`): the one SQL
//! dialect Tributary speaks outward (its sink, its query endpoint), so a
//! MySQL source maps its types onto these names where it decodes them.

use std::sync::Arc;

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Portable SQL type: a built-in PostgreSQL type (with its modifiers);
    /// domains are their base type, and enums and extension types `text`
    /// (their values travel as text).
    pub sql_type: String,
    pub nullable: bool,
}

/// The shape of one relation's rows, shared by every event of it (an `Arc`
/// per relation, replaced when the source sees the relation change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    columns: Vec<Column>,
    /// Indices into `columns` of the key (primary key, else replica
    /// identity); empty without one.
    key: Vec<usize>,
}

impl TableSchema {
    /// `key` holds indices into `columns`; out-of-range ones are dropped
    /// along with the whole key (a key without all its columns is no key).
    pub fn new(columns: Vec<Column>, key: Vec<usize>) -> Self {
        let key = if key.iter().all(|&i| i < columns.len()) {
            key
        } else {
            Vec::new()
        };
        Self { columns, key }
    }

    /// A schema whose every column is nullable `text` keyed by the first
    /// `key_len` columns: for sources that know names only (tests, streams).
    pub fn untyped(names: &[&str], key_len: usize) -> Arc<Self> {
        let columns = names
            .iter()
            .map(|name| Column {
                name: (*name).to_owned(),
                sql_type: "text".to_owned(),
                nullable: true,
            })
            .collect();
        Arc::new(Self::new(columns, (0..key_len.min(names.len())).collect()))
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key columns, in key order.
    pub fn key(&self) -> impl Iterator<Item = &Column> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

/// One column declared in a config as SQL declares it, `name type [not
/// null]` (`"amount numeric(12,2) not null"`): for sources whose messages
/// carry no schema (a NATS subject, a Kafka topic). The type is one of
/// those a message field can be read as, spelled back as PostgreSQL's
/// `format_type` spells it (`int8` → `bigint`), so a declared column and a
/// captured one of the same type are the same to every consumer.
pub fn declare_column(text: &str) -> Result<Column, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (name, rest) = words
        .split_first()
        .ok_or_else(|| "a column is declared as \"name type\"".to_owned())?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!(
            "column name \"{name}\" is not a plain identifier (letters, digits and _)"
        ));
    }
    let lower: Vec<String> = rest.iter().map(|w| w.to_ascii_lowercase()).collect();
    let (type_words, nullable) = match lower.as_slice() {
        [t @ .., n, nn] if n == "not" && nn == "null" => (t, false),
        [t @ .., n] if n == "null" => (t, true),
        t => (t, true),
    };
    let written = type_words.join(" ");
    let sql_type = canonical_type(&written)
        .ok_or_else(|| format!("column \"{name}\": type \"{written}\" cannot be declared"))?;
    Ok(Column {
        name: (*name).to_owned(),
        sql_type,
        nullable,
    })
}

/// The types a declared column may have, as `format_type` spells them.
pub const DECLARABLE_TYPES: &str = "boolean, smallint, integer, bigint, numeric[(p[,s])], \
    double precision, text, varchar, date, time, timestamp, timestamptz, uuid, jsonb, json, bytea";

fn canonical_type(written: &str) -> Option<String> {
    let (base, modifier) = match written.split_once('(') {
        Some((b, m)) => (b.trim(), Some(m.strip_suffix(')')?.replace(' ', ""))),
        None => (written, None),
    };
    let plain = |t: &str| modifier.is_none().then(|| t.to_owned());
    match base {
        "boolean" | "bool" => plain("boolean"),
        "smallint" | "int2" => plain("smallint"),
        "integer" | "int" | "int4" => plain("integer"),
        "bigint" | "int8" => plain("bigint"),
        "double precision" | "float8" => plain("double precision"),
        "text" => plain("text"),
        "varchar" | "character varying" => Some(match &modifier {
            None => "character varying".to_owned(),
            Some(n) => {
                n.parse::<u32>().ok().filter(|n| *n > 0)?;
                format!("character varying({n})")
            }
        }),
        "date" => plain("date"),
        "time" | "time without time zone" => plain("time without time zone"),
        "timestamp" | "timestamp without time zone" => plain("timestamp without time zone"),
        "timestamptz" | "timestamp with time zone" => plain("timestamp with time zone"),
        "uuid" => plain("uuid"),
        "json" => plain("json"),
        "jsonb" => plain("jsonb"),
        "bytea" => plain("bytea"),
        "numeric" | "decimal" => match &modifier {
            None => Some("numeric".to_owned()),
            Some(m) => {
                let (p, s) = m.split_once(',').unwrap_or((m, "0"));
                let (p, s): (u32, u32) = (p.parse().ok()?, s.parse().ok()?);
                ((1..=1000).contains(&p) && s <= p).then(|| format!("numeric({p},{s})"))
            }
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_columns_read_as_sql_declares_them() {
        let c = declare_column("amount NUMERIC(12, 2) not null").unwrap();
        assert_eq!(
            (c.name.as_str(), c.sql_type.as_str(), c.nullable),
            ("amount", "numeric(12,2)", false)
        );
        let c = declare_column("paid_at timestamptz").unwrap();
        assert_eq!(
            (c.sql_type.as_str(), c.nullable),
            ("timestamp with time zone", true)
        );
        assert_eq!(declare_column("n int8 null").unwrap().sql_type, "bigint");
        assert_eq!(
            declare_column("d decimal(5)").unwrap().sql_type,
            "numeric(5,0)"
        );
        for bad in [
            "",
            "amount",
            "amount money",
            "amount numeric(2,3)",
            "1st text",
            "a-b text",
            "n integer(4)",
            "s varchar(0)",
        ] {
            assert!(declare_column(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_key_with_a_missing_column_is_no_key() {
        let s = TableSchema::untyped(&["id", "n"], 1);
        assert_eq!(s.key().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id"]);
        let broken = TableSchema::new(s.columns().to_vec(), vec![0, 5]);
        assert!(!broken.has_key());
        assert_eq!(s.column("n").unwrap().sql_type, "text");
    }
}
