//! One JSON field as the value of its declared column, read the way
//! PostgreSQL would read the same text into that type: an exact decimal
//! rounded to the column's scale, an integer checked against its width,
//! a timestamp in ISO-8601. Anything else is a reason to refuse the
//! message, never a silent NULL or a truncated value. A reason names the
//! field and what is wrong with it, never the value: it is logged when a
//! refused message stops the source.
//!
//! Fields arrive as raw JSON text (serde_json's `RawValue`), so a number
//! keeps every digit it was written with: parsing it as a float first
//! would round `0.1` before it ever became a `numeric`.

use base64::Engine;
use serde_json::value::RawValue;
use tributary_core::value::{text, Decimal, Uuid};
use tributary_core::{CompactString, Value};

/// How a declared column's fields are read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldType {
    Bool,
    /// `smallint`, `integer`, `bigint`: the bounds and the type's name.
    Int {
        min: i64,
        max: i64,
        name: &'static str,
    },
    /// `numeric`, with `(precision, scale)` when declared with them.
    Numeric(Option<(u32, u32)>),
    Double,
    /// Text types, with the length of `varchar(n)`.
    Text(Option<usize>),
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Bytes,
}

impl FieldType {
    /// The reading of a column of `sql_type` (as
    /// [`tributary_core::schema::declare_column`] spells it).
    pub(crate) fn of(sql_type: &str) -> Option<Self> {
        let (base, modifier) = match sql_type.split_once('(') {
            Some((b, m)) => (b, m.strip_suffix(')')),
            None => (sql_type, None),
        };
        Some(match base {
            "boolean" => Self::Bool,
            "smallint" => Self::Int {
                min: i16::MIN.into(),
                max: i16::MAX.into(),
                name: "smallint",
            },
            "integer" => Self::Int {
                min: i32::MIN.into(),
                max: i32::MAX.into(),
                name: "integer",
            },
            "bigint" => Self::Int {
                min: i64::MIN,
                max: i64::MAX,
                name: "bigint",
            },
            "numeric" => Self::Numeric(match modifier {
                None => None,
                Some(m) => {
                    let (p, s) = m.split_once(',')?;
                    Some((p.parse().ok()?, s.parse().ok()?))
                }
            }),
            "double precision" => Self::Double,
            "text" => Self::Text(None),
            "character varying" => Self::Text(match modifier {
                None => None,
                Some(n) => Some(n.parse().ok()?),
            }),
            "date" => Self::Date,
            "time without time zone" => Self::Time,
            "timestamp without time zone" => Self::Timestamp,
            "timestamp with time zone" => Self::TimestampTz,
            "uuid" => Self::Uuid,
            "json" | "jsonb" => Self::Json,
            "bytea" => Self::Bytes,
            _ => return None,
        })
    }

    /// The value of one field (`null` is [`Value::Null`]; whether the
    /// column admits it is the caller's check). `Err` is the reason, for
    /// the dead-letter file.
    pub(crate) fn read(&self, raw: &RawValue) -> Result<Value, String> {
        let json = raw.get();
        if json == "null" {
            return Ok(Value::Null);
        }
        let string = || -> Result<String, String> {
            if json.starts_with('"') {
                serde_json::from_str(json).map_err(|e| e.to_string())
            } else {
                Err(format!("{} is not a string", shape(json)))
            }
        };
        let number = || -> Result<&str, String> {
            if json.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
                Ok(json)
            } else {
                Err(format!("{} is not a number", shape(json)))
            }
        };
        Ok(match self {
            Self::Bool => match json {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("{} is not true or false", shape(json))),
            },
            Self::Int { min, max, name } => {
                let n: i64 = number()?.parse().map_err(|_| {
                    "a number with a fraction or exponent is not an integer".to_owned()
                })?;
                if n < *min || n > *max {
                    return Err(format!("out of range for type {name}"));
                }
                Value::Int(n)
            }
            Self::Numeric(modifier) => {
                let written = if json.starts_with('"') {
                    string()?
                } else {
                    number()?.to_owned()
                };
                // NaN and the infinities, as PostgreSQL and Debezium spell them.
                let special = match written.as_str() {
                    "NaN" | "NAN" => Some("NaN"),
                    "Infinity" | "POSITIVE_INFINITY" => Some("Infinity"),
                    "-Infinity" | "NEGATIVE_INFINITY" => Some("-Infinity"),
                    _ => None,
                };
                match special {
                    Some(text) => Value::Decimal(Decimal::parse(text).expect("a special numeric")),
                    None => Value::Decimal(numeric(&written, *modifier)?),
                }
            }
            Self::Double => Value::Float(if json.starts_with('"') {
                match string()?.as_str() {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    _ => {
                        return Err(
                            "a string other than NaN, Infinity or -Infinity is not a number".into(),
                        )
                    }
                }
            } else {
                number()?.parse().map_err(|_| "not a number".to_owned())?
            }),
            Self::Text(limit) => {
                let s = string()?;
                if let Some(n) = limit {
                    if s.chars().count() > *n {
                        return Err(format!("value too long for type character varying({n})"));
                    }
                }
                Value::Text(CompactString::from(s))
            }
            // Integers are Debezium's encodings: days, microseconds.
            Self::Date if !json.starts_with('"') => {
                let days: i32 = number()?
                    .parse()
                    .map_err(|_| "a number with a fraction is not a day count".to_owned())?;
                Value::Date(
                    tributary_core::value::Date::from_days(days)
                        .ok_or_else(|| "out of range for type date".to_owned())?,
                )
            }
            Self::Date => Value::Date(parsed(&string()?, text::date, "date")?),
            Self::Time if !json.starts_with('"') => {
                let micros = micros(json)?;
                if !(0..=86_400_000_000).contains(&micros) {
                    return Err("out of range for type time".into());
                }
                Value::Time(micros)
            }
            Self::Time => Value::Time(parsed(&string()?, text::time, "time")?),
            Self::Timestamp if !json.starts_with('"') => Value::Timestamp(instant(json)?),
            Self::Timestamp => Value::Timestamp(parsed(&string()?, text::timestamp, "timestamp")?),
            Self::TimestampTz if !json.starts_with('"') => Value::TimestampTz(instant(json)?),
            Self::TimestampTz => Value::TimestampTz(parsed(
                &string()?,
                text::timestamp_tz,
                "timestamp with time zone (it needs an offset, e.g. Z or +02:00)",
            )?),
            Self::Uuid => Value::Uuid(parsed(&string()?, Uuid::parse, "uuid")?),
            Self::Json => Value::Json(CompactString::from(json)),
            Self::Bytes => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(string()?)
                    .map_err(|e| format!("not base64 ({e})"))?,
            ),
        })
    }
}

