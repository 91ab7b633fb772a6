//! `CAST(x AS type)` and `x::type` between the kinds views compute with,
//! converting as PostgreSQL's cast functions do (rounding, range checks,
//! input syntax). The planner admits only the pairs listed here.

use bigdecimal::{BigDecimal, RoundingMode, ToPrimitive};
use serde::{Deserialize, Serialize};
use tributary_core::value::calendar::DAY_MICROS;

use super::{numeric, EvalError};
use crate::datum::{Datum, Float};

/// A cast's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cast {
    /// `smallint`, `integer`, `bigint` (by bits).
    Int(u8),
    /// `numeric`, or `numeric(precision, scale)`.
    Numeric(Option<(u32, u32)>),
    Float,
    Text,
    Bool,
    /// From `timestamp` (the day it falls on).
    Date,
    /// From `date` (its midnight).
    Timestamp,
}

impl Cast {
    pub(super) fn apply(self, d: Datum) -> Result<Datum, EvalError> {
        if d.is_null() {
            return Ok(Datum::Null);
        }
        Ok(match self {
            Cast::Int(bits) => Datum::Int(in_range(bits, to_int(d, bits)?)?),
            Cast::Numeric(typmod) => {
                let n = to_numeric(d)?;
                Datum::Numeric(match typmod {
                    Some((precision, scale)) => numeric::constrain(&n, precision, scale)?,
                    None => n,
                })
            }
            Cast::Float => Datum::Float(Float::new(to_float(d)?)),
            Cast::Text => Datum::Text(match d {
                // `boolout` prints t/f, but the cast to text spells it out.
                Datum::Bool(b) => if b { "true" } else { "false" }.to_owned(),
                Datum::Text(t) => t,
                other => other.to_string(),
            }),
            Cast::Bool => Datum::Bool(match d {
                Datum::Bool(b) => b,
                Datum::Int(i) => i != 0,
                Datum::Text(t) => parse_bool(&t)?,
                other => return Err(mismatch(&other, "boolean")),
            }),
            Cast::Date => match d {
                Datum::Timestamp(i64::MAX) => Datum::Date(i32::MAX),
                Datum::Timestamp(i64::MIN) => Datum::Date(i32::MIN),
                Datum::Timestamp(t) => Datum::Date(t.div_euclid(DAY_MICROS) as i32),
                other => return Err(mismatch(&other, "date")),
            },
            Cast::Timestamp => match d {
                Datum::Date(i32::MAX) => Datum::Timestamp(i64::MAX),
                Datum::Date(i32::MIN) => Datum::Timestamp(i64::MIN),
                Datum::Date(days) => Datum::Timestamp(
                    i64::from(days)
                        .checked_mul(DAY_MICROS)
                        .ok_or(EvalError::OutOfRange("timestamp"))?,
                ),
                other => return Err(mismatch(&other, "timestamp")),
            },
        })
    }
}

fn mismatch(d: &Datum, to: &str) -> EvalError {
    EvalError::TypeMismatch(format!("cannot cast {d:?} to {to}"))
}

fn int_name(bits: u8) -> &'static str {
    match bits {
        16 => "smallint",
        32 => "integer",
        _ => "bigint",
    }
}

pub(super) fn in_range(bits: u8, i: i64) -> Result<i64, EvalError> {
    if bits < 64 && !(-(1i64 << (bits - 1))..1i64 << (bits - 1)).contains(&i) {
        return Err(EvalError::OutOfRange(int_name(bits)));
    }
    Ok(i)
}

fn to_int(d: Datum, bits: u8) -> Result<i64, EvalError> {
    let out_of_range = EvalError::OutOfRange(int_name(bits));
    match d {
        Datum::Int(i) => Ok(i),
        Datum::Bool(b) => Ok(i64::from(b)),
        // numeric → integer rounds half away from zero.
        Datum::Numeric(n) => n
            .with_scale_round(0, RoundingMode::HalfUp)
            .to_i64()
            .ok_or(out_of_range),
        // float → integer rounds half to even (`rint`).
        Datum::Float(x) => {
            let r = x.get().round_ties_even();
            if r.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&r) {
                Err(out_of_range)
            } else {
                Ok(r as i64)
            }
        }
        Datum::Text(t) => t
            .trim()
            .parse::<i64>()
            .map_err(|_| EvalError::InvalidText(int_name(bits), t)),
        other => Err(mismatch(&other, int_name(bits))),
    }
}

fn to_numeric(d: Datum) -> Result<BigDecimal, EvalError> {
    match d {
        Datum::Int(i) => Ok(BigDecimal::from(i)),
        Datum::Numeric(n) => Ok(n),
        Datum::Float(x) => numeric::from_float(x.get()),
        Datum::Text(t) => {
            let trimmed = t.trim();
            // bigdecimal also reads forms PostgreSQL refuses (`1_0`, `+-`).
            if trimmed.is_empty()
                || !trimmed
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            {
                return Err(EvalError::InvalidText("numeric", t));
            }
            trimmed
                .parse()
                .map_err(|_| EvalError::InvalidText("numeric", t.clone()))
        }
        other => Err(mismatch(&other, "numeric")),
    }
}

pub(super) fn to_float(d: Datum) -> Result<f64, EvalError> {
    match d {
        Datum::Int(i) => Ok(i as f64),
        Datum::Float(x) => Ok(x.get()),
        Datum::Numeric(n) => crate::datum::numeric_text(&n)
            .parse()
            .map_err(|_| EvalError::OutOfRange("double precision")),
        Datum::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| EvalError::InvalidText("double precision", t)),
        other => Err(mismatch(&other, "double precision")),
    }
}

/// `boolin`: `t`/`true`/`yes`/`on`/`1` and their unique prefixes, any case.
fn parse_bool(text: &str) -> Result<bool, EvalError> {
    let s = text.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| s.len() >= min && word.starts_with(s.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || s == "on" || s == "1" {
        Ok(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0" {
        Ok(false)
    } else {
        Err(EvalError::InvalidText("boolean", text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_round_and_check_as_postgresql_does() {
        let n = |t: &str| Datum::Numeric(t.parse().unwrap());
        let f = |x: f64| Datum::Float(Float::new(x));
        let int = Cast::Int(32);
        assert_eq!(int.apply(n("5.5")), Ok(Datum::Int(6)));
        assert_eq!(int.apply(n("-4.5")), Ok(Datum::Int(-5)));
        assert_eq!(int.apply(f(2.5)), Ok(Datum::Int(2)));
        assert_eq!(int.apply(f(3.5)), Ok(Datum::Int(4)));
        assert_eq!(int.apply(Datum::Text(" 12 ".into())), Ok(Datum::Int(12)));
        assert!(int.apply(Datum::Int(1 << 31)).is_err());
        assert!(int.apply(Datum::Text("1.5".into())).is_err());
        assert_eq!(
            Cast::Text.apply(Datum::Bool(true)),
            Ok(Datum::Text("true".into()))
        );
        assert_eq!(Cast::Text.apply(n("1.50")), Ok(Datum::Text("1.50".into())));
        assert_eq!(
            Cast::Bool.apply(Datum::Text("Of".into())),
            Ok(Datum::Bool(false))
        );
        assert!(Cast::Bool.apply(Datum::Text("o".into())).is_err());
        assert_eq!(
            Cast::Numeric(Some((5, 2))).apply(n("123.456")),
            Ok(n("123.46"))
        );
        assert_eq!(Cast::Date.apply(Datum::Timestamp(-1)), Ok(Datum::Date(-1)));
    }
}
