//! Maps PostgreSQL values, in their text output form, onto [`Value`].
//!
//! Both the snapshot (COPY text format) and the stream (pgoutput text tuples)
//! carry values as the type's output function prints them, so one mapping
//! serves both and a row reads the same whichever way it arrived. Sessions are
//! opened with fixed settings (`SESSION_OPTIONS`) so the text forms are stable:
//! ISO dates, ISO-8601 intervals, UTC, hex bytea, C-locale money.
//!
//! The values keep their SQL types ([`Value`]); how they are then written as
//! Debezium JSON (`decimal.handling.mode` and the like) is the encoder's
//! business, not the source's.
//!
//! Mapping never fails: text that does not parse as its type (which would be a
//! server we do not understand) is kept as text, so no value is ever dropped.

mod array;

use tributary_core::value::text as temporal;
use tributary_core::value::{hex_value, Decimal, Uuid};
use tributary_core::Value;

use array::parse_array;

/// Startup options for every session whose text output we parse.
pub use tributary_pg::SESSION_OPTIONS;

/// How one column type maps; resolved once per relation from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapping {
    Bool,
    Int,
    Float,
    Numeric,
    Money,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// Kept as its text form: text types, network types, enums…
    Text,
    /// `json`, as its text.
    Json,
    /// `jsonb`, as its text (stored larger than its text, see `toast`).
    Jsonb,
    Array {
        element: Box<Mapping>,
        delimiter: u8,
    },
    /// A type without a dedicated mapping: its text form, never an error.
    Unknown {
        type_name: String,
    },
}

impl Mapping {
    /// Mapping of a built-in base type by OID; `None` for anything the catalog
    /// must describe (arrays, domains, enums, extension types).
    pub fn builtin(oid: u32) -> Option<Mapping> {
        Some(match oid {
            16 => Mapping::Bool,
            20 | 21 | 23 | 26 | 28 => Mapping::Int,
            700 | 701 => Mapping::Float,
            1700 => Mapping::Numeric,
            790 => Mapping::Money,
            17 => Mapping::Bytea,
            1082 => Mapping::Date,
            1083 => Mapping::Time,
            1266 => Mapping::TimeTz,
            1114 => Mapping::Timestamp,
            1184 => Mapping::TimestampTz,
            1186 => Mapping::Interval,
            2950 => Mapping::Uuid,
            // char, name, text, xml, cidr, inet, macaddr, macaddr8, bpchar,
            // varchar, bit, varbit, jsonpath, pg_lsn
            18 | 19 | 25 | 142 | 650 | 869 | 829 | 774 | 1042 | 1043 | 1560 | 1562 | 4072
            | 3220 => Mapping::Text,
            114 => Mapping::Json,
            3802 => Mapping::Jsonb,
            _ => return None,
        })
    }

    /// Whether the stored form of this type is no larger than its text form
    /// (false for jsonb, arrays and unknown types, whose text can be smaller).
    pub fn compresses_as_text(&self) -> bool {
        !matches!(
            self,
            Mapping::Jsonb | Mapping::Array { .. } | Mapping::Unknown { .. }
        )
    }

    /// Maps one value from its text form.
    pub fn map(&self, text: &str) -> Value {
        self.try_map(text)
            .unwrap_or_else(|| Value::Text(text.into()))
    }