/// What kind of JSON value `json` is, for a reason.
fn shape(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

fn parsed<T>(text: &str, parse: impl Fn(&str) -> Option<T>, type_name: &str) -> Result<T, String> {
    parse(text).ok_or_else(|| format!("not a valid {type_name}"))
}

fn micros(json: &str) -> Result<i64, String> {
    json.parse()
        .map_err(|_| "a number with a fraction is not a count of microseconds".to_owned())
}

fn instant(json: &str) -> Result<tributary_core::value::Timestamp, String> {
    let micros = micros(json)?;
    tributary_core::value::Timestamp::from_micros(micros)
        .ok_or_else(|| "out of range for a timestamp".to_owned())
}

/// Decimal text (`-12.5`, `1.5e3`) as PostgreSQL stores it in a
/// `numeric(p,s)`: rounded half away from zero to `s` places and padded
/// to them, refused past `p - s` integer digits ("numeric field
/// overflow"). An unconstrained `numeric` keeps the digits written.
fn numeric(written: &str, modifier: Option<(u32, u32)>) -> Result<Decimal, String> {
    let bad = || "not a decimal number".to_owned();
    let (negative, body) = match written.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, written),
    };
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || exponent.abs() > 1000 {
        return Err(bad());
    }
    // Digits with the point `point` places from their start.
    let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
    let point = whole.len() as i64 + i64::from(exponent);
    let mut scale = (digits.len() as i64 - point).max(0) as usize;
    if point < 0 {
        let mut padded = vec![b'0'; (-point) as usize];
        padded.append(&mut digits);
        digits = padded;
    } else if point as usize > digits.len() {
        digits.resize(point as usize, b'0');
    }
    let mut int_len = digits.len() - scale;
    if let Some((precision, want)) = modifier {
        let want = want as usize;
        if scale > want {
            let round_up = digits[int_len + want] >= b'5';
            digits.truncate(int_len + want);
            if round_up {
                let mut i = digits.len();
                loop {
                    if i == 0 {
                        digits.insert(0, b'1');
                        int_len += 1;
                        break;
                    }
                    i -= 1;
                    if digits[i] == b'9' {
                        digits[i] = b'0';
                    } else {
                        digits[i] += 1;
                        break;
                    }
                }
            }
        } else {
            digits.resize(int_len + want, b'0');
        }
        scale = want;
        let significant = digits[..int_len].iter().skip_while(|&&d| d == b'0').count();
        if significant > (precision as usize).saturating_sub(want) {
            return Err(format!(
                "numeric field overflow: more than {} digits before the point of \
                 numeric({precision},{want})",
                precision as usize - want
            ));
        }
    }
    let lead = digits[..int_len].iter().take_while(|&&d| d == b'0').count();
    let int_part = match std::str::from_utf8(&digits[lead..int_len]).map_err(|_| bad())? {
        "" => "0",
        s => s,
    };
    let frac_part = std::str::from_utf8(&digits[int_len..]).map_err(|_| bad())?;
    let zero = digits.iter().all(|&d| d == b'0');
    let mut text = String::with_capacity(written.len() + 2);
    if negative && !zero {
        text.push('-');
    }
    text.push_str(int_part);
    if scale > 0 {
        text.push('.');
        text.push_str(frac_part);
    }
    Decimal::parse(&text).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ty: &str, json: &str) -> Result<Value, String> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        FieldType::of(ty).unwrap().read(&raw)
    }

    fn decimal(ty: &str, json: &str) -> String {
        match read(ty, json).unwrap() {
            Value::Decimal(d) => d.as_str().to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decimals_are_exact_and_take_their_columns_scale() {
        assert_eq!(decimal("numeric(12,2)", "4"), "4.00");
        assert_eq!(decimal("numeric(12,2)", "0.1"), "0.10");
        assert_eq!(decimal("numeric(12,2)", "1.005"), "1.01");
        assert_eq!(decimal("numeric(12,2)", "-1.005"), "-1.01");
        assert_eq!(decimal("numeric(12,2)", "9.999"), "10.00");
        assert_eq!(decimal("numeric(12,2)", "-0.001"), "0.00");
        assert_eq!(decimal("numeric(12,2)", "\"12.5\""), "12.50");
        assert_eq!(decimal("numeric(12,2)", "1.5e2"), "150.00");
        assert_eq!(decimal("numeric", "1.50"), "1.50");
        assert_eq!(decimal("numeric", "1e-2"), "0.01");
        assert_eq!(decimal("numeric", "\"007.5\""), "7.5");
        assert_eq!(
            decimal(
                "numeric",
                "123456789012345678901234567890.000000000000000000001"
            ),
            "123456789012345678901234567890.000000000000000000001"
        );
        assert!(read("numeric(4,2)", "99.995")
            .unwrap_err()
            .contains("overflow"));
        assert!(read("numeric(4,2)", "100")
            .unwrap_err()
            .contains("overflow"));
        assert_eq!(decimal("numeric(4,2)", "99.994"), "99.99");
        assert_eq!(decimal("numeric", "\"NAN\""), "NaN");
        assert_eq!(decimal("numeric", "\"POSITIVE_INFINITY\""), "Infinity");
        assert_eq!(decimal("numeric", "\"-Infinity\""), "-Infinity");
        for bad in [
            "\"\"",
            "\"1.2.3\"",
            "\"abc\"",
            "true",
            "{}",
            "\".5\"",
            "\"1e\"",
        ] {
            assert!(read("numeric", bad).is_err(), "{bad} was read");
        }
    }

    #[test]
    fn integers_are_checked_against_their_width() {
        assert_eq!(read("integer", "2147483647"), Ok(Value::Int(2147483647)));
        assert!(read("integer", "2147483648")
            .unwrap_err()
            .contains("out of range"));
        assert!(read("smallint", "-32769").is_err());
        assert!(read("bigint", "1.0").is_err());
        assert!(read("bigint", "\"7\"")
            .unwrap_err()
            .contains("not a number"));
        assert_eq!(read("bigint", "null"), Ok(Value::Null));
    }

    #[test]
    fn times_read_iso_text_or_debeziums_counts() {
        let ts = |json| match read("timestamp with time zone", json) {
            Ok(Value::TimestampTz(t)) => t.micros(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ts("\"1970-01-01T00:00:01Z\""), Some(1_000_000));
        assert_eq!(ts("\"1970-01-01T02:00:01+02:00\""), Some(1_000_000));
        assert_eq!(ts("1000000"), Some(1_000_000));
        assert!(read("timestamp with time zone", "\"1970-01-01T00:00:01\"")
            .unwrap_err()
            .contains("offset"));
        assert!(matches!(read("date", "\"2024-02-29\""), Ok(Value::Date(_))));
        assert!(read("date", "\"2023-02-30\"").is_err());
        assert_eq!(
            read("time without time zone", "\"00:00:01.5\""),
            Ok(Value::Time(1_500_000))
        );
        assert!(read("time without time zone", "-1").is_err());
    }

    #[test]
    fn other_types_refuse_what_is_not_theirs() {
        assert_eq!(read("boolean", "true"), Ok(Value::Bool(true)));
        assert!(read("boolean", "1").is_err());
        assert!(read("text", "1").unwrap_err().contains("not a string"));
        assert!(read("character varying(3)", "\"abcd\"")
            .unwrap_err()
            .contains("too long"));
        assert_eq!(read("bytea", "\"AAE=\""), Ok(Value::Bytes(vec![0, 1])));
        assert!(read("uuid", "\"nope\"").is_err());
        assert_eq!(
            read("jsonb", "{\"a\": [1]}"),
            Ok(Value::Json("{\"a\": [1]}".into()))
        );
        assert!(matches!(read("double precision", "\"NaN\""), Ok(Value::Float(f)) if f.is_nan()));
        assert_eq!(read("double precision", "2.5"), Ok(Value::Float(2.5)));
    }
}
