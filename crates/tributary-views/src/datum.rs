//! The values a view computes with: one SQL value per column, with a total
//! order (PostgreSQL's, NULL after every value as in `ORDER BY … ASC`), so
//! rows can be keys of differential dataflow's arrangements and of the
//! ordered index reads page through.
//!
//! `numeric` is an exact decimal ([`BigDecimal`]: arbitrary precision, the
//! scale kept through `+`, `-` and `*` as PostgreSQL keeps it) and prints
//! the way PostgreSQL prints it. Floats compare as PostgreSQL compares
//! them: `-0 = 0`, NaN equal to itself and above every other value.

use std::cmp::Ordering;
use std::fmt;

use bigdecimal::BigDecimal;
use serde::{Deserialize, Serialize};
use tributary_core::value::{calendar, Date, Timestamp};
use tributary_core::Value;

/// One row of a relation or view: its columns' values, in order.
pub type Row = Vec<Datum>;

/// One SQL value. Variants are declared in the order rows sort by when
/// types differ, which only `NULL` does in a well-typed column: it sorts
/// last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Datum {
    Bool(bool),
    /// `smallint`, `integer`, `bigint`.
    Int(i64),
    /// `real`, `double precision`.
    Float(Float),
    /// `numeric`: exact.
    Numeric(#[serde(with = "exact_text")] BigDecimal),
    /// `date`: days since 1970-01-01; the infinities are `i32::MIN/MAX`
    /// (as in [`tributary_core::value::Date`]), so they sort at the ends.
    Date(i32),
    /// `time`: microseconds since midnight.
    Time(i64),
    /// `timestamp`: microseconds since 1970-01-01; infinities `i64::MIN/MAX`.
    Timestamp(i64),
    /// `timestamptz`: the instant, microseconds since 1970-01-01 UTC.
    TimestampTz(i64),
    /// `uuid`: its 16 bytes (byte order is PostgreSQL's order).
    Uuid([u8; 16]),
    /// `text`, `varchar`, `char` and enums.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    Null,
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}

