//! How each typed [`Value`] is written in a Debezium record: Debezium's
//! semantic types (`io.debezium.time.Date` day counts, `MicroTime`,
//! `MicroTimestamp`, `ZonedTimestamp` and `ZonedTime` strings,
//! `MicroDuration`) and its `decimal.handling.mode` and
//! `interval.handling.mode`, applied here and nowhere earlier (see
//! `interface.md`, "Value mapping").

use base64::Engine;

use super::{write_float, write_int, write_str};
use crate::value::{calendar, Date, Timestamp};
use crate::Value;

/// How `numeric`, `decimal` and `money` are written (Debezium's
/// `decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalHandling {
    /// The exact decimal as a string; `NaN` and the infinities as Debezium
    /// names them: `"NAN"`, `"POSITIVE_INFINITY"`, `"NEGATIVE_INFINITY"`.
    #[default]
    String,
    /// A JSON number (may lose precision).
    Double,
    /// PostgreSQL's own text, `NaN` and `Infinity` included: for sinks
    /// that write the value into a database (not a Debezium mode).
    Exact,
}

/// How `interval` is written (Debezium's `interval.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalHandling {
    /// Microseconds, 365.25/12 days per month (Debezium's `MicroDuration`).
    #[default]
    Numeric,
    /// ISO-8601 duration string (`P1Y2M3DT4H5M6.5S`).
    String,
}

/// The value-encoding settings of one source, carried by its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoding {
    pub decimal: DecimalHandling,
    pub interval: IntervalHandling,
}

impl Encoding {
    /// Nothing approximated: exact decimals and intervals with their
    /// months and days, for consumers that write the values into another
    /// database (the PostgreSQL sink) rather than hand them to Debezium
    /// readers.
    pub const EXACT: Encoding = Encoding {
        decimal: DecimalHandling::Exact,
        interval: IntervalHandling::String,
    };
}

/// Writes one value as JSON.
pub fn write_json_value(out: &mut Vec<u8>, value: &Value, encoding: Encoding) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_int(out, *i),
        Value::Float(f) => write_float(out, *f),
        Value::Decimal(d) => match encoding.decimal {
            DecimalHandling::String => write_str(
                out,
                match d.as_str() {
                    "NaN" => "NAN",
                    "Infinity" => "POSITIVE_INFINITY",
                    "-Infinity" => "NEGATIVE_INFINITY",
                    exact => exact,
                },
            ),
            DecimalHandling::Exact => write_str(out, d.as_str()),
            DecimalHandling::Double => write_float(out, d.to_f64()),
        },
        Value::Date(d) => match d.days() {
            Some(days) => write_int(out, days),
            None => write_infinity(out, *d == Date::INFINITY),
        },
        Value::Time(micros) => write_int(out, *micros),
        Value::TimeTz(t) => {
            out.push(b'"');
            // PostgreSQL's end of day, 24:00:00 in UTC, stays 24:00:00
            // (as Debezium keeps it) rather than wrapping to midnight.
            let end_of_day = t.micros == calendar::DAY_MICROS && t.offset_secs == 0;
            calendar::push_clock(out, if end_of_day { t.micros } else { t.utc_micros() });
            out.extend_from_slice(b"Z\"");
        }
        Value::Timestamp(t) => match t.micros() {
            Some(micros) => write_int(out, micros),
            None => write_infinity(out, *t == Timestamp::INFINITY),
        },
        Value::TimestampTz(t) => match t.micros() {
            Some(micros) => {
                out.push(b'"');
                calendar::push_utc_timestamp(out, micros);
                out.push(b'"');
            }
            None => write_infinity(out, *t == Timestamp::INFINITY),
        },
        Value::Interval(iv) => {
            if iv.is_finite() && encoding.interval == IntervalHandling::Numeric {
                write_int(out, iv.approximate_micros());
            } else {
                out.push(b'"');
                iv.push_iso8601(out);
                out.push(b'"');
            }
        }
        Value::Uuid(u) => {
            out.push(b'"');
            u.push_to(out);
            out.push(b'"');
        }
        Value::Json(s) | Value::Text(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.push(b'"');
            let mut encoded = String::new();
            base64::engine::general_purpose::STANDARD.encode_string(b, &mut encoded);
            out.extend_from_slice(encoded.as_bytes());
            out.push(b'"');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(out, item, encoding);
            }
            out.push(b']');
        }
    }
}

/// The text of a value whose JSON form is a string (what a hash or a
/// truncation works on); `None` for numbers, booleans, null, arrays.
pub fn text_form(value: &Value, encoding: Encoding) -> Option<String> {
    match value {
        Value::Text(s) | Value::Json(s) => Some(s.to_string()),
        Value::Null | Value::Array(_) => None,
        other => {
            let mut json = Vec::new();
            write_json_value(&mut json, other, encoding);
            serde_json::from_slice::<String>(&json).ok()
        }
    }
}

