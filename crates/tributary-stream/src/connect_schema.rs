//! Kafka Connect's JSON schemas, where a Debezium event carries one (the
//! JSON converter with `schemas.enable=true`: `{"schema": …, "payload": …}`):
//! the semantic type of each column says what its JSON value means.
//!
//! Without it an integer timestamp is ambiguous: Debezium's default
//! `time.precision.mode = adaptive` writes `timestamp(3)` as milliseconds
//! (`io.debezium.time.Timestamp`) and `timestamp(6)` as microseconds
//! (`io.debezium.time.MicroTimestamp`), and `decimal.handling.mode =
//! precise` writes a decimal as the base64 of its unscaled bytes. With the
//! schema each value is brought to the form the column reads (microseconds,
//! decimal text) before it is read; without it integers are taken as
//! microseconds, as Tributary's own events write them.

use std::collections::HashMap;

use base64::Engine;
use serde_json::value::RawValue;

/// What a column's JSON value is, by its Connect schema name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Semantic {
    /// An integer count of milliseconds (times and timestamps).
    Millis,
    /// An integer count of nanoseconds.
    Nanos,
    /// Base64 of the big-endian two's-complement unscaled value.
    DecimalBytes { scale: u32 },
    /// `{"scale": n, "value": base64}`.
    VariableScaleDecimal,
}

/// The semantic types of the columns of an image (`before`/`after`).
pub(crate) type Semantics = HashMap<String, Semantic>;

/// The semantic types of the `image` struct's fields in an envelope
/// schema; empty when the schema does not say.
pub(crate) fn semantics(schema: &RawValue, image: &str) -> Semantics {
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(schema.get()) else {
        return Semantics::new();
    };
    let Some(fields) = schema["fields"].as_array() else {
        return Semantics::new();
    };
    let Some(image) = fields.iter().find(|f| f["field"] == image) else {
        return Semantics::new();
    };
    let mut out = Semantics::new();
    for field in image["fields"].as_array().into_iter().flatten() {
        let (Some(column), Some(name)) = (field["field"].as_str(), field["name"].as_str()) else {
            continue;
        };
        let semantic = match name {
            "io.debezium.time.Timestamp"
            | "io.debezium.time.Time"
            | "org.apache.kafka.connect.data.Timestamp"
            | "org.apache.kafka.connect.data.Time" => Semantic::Millis,
            "io.debezium.time.NanoTimestamp" | "io.debezium.time.NanoTime" => Semantic::Nanos,
            "org.apache.kafka.connect.data.Decimal" => {
                let scale = field["parameters"]["scale"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                Semantic::DecimalBytes { scale }
            }
            "io.debezium.data.VariableScaleDecimal" => Semantic::VariableScaleDecimal,
            _ => continue,
        };
        out.insert(column.to_owned(), semantic);
    }
    out
}

impl Semantic {
    /// `raw` in the form its column reads: microseconds, decimal text.
    pub(crate) fn normalize(self, raw: &RawValue) -> Result<Box<RawValue>, String> {
        let json = raw.get();
        let text = match self {
            _ if json == "null" => return Ok(raw.to_owned()),
            Semantic::Millis => {
                let ms: i64 = json.parse().map_err(|_| "not a count of milliseconds")?;
                ms.checked_mul(1000).ok_or("out of range")?.to_string()
            }
            Semantic::Nanos => {
                let ns: i64 = json.parse().map_err(|_| "not a count of nanoseconds")?;
                if ns % 1000 != 0 {
                    return Err("finer than the microseconds a timestamp holds".into());
                }
                (ns / 1000).to_string()
            }
            Semantic::DecimalBytes { scale } => {
                let encoded: String = serde_json::from_str(json)
                    .map_err(|_| "a precise decimal is a base64 string")?;
                format!("\"{}\"", unscaled(&encoded, scale)?)
            }
            Semantic::VariableScaleDecimal => {
                #[derive(serde::Deserialize)]
                struct Variable {
                    scale: u32,
                    value: String,
                }
                let v: Variable = serde_json::from_str(json)
                    .map_err(|_| "a variable-scale decimal is {\"scale\", \"value\"}")?;
                format!("\"{}\"", unscaled(&v.value, v.scale)?)
            }
        };
        RawValue::from_string(text).map_err(|e| e.to_string())
    }
}

/// Base64 of a big-endian two's-complement integer, as decimal text with
/// `scale` digits after the point.
fn unscaled(encoded: &str, scale: u32) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "not base64".to_owned())?;
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude, big-endian: two's complement undone for negatives.
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for byte in m.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        m
    } else {
        bytes
    };
    // Decimal digits by repeated division by 10.
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in magnitude.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    let scale = scale as usize;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let mut text = String::new();
    if negative {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(whole).expect("digits"));
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(fraction).expect("digits"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn precise_decimals_decode_as_connect_writes_them() {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        // 12345 = 0x3039; -12345 = 0xCFC7; 0; 255 needs a sign byte.
        assert_eq!(unscaled(&b64(&[0x30, 0x39]), 2).unwrap(), "123.45");
        assert_eq!(unscaled(&b64(&[0xCF, 0xC7]), 2).unwrap(), "-123.45");
        assert_eq!(unscaled(&b64(&[0x00]), 3).unwrap(), "0.000");
        assert_eq!(unscaled(&b64(&[0x00, 0xFF]), 0).unwrap(), "255");
        assert_eq!(unscaled(&b64(&[0xFF]), 1).unwrap(), "-0.1");
        assert_eq!(unscaled(&b64(&[0x01]), 4).unwrap(), "0.0001");
        let big = b64(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(unscaled(&big, 0).unwrap(), "18446744073709551616");
        let v = Semantic::VariableScaleDecimal
            .normalize(&raw(&format!(
                r#"{{"scale": 1, "value": "{}"}}"#,
                b64(&[0x7B])
            )))
            .unwrap();
        assert_eq!(v.get(), "\"12.3\"");
    }

    #[test]
    fn time_units_become_microseconds() {
        assert_eq!(
            Semantic::Millis.normalize(&raw("1500")).unwrap().get(),
            "1500000"
        );
        assert_eq!(Semantic::Nanos.normalize(&raw("2000")).unwrap().get(), "2");
        assert!(Semantic::Nanos.normalize(&raw("2001")).is_err());
        assert_eq!(
            Semantic::Millis.normalize(&raw("null")).unwrap().get(),
            "null"
        );
    }

    #[test]
    fn a_schema_names_the_semantic_types_of_an_image() {
        let schema = raw(r#"{"type": "struct", "fields": [
                {"type": "struct", "field": "after", "fields": [
                    {"type": "int64", "name": "io.debezium.time.Timestamp", "field": "at"},
                    {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "field": "at6"},
                    {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                     "parameters": {"scale": "2"}, "field": "amount"},
                    {"type": "int32", "field": "id"}]}]}"#);
        let s = semantics(&schema, "after");
        assert_eq!(s.get("at"), Some(&Semantic::Millis));
        assert_eq!(s.get("amount"), Some(&Semantic::DecimalBytes { scale: 2 }));
        assert_eq!(s.get("at6"), None);
        assert_eq!(s.get("id"), None);
        assert!(semantics(&schema, "before").is_empty());
    }
}