/// `numeric` kept as its exact decimal text: BigDecimal's own serde form
/// needs a self-describing format, and the state store's (postcard) is not.
pub(crate) mod exact_text {
    use bigdecimal::BigDecimal;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(n: &BigDecimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BigDecimal, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// An `f64` with PostgreSQL's equality and order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Float(f64);

impl Float {
    pub fn new(value: f64) -> Self {
        // One zero and one NaN, so equal values are equal bits.
        if value == 0.0 {
            Self(0.0)
        } else if value.is_nan() {
            Self(f64::NAN)
        } else {
            Self(value)
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Float {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Float {}

impl PartialOrd for Float {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Float {
    fn cmp(&self, other: &Self) -> Ordering {
        // Normalised in `new`: total_cmp then orders NaN above +infinity.
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for Float {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// Why a source value cannot enter a view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    #[error("numeric value \"{0}\" cannot be computed with (NaN and infinities are not supported in views yet)")]
    SpecialNumeric(String),
    #[error("values of type {0} are not supported in views yet")]
    Unsupported(&'static str),
}

impl TryFrom<&Value> for Datum {
    type Error = DatumError;

    fn try_from(value: &Value) -> Result<Self, DatumError> {
        Ok(match value {
            Value::Null => Datum::Null,
            Value::Bool(b) => Datum::Bool(*b),
            Value::Int(i) => Datum::Int(*i),
            Value::Float(f) => Datum::Float(Float::new(*f)),
            Value::Decimal(d) => {
                let text = d.as_str();
                Datum::Numeric(
                    text.parse()
                        .map_err(|_| DatumError::SpecialNumeric(text.to_owned()))?,
                )
            }
            Value::Date(d) => Datum::Date(d.days().unwrap_or(if *d == Date::INFINITY {
                i32::MAX
            } else {
                i32::MIN
            })),
            Value::Time(t) => Datum::Time(*t),
            Value::Timestamp(t) => Datum::Timestamp(instant(*t)),
            Value::TimestampTz(t) => Datum::TimestampTz(instant(*t)),
            Value::Uuid(u) => Datum::Uuid(*u.as_bytes()),
            Value::Text(t) => Datum::Text(t.to_string()),
            Value::Bytes(b) => Datum::Bytes(b.clone()),
            Value::TimeTz(_) => return Err(DatumError::Unsupported("time with time zone")),
            Value::Interval(_) => return Err(DatumError::Unsupported("interval")),
            Value::Json(_) => return Err(DatumError::Unsupported("json")),
            Value::Array(_) => return Err(DatumError::Unsupported("array")),
        })
    }
}

impl From<&Datum> for Value {
    /// The change model's value of a view's column (what a changefeed's
    /// events carry).
    fn from(datum: &Datum) -> Value {
        match datum {
            Datum::Null => Value::Null,
            Datum::Bool(b) => Value::Bool(*b),
            Datum::Int(i) => Value::Int(*i),
            Datum::Float(f) => Value::Float(f.get()),
            Datum::Numeric(n) => tributary_core::value::Decimal::parse(&numeric_text(n))
                .map_or_else(|| Value::Text(numeric_text(n).into()), Value::Decimal),
            Datum::Date(days) => Value::Date(Date::from_days(*days).unwrap_or(match *days {
                i32::MAX => Date::INFINITY,
                _ => Date::NEG_INFINITY,
            })),
            Datum::Time(t) => Value::Time(*t),
            Datum::Timestamp(t) => Value::Timestamp(timestamp(*t)),
            Datum::TimestampTz(t) => Value::TimestampTz(timestamp(*t)),
            Datum::Uuid(bytes) => Value::Uuid(tributary_core::value::Uuid::from_bytes(*bytes)),
            Datum::Text(t) => Value::Text(t.as_str().into()),
            Datum::Bytes(b) => Value::Bytes(b.clone()),
        }
    }
}

fn timestamp(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros).unwrap_or(if micros == i64::MAX {
        Timestamp::INFINITY
    } else {
        Timestamp::NEG_INFINITY
    })
}

/// Microseconds since the epoch, the infinities as the extreme integers.
fn instant(t: Timestamp) -> i64 {
    t.micros().unwrap_or(if t == Timestamp::INFINITY {
        i64::MAX
    } else {
        i64::MIN
    })
}

/// A numeric as PostgreSQL prints it: plain digits, never an exponent, as
/// many fraction digits as its scale.
pub fn numeric_text(value: &BigDecimal) -> String {
    let (digits, scale) = value.as_bigint_and_exponent();
    let negative = digits.sign() == num_bigint::Sign::Minus;
    let mut text = digits.magnitude().to_string();
    let mut out = String::with_capacity(text.len() + 3);
    if negative {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(&text);
        // A negative scale is trailing zeros (PostgreSQL's scale is never < 0).
        out.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
        return out;
    }
    let scale = scale as usize;
    if text.len() <= scale {
        let pad = scale + 1 - text.len();
        text.insert_str(0, &"0".repeat(pad));
    }
    let point = text.len() - scale;
    out.push_str(&text[..point]);
    out.push('.');
    out.push_str(&text[point..]);
    out
}

impl fmt::Display for Datum {
    /// PostgreSQL's text output (the session's time zone is UTC), as the
    /// query endpoint sends values in text format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Datum::Null => f.write_str("NULL"),
            Datum::Bool(b) => f.write_str(if *b { "t" } else { "f" }),
            Datum::Int(i) => write!(f, "{i}"),
            Datum::Float(x) => {
                let x = x.get();
                if x.is_nan() {
                    f.write_str("NaN")
                } else if x.is_infinite() {
                    f.write_str(if x > 0.0 { "Infinity" } else { "-Infinity" })
                } else {
                    f.write_str(&float_text(x))
                }
            }
            Datum::Numeric(n) => f.write_str(&numeric_text(n)),
            Datum::Text(t) => f.write_str(t),
            Datum::Date(days) => f.write_str(&date_text(*days)),
            Datum::Time(micros) => {
                let mut out = Vec::new();
                calendar::push_clock(&mut out, *micros);
                f.write_str(&String::from_utf8_lossy(&out))
            }
            Datum::Timestamp(micros) => f.write_str(&timestamp_text(*micros, "")),
            Datum::TimestampTz(micros) => f.write_str(&timestamp_text(*micros, "+00")),
            Datum::Uuid(bytes) => {
                let mut out = Vec::new();
                tributary_core::value::Uuid::from_bytes(*bytes).push_to(&mut out);
                f.write_str(&String::from_utf8_lossy(&out))
            }
            Datum::Bytes(bytes) => {
                f.write_str("\\x")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// A finite `double precision` as PostgreSQL prints it (its default
/// `extra_float_digits = 1`): the shortest digits that read back to the
/// same value, in plain notation for decimal exponents from -4 to 14, else
/// as `1.5e+20` / `1e-05` (a sign and at least two exponent digits).
pub fn float_text(x: f64) -> String {
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` of a finite float has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` prints an integer exponent");
    if (-4..15).contains(&exponent) {
        return format!("{x}");
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// `2024-05-01`, `0044-03-15 BC`, `infinity`, as PostgreSQL prints a date.
fn date_text(days: i32) -> String {
    match days {
        i32::MAX => return "infinity".into(),
        i32::MIN => return "-infinity".into(),
        _ => {}
    }
    let (y, m, d) = calendar::civil_from_days(i64::from(days));
    // PostgreSQL has no year 0: 1 BC is year 0 of the proleptic calendar.
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// `2024-05-01 08:00:00.5` (plus `zone`), as PostgreSQL prints a timestamp.
fn timestamp_text(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    const DAY: i64 = 86_400_000_000;
    let date = date_text(micros.div_euclid(DAY) as i32);
    let (date, era) = match date.strip_suffix(" BC") {
        Some(d) => (d.to_owned(), " BC"),
        None => (date, ""),
    };
    let mut clock = Vec::new();
    calendar::push_clock(&mut clock, micros.rem_euclid(DAY));
    format!("{date} {}{zone}{era}", String::from_utf8_lossy(&clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> BigDecimal {
        text.parse().unwrap()
    }

    /// Every kind of value survives the state store's encoding exactly,
    /// numeric scale included.
    #[test]
    fn rows_round_trip_through_the_stores_encoding() {
        let row: Row = vec![
            Datum::Bool(true),
            Datum::Int(-7),
            Datum::Float(Float::new(1.5)),
            Datum::Numeric(num("12345.6700")),
            Datum::Numeric(num("-0.0001")),
            Datum::Numeric(num("1e3")),
            Datum::Date(-3),
            Datum::Time(1),
            Datum::Timestamp(i64::MAX),
            Datum::TimestampTz(-1),
            Datum::Uuid([7; 16]),
            Datum::Text("ä'".into()),
            Datum::Bytes(vec![0, 255]),
            Datum::Null,
        ];
        let bytes = postcard::to_allocvec(&row).unwrap();
        let back: Row = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, row);
        for (a, b) in back.iter().zip(&row) {
            assert_eq!(a.to_string(), b.to_string());
        }
    }

    #[test]
    fn numerics_print_as_postgresql_prints_them() {
        for text in [
            "0",
            "1.20",
            "-0.005",
            "123456789012345678901234567890.12",
            "0.0000001",
        ] {
            assert_eq!(numeric_text(&num(text)), text);
        }
        // The scale of a sum is the larger of the two, as in PostgreSQL.
        assert_eq!(numeric_text(&(num("1.20") + num("2.005"))), "3.205");
        assert_eq!(numeric_text(&(num("1.20") + num("2.80"))), "4.00");
        assert_eq!(numeric_text(&(num("1.5") * num("2.25"))), "3.375");
    }

    #[test]
    fn order_is_postgresqls_with_nulls_last() {
        let mut rows = [
            Datum::Null,
            Datum::Float(Float::new(f64::NAN)),
            Datum::Float(Float::new(f64::INFINITY)),
            Datum::Float(Float::new(-0.0)),
            Datum::Float(Float::new(-1.0)),
        ];
        rows.sort();
        assert_eq!(rows[0], Datum::Float(Float::new(-1.0)));
        assert_eq!(rows[1], Datum::Float(Float::new(0.0)));
        assert_eq!(rows[3], Datum::Float(Float::new(f64::NAN)));
        assert_eq!(rows[4], Datum::Null);
        // Numerically, not by text.
        assert!(Datum::Numeric(num("2")) < Datum::Numeric(num("10.5")));
        assert_eq!(Datum::Numeric(num("1.0")), Datum::Numeric(num("1.00")));
    }

    #[test]
    fn dates_and_times_print_as_postgresql_prints_them() {
        let day = 86_400_000_000_i64;
        let cases = [
            (Datum::Date(0), "1970-01-01"),
            (Datum::Date(-719_163), "0001-12-31 BC"),
            (Datum::Date(i32::MAX), "infinity"),
            (Datum::Time(3_723_500_000), "01:02:03.5"),
            (Datum::Timestamp(day + 1), "1970-01-02 00:00:00.000001"),
            (Datum::TimestampTz(-1_000_000), "1969-12-31 23:59:59+00"),
            (Datum::Bytes(vec![0xde, 0xad]), "\\xdead"),
            (Datum::Float(Float::new(1e20)), "1e+20"),
            (Datum::Float(Float::new(1e15)), "1e+15"),
            (Datum::Float(Float::new(1e14)), "100000000000000"),
            (Datum::Float(Float::new(0.0001)), "0.0001"),
            (Datum::Float(Float::new(-0.00001)), "-1e-05"),
            (
                Datum::Float(Float::new(1.2345678901234568e17)),
                "1.2345678901234568e+17",
            ),
            (Datum::Float(Float::new(1.5e-300)), "1.5e-300"),
        ];
        for (datum, text) in cases {
            assert_eq!(datum.to_string(), text);
        }
    }
}