fn write_infinity(out: &mut Vec<u8>, positive: bool) {
    out.extend_from_slice(if positive {
        b"\"infinity\"".as_slice()
    } else {
        b"\"-infinity\"".as_slice()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Decimal, Interval, TimeTz, Uuid};

    fn json(value: Value, encoding: Encoding) -> String {
        let mut out = Vec::new();
        write_json_value(&mut out, &value, encoding);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timetz_end_of_day_stays_24_00() {
        let tz = |micros, offset_secs| {
            Value::TimeTz(TimeTz {
                micros,
                offset_secs,
            })
        };
        let day = calendar::DAY_MICROS;
        assert_eq!(json(tz(day, 0), Encoding::default()), "\"24:00:00Z\"");
        assert_eq!(json(tz(day, 7200), Encoding::default()), "\"22:00:00Z\"");
        assert_eq!(json(tz(0, 0), Encoding::default()), "\"00:00:00Z\"");
        assert_eq!(
            json(tz(3_600_000_000, 7200), Encoding::default()),
            "\"23:00:00Z\""
        );
    }

    #[test]
    fn floats_and_bytes_follow_the_mapping() {
        let arr = Value::Array(vec![
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(1.5),
            Value::Bytes(vec![0, 1, 2]),
            Value::Null,
        ]);
        assert_eq!(
            json(arr, Encoding::default()),
            r#"["NaN","Infinity","-Infinity",1.5,"AAEC",null]"#
        );
    }

    #[test]
    fn debezium_semantic_types() {
        let d = Encoding::default();
        assert_eq!(
            json(Value::Date(Date::from_days(19_844).unwrap()), d),
            "19844"
        );
        assert_eq!(json(Value::Date(Date::INFINITY), d), "\"infinity\"");
        assert_eq!(json(Value::Date(Date::NEG_INFINITY), d), "\"-infinity\"");
        let tz = TimeTz {
            micros: 36_000_250_000,
            offset_secs: 7200,
        };
        assert_eq!(json(Value::TimeTz(tz), d), "\"08:00:00.25Z\"");
        let ts = Timestamp::from_micros(1_714_550_400_500_000).unwrap();
        assert_eq!(json(Value::Timestamp(ts), d), "1714550400500000");
        assert_eq!(
            json(Value::TimestampTz(ts), d),
            "\"2024-05-01T08:00:00.5Z\""
        );
        assert_eq!(
            json(Value::TimestampTz(Timestamp::NEG_INFINITY), d),
            "\"-infinity\""
        );
        let uuid = Uuid::parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(
            json(Value::Uuid(uuid), d),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
        );
    }

    #[test]
    fn decimal_and_interval_modes() {
        let num = || Value::Decimal(Decimal::parse("-1234.50").unwrap());
        assert_eq!(json(num(), Encoding::default()), "\"-1234.50\"");
        let double = Encoding {
            decimal: DecimalHandling::Double,
            ..Encoding::default()
        };
        assert_eq!(json(num(), double), "-1234.5");
        let special = |t: &str| Value::Decimal(Decimal::parse(t).unwrap());
        let string = Encoding::default();
        assert_eq!(json(special("NaN"), string), "\"NAN\"");
        assert_eq!(json(special("Infinity"), string), "\"POSITIVE_INFINITY\"");
        assert_eq!(json(special("-Infinity"), string), "\"NEGATIVE_INFINITY\"");
        assert_eq!(json(special("-1.50"), string), "\"-1.50\"");
        assert_eq!(json(special("NaN"), Encoding::EXACT), "\"NaN\"");
        assert_eq!(json(special("-Infinity"), Encoding::EXACT), "\"-Infinity\"");
        assert_eq!(
            json(Value::Decimal(Decimal::parse("NaN").unwrap()), double),
            "\"NaN\""
        );
        let iv = || {
            Value::Interval(Interval {
                months: 1,
                days: 1,
                micros: -1,
            })
        };
        assert_eq!(json(iv(), Encoding::default()), "2716199999999");
        assert_eq!(json(iv(), Encoding::EXACT), "\"P1M1DT-0.000001S\"");
        assert_eq!(
            json(Value::Interval(Interval::INFINITY), Encoding::default()),
            "\"infinity\""
        );
    }

    #[test]
    fn text_forms_are_the_strings_of_the_json() {
        let d = Encoding::default();
        assert_eq!(
            text_form(&Value::Text("a\"b".into()), d).as_deref(),
            Some("a\"b")
        );
        let ts = Timestamp::from_micros(0).unwrap();
        assert_eq!(
            text_form(&Value::TimestampTz(ts), d).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(text_form(&Value::Int(5), d), None);
    }
}
