//! Column values after type mapping: what a sink encodes.
//!
//! Sources map their native types onto this small set once, when decoding, so
//! that every encoding agrees on what a `numeric` or a `timestamptz` is.
//!
//! Text is a [`CompactString`]: up to 24 bytes are kept inline, with no
//! allocation. Most mapped values are that short (timestamps, dates, exact
//! decimals, enums, short names), and a snapshot makes one value per column
//! per row, so each allocation saved is saved a million times per million
//! rows. Longer text is one allocation, as with `String`.

pub use compact_str::CompactString;

/// One column value, already mapped from the source type (see `interface.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Integers, `date` (days since epoch), `time`/`timestamp`/`interval` (micros).
    Int(i64),
    /// Floats; NaN and ±infinity are encoded as the strings Debezium uses.
    Float(f64),
    /// Text, exact decimals, ISO-8601 strings, uuid, json, network types, enums…
    Text(CompactString),
    /// Raw bytes (`bytea`); encoded as base64.
    Bytes(Vec<u8>),
    /// Arrays, possibly nested, of mapped elements.
    Array(Vec<Value>),
}