    fn try_map(&self, text: &str) -> Option<Value> {
        Some(match self {
            Mapping::Bool => match text {
                "t" => Value::Bool(true),
                "f" => Value::Bool(false),
                _ => return None,
            },
            Mapping::Int => Value::Int(text.parse().ok()?),
            Mapping::Float => Value::Float(parse_float(text)?),
            Mapping::Numeric => Value::Decimal(Decimal::parse(text)?),
            Mapping::Money => Value::Decimal(Decimal::parse(&money_to_decimal(text)?)?),
            Mapping::Bytea => Value::Bytes(parse_bytea_hex(text)?),
            Mapping::Date => Value::Date(temporal::date(text)?),
            Mapping::Time => Value::Time(temporal::time(text)?),
            Mapping::TimeTz => Value::TimeTz(temporal::time_tz(text)?),
            Mapping::Timestamp => Value::Timestamp(temporal::timestamp(text)?),
            Mapping::TimestampTz => Value::TimestampTz(temporal::timestamp_tz(text)?),
            Mapping::Interval => Value::Interval(temporal::interval(text)?),
            Mapping::Uuid => Value::Uuid(Uuid::parse(text)?),
            Mapping::Json | Mapping::Jsonb => Value::Json(text.into()),
            Mapping::Text | Mapping::Unknown { .. } => Value::Text(text.into()),
            Mapping::Array { element, delimiter } => {
                parse_array(text, *delimiter, &|t| element.map(t))?
            }
        })
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `$1,234.56`, `-$1,234.56` (lc_monetary=C) → `1234.56`, `-1234.56`.
fn money_to_decimal(text: &str) -> Option<String> {
    let negative = text.starts_with('-') || text.starts_with('(');
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if digits.is_empty() {
        return None;
    }
    Some(if negative {
        format!("-{digits}")
    } else {
        digits
    })
}

fn parse_bytea_hex(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks_exact(2)
        .map(|p| Some(hex_value(p[0])? << 4 | hex_value(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use tributary_core::debezium::{write_json_value, Encoding};

    use super::*;

    fn map(m: Mapping, text: &str) -> Value {
        m.map(text)
    }

    /// The Debezium JSON of a mapped value, default settings.
    fn json(m: Mapping, text: &str) -> String {
        let mut out = Vec::new();
        write_json_value(&mut out, &m.map(text), Encoding::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(json(Mapping::Date, "1970-01-02"), "1");
        assert_eq!(json(Mapping::Date, "1969-12-31"), "-1");
        assert_eq!(json(Mapping::Date, "2024-05-01"), "19844");
        assert_eq!(json(Mapping::Date, "0001-01-01 BC"), "-719528");
        assert_eq!(json(Mapping::Date, "infinity"), "\"infinity\"");
        assert_eq!(json(Mapping::Time, "00:00:01.5"), "1500000");
        assert_eq!(json(Mapping::TimeTz, "10:00:00.25+02"), "\"08:00:00.25Z\"");
        assert_eq!(json(Mapping::TimeTz, "01:00:00-05:30"), "\"06:30:00Z\"");
        assert_eq!(
            json(Mapping::Timestamp, "1970-01-01 00:00:01.000001"),
            "1000001"
        );
        assert_eq!(
            json(Mapping::TimestampTz, "2024-05-01 08:00:00+00"),
            "\"2024-05-01T08:00:00Z\""
        );
        assert_eq!(
            json(Mapping::TimestampTz, "2024-05-01 10:00:00.120+02"),
            "\"2024-05-01T08:00:00.12Z\""
        );
        assert_eq!(json(Mapping::TimestampTz, "infinity"), "\"infinity\"");
        assert_eq!(
            json(Mapping::TimestampTz, "0044-03-15 12:00:00+00 BC"),
            "\"-0043-03-15T12:00:00Z\""
        );
    }

    #[test]
    fn intervals() {
        assert_eq!(json(Mapping::Interval, "PT0S"), "0");
        assert_eq!(json(Mapping::Interval, "P1M"), "2629800000000");
        assert_eq!(
            json(Mapping::Interval, "P1DT-1H-0.5S"),
            (86_400_000_000i64 - 3_600_000_000 - 500_000).to_string()
        );
    }

    #[test]
    fn numbers_and_bytes() {
        assert_eq!(
            map(Mapping::Money, "-$1,234.56"),
            Value::Decimal(Decimal::parse("-1234.56").unwrap())
        );
        assert_eq!(
            json(Mapping::Numeric, "12345678901234567890.000001"),
            "\"12345678901234567890.000001\""
        );
        assert!(matches!(map(Mapping::Float, "NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(map(Mapping::Bytea, "\\x00ff"), Value::Bytes(vec![0, 255]));
        assert_eq!(
            map(Mapping::Int, "-9223372036854775808"),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            json(Mapping::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
        );
    }

    #[test]
    fn arrays() {
        let ints = Mapping::Array {
            element: Box::new(Mapping::Int),
            delimiter: b',',
        };
        assert_eq!(
            map(ints.clone(), "{{1,2},{3,NULL}}"),
            Value::Array(vec![
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
                Value::Array(vec![Value::Int(3), Value::Null]),
            ])
        );
        assert_eq!(
            map(ints, "[0:1]={7,8}"),
            Value::Array(vec![Value::Int(7), Value::Int(8)])
        );
        let texts = Mapping::Array {
            element: Box::new(Mapping::Text),
            delimiter: b',',
        };
        assert_eq!(
            map(texts, r#"{"a \"b\"",NULL,"NULL",c}"#),
            Value::Array(vec![
                Value::Text("a \"b\"".into()),
                Value::Null,
                Value::Text("NULL".into()),
                Value::Text("c".into()),
            ])
        );
    }

    #[test]
    fn timestamps_beyond_postgres_range_stay_text() {
        for text in [
            "911096-9-13 23:51:59.000508+00",
            "9223372036854775807-01-01 00:00:00",
        ] {
            for m in [Mapping::Timestamp, Mapping::TimestampTz, Mapping::Date] {
                assert_eq!(map(m.clone(), text), Value::Text(text.into()), "{m:?}");
            }
        }
    }

    #[test]
    fn clock_text_that_is_not_ascii_stays_text() {
        // Found by the `text_values` fuzz target: a multi-byte character
        // where the clock's digits belong must not split a char.
        let text = "04:05:0\u{fffd}6*\u{fffd}9+39:30";
        for m in [Mapping::Time, Mapping::TimeTz, Mapping::Timestamp] {
            assert_eq!(map(m, text), Value::Text(text.into()));
        }
    }

    #[test]
    fn unparsable_text_is_kept_not_dropped() {
        assert_eq!(map(Mapping::Int, "abc"), Value::Text("abc".into()));
        assert_eq!(map(Mapping::Numeric, "1e5"), Value::Text("1e5".into()));
    }
}
