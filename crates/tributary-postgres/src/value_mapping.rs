//! Maps PostgreSQL values, in their text output form, onto [`Value`].
//!
//! Both the snapshot (COPY text format) and the stream (pgoutput text tuples)
//! carry values as the type's output function prints them, so one mapping
//! serves both and a row reads the same whichever way it arrived. Sessions are
//! opened with fixed settings (`SESSION_OPTIONS`) so the text forms are stable:
//! ISO dates, ISO-8601 intervals, UTC, hex bytea, C-locale money.
//!
//! Mapping never fails: text that does not parse as its type (which would be a
//! server we do not understand) is kept as text, so no value is ever dropped.

use tributary_core::{CompactString, Value};

/// Startup options for every session whose text output we parse.
pub use tributary_pg::SESSION_OPTIONS;

/// How `numeric`, `decimal` and `money` are emitted (Debezium's `decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalHandling {
    /// The exact decimal as a string.
    #[default]
    String,
    /// A JSON number (may lose precision).
    Double,
}

/// How `interval` is emitted (Debezium's `interval.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalHandling {
    /// Microseconds, 365.25/12 days per month (Debezium `MicroDuration`).
    #[default]
    Numeric,
    /// ISO-8601 duration string (`P1Y2M3DT4H5M6.5S`).
    String,
}

/// Value-mapping options of one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingOptions {
    pub decimal: DecimalHandling,
    pub interval: IntervalHandling,
}

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
    /// Kept as its text form: text types, uuid, json, network types, enums…
    Text,
    /// `jsonb`, as its text form (stored larger than its text, see `toast`).
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
            // char, name, text, json, xml, cidr, inet, macaddr, macaddr8, bpchar,
            // varchar, bit, varbit, uuid, jsonb, jsonpath, pg_lsn
            18 | 19 | 25 | 114 | 142 | 650 | 869 | 829 | 774 | 1042 | 1043 | 1560 | 1562 | 2950
            | 4072 | 3220 => Mapping::Text,
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
    pub fn map(&self, text: &str, opts: MappingOptions) -> Value {
        self.try_map(text, opts)
            .unwrap_or_else(|| Value::Text(text.into()))
    }

    fn try_map(&self, text: &str, opts: MappingOptions) -> Option<Value> {
        Some(match self {
            Mapping::Bool => match text {
                "t" => Value::Bool(true),
                "f" => Value::Bool(false),
                _ => return None,
            },
            Mapping::Int => Value::Int(text.parse().ok()?),
            Mapping::Float => Value::Float(parse_float(text)?),
            Mapping::Numeric => decimal(text.into(), opts),
            Mapping::Money => decimal(money_to_decimal(text)?.into(), opts),
            Mapping::Bytea => Value::Bytes(parse_bytea_hex(text)?),
            Mapping::Date => match text {
                "infinity" | "-infinity" => Value::Text(text.into()),
                _ => match parse_date(text)? {
                    (days, "" | " BC") => Value::Int(days),
                    _ => return None,
                },
            },
            Mapping::Time => Value::Int(parse_time(text)?),
            Mapping::TimeTz => Value::Text(timetz_to_utc(text)?.into()),
            Mapping::Timestamp => match text {
                "infinity" | "-infinity" => Value::Text(text.into()),
                _ => Value::Int(parse_timestamp(text)?.0),
            },
            Mapping::TimestampTz => match text {
                "infinity" | "-infinity" => Value::Text(text.into()),
                _ => Value::Text(
                    utc_timestamptz_fast(text)
                        .or_else(|| utc_timestamptz_general(text).map(CompactString::from))?,
                ),
            },
            Mapping::Interval => match opts.interval {
                IntervalHandling::String => Value::Text(text.into()),
                IntervalHandling::Numeric => Value::Int(parse_iso_interval(text)?),
            },
            Mapping::Text | Mapping::Jsonb | Mapping::Unknown { .. } => Value::Text(text.into()),
            Mapping::Array { element, delimiter } => {
                parse_array(text, *delimiter, &|t| element.map(t, opts))?
            }
        })
    }
}

