//! Scalar functions views evaluate, each as PostgreSQL defines it for the
//! argument kinds the planner admits. All are strict: a NULL argument
//! gives NULL.

use serde::{Deserialize, Serialize};
use tributary_core::value::calendar::{civil_from_days, days_from_civil, DAY_MICROS};

use super::{numeric, EvalError};
use crate::datum::{Datum, Float};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Function {
    /// Unicode lower case (PostgreSQL under a UTF-8 locale).
    Lower,
    Upper,
    /// Characters, not bytes.
    Length,
    /// Of an integer of this many bits (`abs(i64::MIN)` fails), a numeric
    /// or a float.
    Abs(u8),
    /// `round(numeric)` and `round(numeric, integer)`: half away from zero.
    Round,
    /// `round(double precision)`: half to even, as C's `rint`.
    RoundFloat,
    /// `date_trunc(unit, timestamp)`, or of a `timestamptz` in UTC.
    DateTrunc(Unit),
}

/// A `date_trunc` unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Microseconds,
    Milliseconds,
    Second,
    Minute,
    Hour,
    Day,
    /// The Monday of the ISO week.
    Week,
    Month,
    Quarter,
    Year,
    Decade,
    Century,
    Millennium,
}

impl Unit {
    /// The unit a `date_trunc` field names, in the spellings PostgreSQL
    /// accepts for these units.
    pub fn parse(field: &str) -> Option<Unit> {
        Some(match field.trim().to_ascii_lowercase().as_str() {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Unit::Microseconds,
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => Unit::Milliseconds,
            "second" | "seconds" | "s" | "sec" | "secs" => Unit::Second,
            "minute" | "minutes" | "m" | "min" | "mins" => Unit::Minute,
            "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Hour,
            "day" | "days" | "d" => Unit::Day,
            "week" | "weeks" | "w" => Unit::Week,
            "month" | "months" | "mon" | "mons" => Unit::Month,
            "quarter" | "qtr" => Unit::Quarter,
            "year" | "years" | "y" | "yr" | "yrs" => Unit::Year,
            "decade" | "decades" | "dec" | "decs" => Unit::Decade,
            "century" | "centuries" | "c" | "cent" => Unit::Century,
            "millennium" | "millennia" | "mil" | "mils" => Unit::Millennium,
            _ => return None,
        })
    }
}

impl Function {
    pub(super) fn apply(self, args: Vec<Datum>) -> Result<Datum, EvalError> {
        if args.iter().any(Datum::is_null) {
            return Ok(Datum::Null);
        }
        let mut args = args.into_iter();
        let first = args.next().expect("the planner checks the arity");
        Ok(match (self, first) {
            (Function::Lower, Datum::Text(t)) => Datum::Text(t.to_lowercase()),
            (Function::Upper, Datum::Text(t)) => Datum::Text(t.to_uppercase()),
            (Function::Length, Datum::Text(t)) => Datum::Int(t.chars().count() as i64),
            (Function::Abs(bits), Datum::Int(i)) => {
                let a = i.checked_abs().ok_or(EvalError::IntegerOverflow)?;
                Datum::Int(super::cast::in_range(bits, a)?)
            }
            (Function::Abs(_), Datum::Numeric(n)) => Datum::Numeric(n.abs()),
            (Function::Abs(_), Datum::Float(x)) => Datum::Float(Float::new(x.get().abs())),
            (Function::Round, Datum::Numeric(n)) => {
                let scale = match args.next() {
                    Some(Datum::Int(s)) => s,
                    None => 0,
                    Some(other) => return Err(type_error("round", &other)),
                };
                Datum::Numeric(numeric::round(&n, scale))
            }
            (Function::RoundFloat, Datum::Float(x)) => {
                Datum::Float(Float::new(x.get().round_ties_even()))
            }
            (Function::DateTrunc(unit), Datum::Timestamp(t)) => Datum::Timestamp(truncate(unit, t)),
            (Function::DateTrunc(unit), Datum::TimestampTz(t)) => {
                Datum::TimestampTz(truncate(unit, t))
            }
            (f, other) => return Err(type_error(&format!("{f:?}"), &other)),
        })
    }
}

