//! Column values with their real SQL types: what a source decodes, what a
//! transform or a view computes with, what a sink encodes.
//!
//! Sources map their native types onto this set once, when decoding, so that
//! every consumer agrees on what a `numeric` or a `timestamptz` is. Nothing
//! here is an encoding: Debezium's day counts, micro-durations and
//! `decimal.handling.mode` are applied by [`crate::debezium`] when it writes
//! JSON, so a SQL view sees an exact decimal and an interval with its months,
//! days and microseconds kept apart, as PostgreSQL does.
//!
//! Temporal values use PostgreSQL's own representation (microseconds, days,
//! infinities as the extreme integers), relative to the Unix epoch. Our own
//! calendar code ([`calendar`]) instead of `chrono` or `time`: PostgreSQL's
//! range (4713 BC to 294276 AD) is wider than theirs, and formatting is on
//! the hot path of every snapshot row (see `calendar`).
//!
//! Text is a [`CompactString`]: up to 24 bytes are kept inline, with no
//! allocation. Most values are that short (dates, exact decimals, enums,
//! short names), and a snapshot makes one value per column per row, so each
//! allocation saved is saved a million times per million rows.

pub mod calendar;
mod interval;
pub mod text;

pub use compact_str::CompactString;
pub use interval::Interval;

/// One column value, typed (see `interface.md`, "Value mapping", for how
/// each is written as JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// `smallint`, `integer`, `bigint`, `oid`.
    Int(i64),
    /// `real`, `double precision`, with NaN and ±infinity.
    Float(f64),
    /// `numeric`, `decimal`, `money`: exact.
    Decimal(Decimal),
    /// `date`.
    Date(Date),
    /// `time`: microseconds since midnight.
    Time(i64),
    /// `time with time zone`.
    TimeTz(TimeTz),
    /// `timestamp` (without time zone).
    Timestamp(Timestamp),
    /// `timestamptz`: the instant, in UTC.
    TimestampTz(Timestamp),
    Interval(Interval),
    Uuid(Uuid),
    /// `json` or `jsonb`, as its text.
    Json(CompactString),
    /// Text types, enums, network types, and any type without a mapping of
    /// its own (as its text form); also a value whose text did not parse as
    /// its type, which is kept rather than dropped.
    Text(CompactString),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// Arrays, possibly nested.
    Array(Vec<Value>),
}

/// An exact decimal, held as its canonical text: an optional `-`, digits,
/// optionally `.` and digits; or `NaN`, `Infinity`, `-Infinity`.
///
/// Text, not a fixed-width number: PostgreSQL's `numeric` has up to 131072
/// digits before the point, more than any decimal crate holds exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(CompactString);

impl Decimal {
    /// `None` unless `text` is in the canonical form above.
    pub fn parse(text: &str) -> Option<Self> {
        if matches!(text, "NaN" | "Infinity" | "-Infinity") {
            return Some(Self(text.into()));
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (whole, fraction) = match digits.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (digits, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (all_digits(whole) && fraction.is_none_or(all_digits)).then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nearest `f64` (Debezium's `decimal.handling.mode = double`).
    pub fn to_f64(&self) -> f64 {
        match self.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            // Canonical decimal text always parses.
            text => text.parse().unwrap_or(f64::NAN),
        }
    }
}

/// A `date`: days since 1970-01-01 (proleptic Gregorian), or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

impl Date {
    pub const NEG_INFINITY: Date = Date(i32::MIN);
    pub const INFINITY: Date = Date(i32::MAX);

    /// `None` for the two values that stand for the infinities.
    pub fn from_days(days: i32) -> Option<Self> {
        (days != i32::MIN && days != i32::MAX).then_some(Self(days))
    }

    /// Days since 1970-01-01; `None` for an infinity.
    pub fn days(self) -> Option<i32> {
        Self::from_days(self.0).map(|d| d.0)
    }
}

/// A `timestamp` or `timestamptz`: microseconds since 1970-01-01 00:00
/// (UTC for `timestamptz`), or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const NEG_INFINITY: Timestamp = Timestamp(i64::MIN);
    pub const INFINITY: Timestamp = Timestamp(i64::MAX);

    /// `None` for the two values that stand for the infinities.
    pub fn from_micros(micros: i64) -> Option<Self> {
        (micros != i64::MIN && micros != i64::MAX).then_some(Self(micros))
    }

    /// Microseconds since the epoch; `None` for an infinity.
    pub fn micros(self) -> Option<i64> {
        Self::from_micros(self.0).map(|t| t.0)
    }
}

/// A `time with time zone`: the clock reading and its UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeTz {
    /// Microseconds since midnight, local to the offset.
    pub micros: i64,
    /// Seconds east of UTC.
    pub offset_secs: i32,
}

impl TimeTz {
    /// The same instant of the day in UTC, microseconds since midnight.
    pub fn utc_micros(self) -> i64 {
        (self.micros - i64::from(self.offset_secs) * 1_000_000).rem_euclid(calendar::DAY_MICROS)
    }
}

/// A `uuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid([u8; 16]);

impl Uuid {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the hyphenated form (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`),
    /// either case; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let mut out = [0u8; 16];
        let mut hex = b.iter().filter(|&&c| c != b'-');
        for byte in &mut out {
            let hi = hex_value(*hex.next()?)?;
            let lo = hex_value(*hex.next()?)?;
            *byte = hi << 4 | lo;
        }
        Some(Self(out))
    }

    /// Appends the lowercase hyphenated form.
    pub fn push_to(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push(b'-');
            }
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        }
    }
}

/// The value of one hexadecimal digit, either case (uuid and `bytea` text).
pub fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_text_in_canonical_form() {
        for ok in [
            "0",
            "-1.50",
            "12345678901234567890.000001",
            "NaN",
            "-Infinity",
        ] {
            assert_eq!(Decimal::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-", "1.", ".5", "1e5", "+1", "1,5", "nan"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Decimal::parse("-1.25").unwrap().to_f64(), -1.25);
    }

    #[test]
    fn uuids_round_trip_lowercase() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        let mut out = Vec::new();
        Uuid::parse(&text.to_uppercase()).unwrap().push_to(&mut out);
        assert_eq!(out, text.as_bytes());
        for bad in [
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        ] {
            assert!(Uuid::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn infinities_are_not_finite_values() {
        assert_eq!(Date::from_days(i32::MAX), None);
        assert_eq!(Date::INFINITY.days(), None);
        assert_eq!(Date::from_days(-1).unwrap().days(), Some(-1));
        assert_eq!(Timestamp::from_micros(i64::MIN), None);
        assert_eq!(Timestamp::from_micros(5).unwrap().micros(), Some(5));
        let t = TimeTz {
            micros: 3_600_000_000,
            offset_secs: 7200,
        };
        assert_eq!(t.utc_micros(), 23 * 3_600_000_000);
    }
}
