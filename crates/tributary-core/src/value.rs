//! Column values after type mapping: what a sink encodes.
//!
//! Sources map their native types onto this small set once, when decoding, so
//! that every encoding agrees on what a `numeric` or a `timestamptz` is.

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
    Text(String),
    /// Raw bytes (`bytea`); encoded as base64.
    Bytes(Vec<u8>),
    /// Arrays, possibly nested, of mapped elements.
    Array(Vec<Value>),
}