fn type_error(function: &str, d: &Datum) -> EvalError {
    EvalError::TypeMismatch(format!("function {function} of {d:?}"))
}

/// `timestamp_trunc`: the start of the unit the instant (microseconds
/// since 1970-01-01) falls in; the infinities stay as they are.
fn truncate(unit: Unit, t: i64) -> i64 {
    if t == i64::MAX || t == i64::MIN {
        return t;
    }
    let days = t.div_euclid(DAY_MICROS);
    let micros = t.rem_euclid(DAY_MICROS);
    let of_day = |step: i64| days * DAY_MICROS + micros - micros % step;
    let (y, m, _) = civil_from_days(days);
    let at = |y: i64, m: i64| days_from_civil(y, m, 1) * DAY_MICROS;
    match unit {
        Unit::Microseconds => t,
        Unit::Milliseconds => of_day(1_000),
        Unit::Second => of_day(1_000_000),
        Unit::Minute => of_day(60_000_000),
        Unit::Hour => of_day(3_600_000_000),
        Unit::Day => days * DAY_MICROS,
        // 1970-01-01 was a Thursday: Monday is 3 days before it.
        Unit::Week => (days - (days + 3).rem_euclid(7)) * DAY_MICROS,
        Unit::Month => at(y, m),
        Unit::Quarter => at(y, 3 * ((m - 1) / 3) + 1),
        Unit::Year => at(y, 1),
        // PostgreSQL's rules on the astronomical year (1 BC is year 0):
        // decades start at years ending in 0, centuries and millennia at
        // years ending in 1 (AD) or counting back from 1 BC.
        Unit::Decade => at(
            if y > 0 {
                (y / 10) * 10
            } else {
                -((8 - (y - 1)) / 10) * 10
            },
            1,
        ),
        Unit::Century => at(
            if y > 0 {
                ((y + 99) / 100) * 100 - 99
            } else {
                -((99 - (y - 1)) / 100) * 100 + 1
            },
            1,
        ),
        Unit::Millennium => at(
            if y > 0 {
                ((y + 999) / 1000) * 1000 - 999
            } else {
                -((999 - (y - 1)) / 1000) * 1000 + 1
            },
            1,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;

    fn ts(text: &str) -> i64 {
        // "YYYY-MM-DD HH:MM:SS", astronomical years.
        let (date, clock) = text.split_once(' ').unwrap();
        let d: Vec<i64> = date.rsplitn(3, '-').map(|p| p.parse().unwrap()).collect();
        let (y, m, day) = (d[2], d[1], d[0]);
        let c: Vec<i64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
        days_from_civil(y, m, day) * DAY_MICROS + ((c[0] * 60 + c[1]) * 60 + c[2]) * 1_000_000
    }

    /// Each truncation as PostgreSQL 15 prints it.
    #[test]
    fn date_trunc_matches_postgresql() {
        let cases = [
            (Unit::Week, "2024-05-01 10:00:00", "2024-04-29 00:00:00"),
            (Unit::Quarter, "2024-05-01 10:00:00", "2024-04-01 00:00:00"),
            (Unit::Decade, "2024-05-01 00:00:00", "2020-01-01 00:00:00"),
            (Unit::Century, "2001-05-01 00:00:00", "2001-01-01 00:00:00"),
            (
                Unit::Millennium,
                "2024-05-01 00:00:00",
                "2001-01-01 00:00:00",
            ),
            // 50 BC is astronomical year -49; its century starts in 100 BC.
            (Unit::Century, "-49-05-01 00:00:00", "-99-01-01 00:00:00"),
            (Unit::Hour, "1969-12-31 23:59:59", "1969-12-31 23:00:00"),
        ];
        for (unit, at, want) in cases {
            let got = Function::DateTrunc(unit)
                .apply(vec![Datum::Timestamp(ts(at))])
                .unwrap();
            assert_eq!(got, Datum::Timestamp(ts(want)), "{unit:?} of {at}");
        }
    }
}
