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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_with_a_missing_column_is_no_key() {
        let s = TableSchema::untyped(&["id", "n"], 1);
        assert_eq!(s.key().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id"]);
        let broken = TableSchema::new(s.columns().to_vec(), vec![0, 5]);
        assert!(!broken.has_key());
        assert_eq!(s.column("n").unwrap().sql_type, "text");
    }
}