fn decimal(exact: CompactString, opts: MappingOptions) -> Value {
    match opts.decimal {
        DecimalHandling::String => Value::Text(exact),
        DecimalHandling::Double => match parse_float(&exact) {
            Some(f) => Value::Float(f),
            None => Value::Text(exact),
        },
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
        .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD[ BC]` → (days since epoch, rest of the text after the date).
fn parse_date(text: &str) -> Option<(i64, &str)> {
    let (date, rest) = text.split_at(text.find([' ', 'T']).unwrap_or(text.len()));
    let mut parts = date.splitn(3, '-');
    let mut y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    if text.ends_with(" BC") {
        y = 1 - y;
    }
    // PostgreSQL's own date range; outside it the text cannot be a date it
    // printed, and the arithmetic below could overflow.
    if !(-4712..=5_874_897).contains(&y) {
        return None;
    }
    Some((days_from_civil(y, m, d), rest))
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight, and the unparsed tail.
fn parse_clock(text: &str) -> Option<(i64, &str)> {
    let b = text.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    // `get`, not indexing: the text comes from the server and need not be
    // ASCII where we expect digits (found by the `text_values` fuzz target).
    let h: i64 = text.get(0..2)?.parse().ok()?;
    let m: i64 = text.get(3..5)?.parse().ok()?;
    let s: i64 = text.get(6..8)?.parse().ok()?;
    let mut micros = ((h * 60 + m) * 60 + s) * 1_000_000;
    let mut rest = text.get(8..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return None;
        }
        let digits: i64 = frac[..n].parse().ok()?;
        micros += digits * 10i64.pow(6 - n as u32);
        rest = &frac[n..];
    }
    Some((micros, rest))
}

fn parse_time(text: &str) -> Option<i64> {
    match parse_clock(text)? {
        (micros, "") => Some(micros),
        _ => None,
    }
}

/// `+HH`, `-HH:MM`, `+HH:MM:SS` → seconds east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let mut secs = 0;
    let mut unit = 3600;
    for part in text[1..].split(':') {
        if part.len() != 2 || unit == 0 {
            return None;
        }
        secs += part.parse::<i32>().ok()? * unit;
        unit /= 60;
    }
    Some(sign * secs)
}

fn timetz_to_utc(text: &str) -> Option<String> {
    let (micros, rest) = parse_clock(text)?;
    let offset = i64::from(parse_offset(rest)?);
    let day = 86_400_000_000i64;
    let utc = (micros - offset * 1_000_000).rem_euclid(day);
    let mut out = String::with_capacity(16);
    push_clock(&mut out, utc);
    out.push('Z');
    Some(out)
}

/// Timestamp text → (microseconds since epoch as written, UTC offset if any).
fn parse_timestamp(text: &str) -> Option<(i64, Option<i32>)> {
    let bc = text.ends_with(" BC");
    let body = text.strip_suffix(" BC").unwrap_or(text);
    let (days, rest) = parse_date(if bc { text } else { body })?;
    let rest = rest.strip_prefix([' ', 'T'])?;
    let rest = if bc { rest.strip_suffix(" BC")? } else { rest };
    let (clock, tail) = parse_clock(rest)?;
    let offset = if tail.is_empty() {
        None
    } else {
        Some(parse_offset(tail)?)
    };
    let micros = days.checked_mul(86_400_000_000)?.checked_add(clock)?;
    Some((micros, offset))
}

fn push_clock(out: &mut String, micros_of_day: i64) {
    let secs = micros_of_day / 1_000_000;
    let frac = micros_of_day % 1_000_000;
    push_digits(out, secs / 3600, 2);
    out.push(':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(':');
    push_digits(out, secs % 60, 2);
    if frac != 0 {
        let mut digits = String::with_capacity(6);
        push_digits(&mut digits, frac, 6);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// `n` (non-negative) zero-padded to `width` digits: the hot path of every
/// temporal value, without `fmt`'s machinery.
fn push_digits(out: &mut String, n: i64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// The form nearly every `timestamptz` arrives in, since the session's
/// time zone is UTC: `2024-05-01 08:00:00[.5]+00` becomes
/// `2024-05-01T08:00:00[.5]Z` by copying, without the calendar arithmetic
/// of the general path (which took ~2,000 instructions per value, a fifth
/// of a snapshot's CPU). Anything else — another offset, BC, a date or time
/// out of range, a fraction with trailing zeros — is `None` and goes the
/// general way, so both paths give the same text for every input.
fn utc_timestamptz_fast(text: &str) -> Option<CompactString> {
    let b = text.as_bytes();
    let n = b.len();
    if !(22..=29).contains(&n) || !text.ends_with("+00") {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hh, mm, ss) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let clock_end = n - 3;
    if clock_end > 19 {
        // `.f` to `.ffffff`, as PostgreSQL prints it: no trailing zero.
        let frac = &b[20..clock_end];
        if b[19] != b'.' || frac.is_empty() || frac.len() > 6 || frac.last() == Some(&b'0') {
            return None;
        }
        digits(20..clock_end)?;
    }
    // Assembled on the stack and copied once: `CompactString::push` per
    // piece cost ~230 instructions per value. At most 27 bytes (24 stay
    // inline; a fraction of five or six digits takes one allocation).
    let mut iso = [0u8; 27];
    iso[..clock_end].copy_from_slice(&b[..clock_end]);
    iso[10] = b'T';
    iso[clock_end] = b'Z';
    let iso = std::str::from_utf8(&iso[..=clock_end]).ok()?;
    Some(CompactString::new(iso))
}

/// Any `timestamptz` text with an offset → ISO-8601 in UTC.
fn utc_timestamptz_general(text: &str) -> Option<String> {
    let (micros, offset_secs) = parse_timestamp(text)?;
    let utc = micros.checked_sub(i64::from(offset_secs?) * 1_000_000)?;
    Some(format_utc(utc))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Microseconds since epoch → `2024-05-01T08:00:00[.5]Z`.
fn format_utc(micros: i64) -> String {
    use std::fmt::Write;
    let day = 86_400_000_000i64;
    let (y, m, d) = civil_from_days(micros.div_euclid(day));
    let mut out = String::with_capacity(27);
    if (0..=9999).contains(&y) {
        push_digits(&mut out, y, 4);
        out.push('-');
        push_digits(&mut out, m, 2);
        out.push('-');
        push_digits(&mut out, d, 2);
        out.push('T');
    } else {
        // ISO-8601 expanded years, as java.time prints them.
        let _ = write!(out, "{y:+05}-{m:02}-{d:02}T");
    }
    push_clock(&mut out, micros.rem_euclid(day));
    out.push('Z');
    out
}

/// ISO-8601 interval (`intervalstyle=iso_8601`) → microseconds, with
/// 365.25/12 days per month as Debezium's `MicroDuration`.
fn parse_iso_interval(text: &str) -> Option<i64> {
    const MONTH_MICROS: f64 = 365.25 / 12.0 * 86_400_000_000.0;
    let body = text.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut total: f64 = 0.0;
    for (part, in_time) in [(date, false), (time.unwrap_or(""), true)] {
        let mut rest = part;
        while !rest.is_empty() {
            let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
            let n: f64 = rest[..end].parse().ok()?;
            let unit = rest.as_bytes()[end];
            total += n * match (in_time, unit) {
                (false, b'Y') => 12.0 * MONTH_MICROS,
                (false, b'M') => MONTH_MICROS,
                (false, b'W') => 7.0 * 86_400_000_000.0,
                (false, b'D') => 86_400_000_000.0,
                (true, b'H') => 3_600_000_000.0,
                (true, b'M') => 60_000_000.0,
                (true, b'S') => 1_000_000.0,
                _ => return None,
            };
            rest = &rest[end + 1..];
        }
    }
    Some(total.round() as i64)
}

/// Parses an array literal (`{1,2}`, `{{"a b",NULL}}`, `[0:1]={x,y}`).
fn parse_array(text: &str, delimiter: u8, element: &dyn Fn(&str) -> Value) -> Option<Value> {
    // Explicit bounds (`[0:1]=`) only change subscripts, not the values.
    let text = match text.strip_prefix('[') {
        Some(_) => &text[text.find('=')? + 1..],
        None => text,
    };
    let mut parser = ArrayParser {
        bytes: text.as_bytes(),
        pos: 0,
        delimiter,
    };
    let value = parser.array(element)?;
    (parser.pos == parser.bytes.len()).then_some(value)
}

struct ArrayParser<'a> {
    bytes: &'a [u8],
    pos: usize,
    delimiter: u8,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn array(&mut self, element: &dyn Fn(&str) -> Value) -> Option<Value> {
        if self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            match self.peek()? {
                b'{' => items.push(self.array(element)?),
                b'"' => {
                    let s = self.quoted()?;
                    items.push(element(&s));
                }
                _ => {
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if c == self.delimiter || c == b'}' {
                            break;
                        }
                        self.pos += 1;
                    }
                    let raw = std::str::from_utf8(&self.bytes[start..self.pos]).ok()?;
                    let raw = raw.trim();
                    items.push(if raw.eq_ignore_ascii_case("NULL") {
                        Value::Null
                    } else {
                        element(raw)
                    });
                }
            }
            match self.peek()? {
                b'}' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                c if c == self.delimiter => self.pos += 1,
                _ => return None,
            }
        }
    }

    fn quoted(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    self.pos += 1;
                    out.push(self.peek()?);
                    self.pos += 1;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(m: Mapping, text: &str) -> Value {
        m.map(text, MappingOptions::default())
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(map(Mapping::Date, "1970-01-02"), Value::Int(1));
        assert_eq!(map(Mapping::Date, "1969-12-31"), Value::Int(-1));
        assert_eq!(map(Mapping::Date, "2024-05-01"), Value::Int(19844));
        assert_eq!(map(Mapping::Date, "0001-01-01 BC"), Value::Int(-719_528));
        assert_eq!(map(Mapping::Time, "00:00:01.5"), Value::Int(1_500_000));
        assert_eq!(
            map(Mapping::TimeTz, "10:00:00.25+02"),
            Value::Text("08:00:00.25Z".into())
        );
        assert_eq!(
            map(Mapping::TimeTz, "01:00:00-05:30"),
            Value::Text("06:30:00Z".into())
        );
        assert_eq!(
            map(Mapping::Timestamp, "1970-01-01 00:00:01.000001"),
            Value::Int(1_000_001)
        );
        assert_eq!(
            map(Mapping::TimestampTz, "2024-05-01 08:00:00+00"),
            Value::Text("2024-05-01T08:00:00Z".into())
        );
        assert_eq!(
            map(Mapping::TimestampTz, "2024-05-01 10:00:00.120+02"),
            Value::Text("2024-05-01T08:00:00.12Z".into())
        );
        assert_eq!(
            map(Mapping::TimestampTz, "infinity"),
            Value::Text("infinity".into())
        );
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(map(Mapping::Interval, "PT0S"), Value::Int(0));
        assert_eq!(map(Mapping::Interval, "P1M"), Value::Int(2_629_800_000_000));
        assert_eq!(
            map(Mapping::Interval, "P1DT-1H-0.5S"),
            Value::Int(86_400_000_000 - 3_600_000_000 - 500_000)
        );
    }

    #[test]
    fn numbers_and_bytes() {
        assert_eq!(
            map(Mapping::Money, "-$1,234.56"),
            Value::Text("-1234.56".into())
        );
        assert_eq!(
            map(Mapping::Numeric, "12345678901234567890.000001"),
            Value::Text("12345678901234567890.000001".into())
        );
        assert!(matches!(map(Mapping::Float, "NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(map(Mapping::Bytea, "\\x00ff"), Value::Bytes(vec![0, 255]));
        assert_eq!(
            map(Mapping::Int, "-9223372036854775808"),
            Value::Int(i64::MIN)
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
        // Found by the `text_values` fuzz target: overflowed in debug builds
        // and wrapped to a wrong number in release builds.
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
    }

    #[test]
    fn the_utc_timestamptz_fast_path_agrees_with_the_general_one() {
        let mut inputs: Vec<String> = [
            "2024-05-01 08:00:00+00",
            "2024-05-01 08:00:00.5+00",
            "2024-05-01 08:00:00.123456+00",
            "2024-02-29 23:59:59.000001+00",
            "2023-02-29 00:00:00+00",
            "2024-05-01 08:00:00.50+00",
            "2024-05-01 08:00:00.1234567+00",
            "2024-05-01 24:00:00+00",
            "2024-13-01 08:00:00+00",
            "0000-01-01 00:00:00+00",
            "0001-01-01 00:00:00+00",
            "9999-12-31 23:59:59.999999+00",
            "2024-05-01T08:00:00+00",
            "2024-05-01 08:00:00+01",
            "2024-05-01 08:00:00.+00",
            "2024-05-01 08:00:00+00 BC",
            "2024-05-01 08:0é:00+00",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        // Every byte of a valid value replaced by a few others.
        let base = b"2024-02-28 23:59:59.25+00";
        for i in 0..base.len() {
            for c in [b'0', b'1', b'2', b'9', b'-', b' ', b':', b'.', b'+', b'T'] {
                let mut v = base.to_vec();
                v[i] = c;
                inputs.push(String::from_utf8(v).unwrap());
            }
        }
        let mut fast = 0;
        for text in &inputs {
            if let Some(quick) = utc_timestamptz_fast(text) {
                fast += 1;
                assert_eq!(
                    Some(quick.as_str()),
                    utc_timestamptz_general(text).as_deref(),
                    "{text}"
                );
            }
        }
        assert!(fast > 50, "the fast path took only {fast} inputs");
    }
}
