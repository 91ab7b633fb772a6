//! Filling unchanged TOASTed values instead of emitting placeholders.
//!
//! pgoutput sends a `u` marker, not the value, for a TOASTed column an update
//! did not change. We remember the text of large values when a row is written
//! in full (snapshot, insert, update) and recall the newest one when a marker
//! arrives. PostgreSQL moves a value out of line only when the row exceeds
//! TOAST_TUPLE_THRESHOLD (about 2 kB), so only rows of about that size need
//! remembering; everything else costs nothing.

use tributary_core::{debezium, Row};
use tributary_state::StateStore;

use crate::catalog::TableShape;
use crate::pgoutput::{Datum, Tuple};
use crate::Error;

/// Rows whose text forms add up to less than this are never remembered. The
/// text form of `jsonb` and arrays can be several times smaller than their
/// stored form, so they count eight-fold; other types are never smaller as
/// text than on disk (bytea's hex form is twice its size).
const ROW_THRESHOLD: usize = 1800;
/// Values below this size stay inline (a TOAST pointer is 18 bytes).
const VALUE_THRESHOLD: usize = 24;

/// Where remembered images live. The decoder calls these while decoding, so
/// images are always written before the change can reach a sink.
pub trait RowImages: Send {
    /// Remembers the large values of a row written in full (as of `at`).
    fn remember(
        &mut self,
        shape: &TableShape,
        key: Option<&Row>,
        tuple: &Tuple,
        at: (u64, u64),
    ) -> Result<(), Error> {
        let values = large_values(shape, tuple);
        self.remember_values(shape, key, &values, at)
    }

    /// Remembers `values` (column name, text form) of the row with `key`
    /// as of `at`.
    fn remember_values(
        &mut self,
        shape: &TableShape,
        key: Option<&Row>,
        values: &[(&str, &[u8])],
        at: (u64, u64),
    ) -> Result<(), Error>;

    fn recall(
        &mut self,
        shape: &TableShape,
        key: Option<&Row>,
        column: &str,
        before: (u64, u64),
    ) -> Result<Option<String>, Error>;
}

/// Row images kept in the state store (clones share the store).
#[derive(Clone)]
pub struct StoredRowImages {
    store: StateStore,
    source: String,
    key_buf: Vec<u8>,
}

impl StoredRowImages {
    pub fn new(store: StateStore, source: &str) -> Self {
        Self {
            store,
            source: source.to_owned(),
            key_buf: Vec::new(),
        }
    }

    /// Makes the images remembered so far durable.
    pub fn persist(&self) -> Result<(), Error> {
        self.store.persist_images().map_err(Error::State)
    }

    /// Encodes the row key into the reused buffer and returns the store's
    /// addressing for it: (store, source, row key). Only large rows and TOAST
    /// markers come here, so the cost sits beside a redb write.
    fn address(&mut self, key: &Row) -> (&StateStore, &str, &[u8]) {
        self.key_buf.clear();
        // Exact, so keys that differ (intervals of a month and of 30.44
        // days) stay apart whatever the source's Debezium settings.
        debezium::write_row(&mut self.key_buf, key, debezium::Encoding::EXACT);
        (&self.store, &self.source, &self.key_buf)
    }
}

/// Whether a row whose values have these text lengths (`None`: no value)
/// is large enough for PostgreSQL to have moved a value out of line. The
/// snapshot asks [`row_may_be_toasted`] first, so ordinary rows cost one
/// comparison.
pub fn may_be_toasted(shape: &TableShape, lengths: impl Iterator<Item = Option<usize>>) -> bool {
    let weight: usize = lengths
        .zip(&shape.mappings)
        .map(|(len, m)| {
            len.unwrap_or(0)
                * if m.compresses_as_text() {
                    1
                } else {
                    MAX_WEIGHT
                }
        })
        .sum();
    weight >= ROW_THRESHOLD
}

/// The most a byte weighs in [`may_be_toasted`].
const MAX_WEIGHT: usize = 8;

/// Whether a row of at most `total` bytes of text could weigh enough for
/// [`may_be_toasted`]; `false` settles it without looking at the values.
pub fn row_may_be_toasted(total: usize) -> bool {
    total.saturating_mul(MAX_WEIGHT) >= ROW_THRESHOLD
}

/// The columns of `tuple` worth remembering: large values of a large row.
pub fn large_values<'a>(shape: &'a TableShape, tuple: &'a Tuple) -> Vec<(&'a str, &'a [u8])> {
    let lengths = tuple.iter().map(|d| match d {
        Datum::Text(b) | Datum::Binary(b) => Some(b.len()),
        _ => None,
    });
    if !may_be_toasted(shape, lengths) {
        return Vec::new();
    }
    tuple
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Datum::Text(b) if b.len() >= VALUE_THRESHOLD => {
                Some((shape.columns[i].as_str(), b.as_ref()))
            }
            _ => None,
        })
        .collect()
}

impl RowImages for StoredRowImages {
    fn remember_values(
        &mut self,
        shape: &TableShape,
        key: Option<&Row>,
        values: &[(&str, &[u8])],
        at: (u64, u64),
    ) -> Result<(), Error> {
        let Some(key) = key else {
            // Without a key a later change cannot be matched to this row.
            return Ok(());
        };
        if values.is_empty() {
            return Ok(());
        }
        let table = shape.table.to_string();
        let (store, source, row_key) = self.address(key);
        store
            .remember_images(source, &table, row_key, at, values)
            .map_err(Error::State)
    }

    fn recall(
        &mut self,
        shape: &TableShape,
        key: Option<&Row>,
        column: &str,
        before: (u64, u64),
    ) -> Result<Option<String>, Error> {
        let Some(key) = key else {
            return Ok(None);
        };
        let table = shape.table.to_string();
        let (store, source, row_key) = self.address(key);
        let text = store
            .recall_image(source, &table, row_key, column, before)
            .map_err(Error::State)?;
        Ok(text.map(|t| String::from_utf8_lossy(&t).into_owned()))
    }
}
