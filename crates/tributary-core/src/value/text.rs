//! Dates, times, timestamps and intervals in PostgreSQL's text forms (as
//! its output functions print them under `DateStyle = ISO`, `TimeZone =
//! UTC`, `IntervalStyle = iso_8601`), parsed into typed values.
//!
//! Here, not in a source: the PostgreSQL source reads every temporal value
//! this way, and a stream source reads the ISO-8601 text of JSON messages
//! (`2024-05-01T08:00:00+02:00`), which these parsers also accept, so a
//! date is the same date whichever way it arrived.
//!
//! Every parser returns `None` for text it does not recognise: the caller
//! decides whether that is kept as text (a server's output) or refused (a
//! message's field).

use super::calendar::{days_from_civil, days_in_month, DAY_MICROS};
use super::{Date, Interval, TimeTz, Timestamp};

/// `YYYY-MM-DD[ BC]`, `infinity`, `-infinity`.
pub fn date(text: &str) -> Option<Date> {
    match text {
        "infinity" => Some(Date::INFINITY),
        "-infinity" => Some(Date::NEG_INFINITY),
        _ => match parse_date(text)? {
            (days, "" | " BC") => Date::from_days(i32::try_from(days).ok()?),
            _ => None,
        },
    }
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight.
pub fn time(text: &str) -> Option<i64> {
    match parse_clock(text)? {
        (micros, "") => Some(micros),
        _ => None,
    }
}

/// `HH:MM:SS[.ffffff]±HH[:MM[:SS]]`.
pub fn time_tz(text: &str) -> Option<TimeTz> {
    let (micros, rest) = parse_clock(text)?;
    Some(TimeTz {
        micros,
        offset_secs: parse_offset(rest)?,
    })
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`, `infinity`, `-infinity`.
pub fn timestamp(text: &str) -> Option<Timestamp> {
    match text {
        "infinity" => Some(Timestamp::INFINITY),
        "-infinity" => Some(Timestamp::NEG_INFINITY),
        _ => Timestamp::from_micros(parse_timestamp(text)?.0),
    }
}

/// A `timestamptz` in any offset (the session's is UTC, `+00`) → the
/// instant; `infinity`, `-infinity`.
pub fn timestamp_tz(text: &str) -> Option<Timestamp> {
    match text {
        "infinity" => Some(Timestamp::INFINITY),
        "-infinity" => Some(Timestamp::NEG_INFINITY),
        _ => Timestamp::from_micros(utc_fast(text).or_else(|| utc_general(text))?),
    }
}

/// ISO-8601 duration as PostgreSQL prints it (`P1Y2M3DT4H5M6.5S`, signs
/// per part, `PT0S`), `infinity`, `-infinity`.
pub fn interval(text: &str) -> Option<Interval> {
    match text {
        "infinity" => return Some(Interval::INFINITY),
        "-infinity" => return Some(Interval::NEG_INFINITY),
        _ => {}
    }
    let body = text.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let (mut months, mut days, mut micros) = (0i32, 0i32, 0i64);
    let mut rest = date;
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let n: i32 = rest[..end].parse().ok()?;
        match rest.as_bytes()[end] {
            b'Y' => months = months.checked_add(n.checked_mul(12)?)?,
            b'M' => months = months.checked_add(n)?,
            b'W' => days = days.checked_add(n.checked_mul(7)?)?,
            b'D' => days = days.checked_add(n)?,
            _ => return None,
        }
        rest = &rest[end + 1..];
    }
    let mut rest = time.unwrap_or("");
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let number = &rest[..end];
        let part = match rest.as_bytes()[end] {
            b'H' => number.parse::<i64>().ok()?.checked_mul(3_600_000_000)?,
            b'M' => number.parse::<i64>().ok()?.checked_mul(60_000_000)?,
            b'S' => seconds_as_micros(number)?,
            _ => return None,
        };
        micros = micros.checked_add(part)?;
        rest = &rest[end + 1..];
    }
    Some(Interval {
        months,
        days,
        micros,
    })
}

/// `-6.5` → `-6_500_000`, exactly (at most six fraction digits).
fn seconds_as_micros(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().ok()? * 10i64.pow(6 - frac.len() as u32)
    };
    let micros = whole.checked_mul(1_000_000)?.checked_add(frac)?;
    Some(if negative { -micros } else { micros })
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
    if d > days_in_month(y, m) {
        return None;
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
    // As PostgreSQL reads a time: up to 24:00:00, a leap second rolls over.
    if h > 24 || m > 59 || s > 60 {
        return None;
    }
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

/// `+HH`, `-HH:MM`, `+HH:MM:SS` → seconds east of UTC; ISO-8601's `Z`
/// (which PostgreSQL reads but never prints) is UTC.
fn parse_offset(text: &str) -> Option<i32> {
    if text == "Z" {
        return Some(0);
    }
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
    let micros = days.checked_mul(DAY_MICROS)?.checked_add(clock)?;
    Some((micros, offset))
}

/// Any `timestamptz` text with an offset → microseconds since the epoch, UTC.
fn utc_general(text: &str) -> Option<i64> {
    let (micros, offset_secs) = parse_timestamp(text)?;
    micros.checked_sub(i64::from(offset_secs?) * 1_000_000)
}

/// The form nearly every `timestamptz` arrives in, since the session's
/// time zone is UTC: `2024-05-01 08:00:00[.5]+00`, read by position
/// without splitting the text. Anything else (another offset, BC, a date
/// or time out of range, a fraction PostgreSQL would not print) is `None`
/// and goes the general way, which gives the same instant for every input
/// both accept.
fn utc_fast(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let n = b.len();
    if !(22..=29).contains(&n) || !text.ends_with("+00") {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        b.get(range)?.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
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
    let mut frac = 0;
    if clock_end > 19 {
        // `.f` to `.ffffff`, as PostgreSQL prints it: no trailing zero.
        let len = clock_end - 20;
        if b[19] != b'.' || len == 0 || len > 6 || b[clock_end - 1] == b'0' {
            return None;
        }
        frac = digits(20..clock_end)? * 10i64.pow(6 - len as u32);
    }
    let secs = (hh * 60 + mm) * 60 + ss;
    Some(days_from_civil(y, m, d) * DAY_MICROS + secs * 1_000_000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            if let Some(quick) = utc_fast(text) {
                fast += 1;
                assert_eq!(Some(quick), utc_general(text), "{text}");
            }
        }
        assert!(fast > 50, "the fast path took only {fast} inputs");
    }

    #[test]
    fn intervals_keep_months_days_and_micros_apart() {
        let iv = |months, days, micros| {
            Some(Interval {
                months,
                days,
                micros,
            })
        };
        assert_eq!(interval("PT0S"), iv(0, 0, 0));
        assert_eq!(interval("P1Y2M3DT4H5M6.5S"), iv(14, 3, 14_706_500_000));
        assert_eq!(interval("P1DT-1H-0.5S"), iv(0, 1, -3_600_500_000));
        assert_eq!(interval("P-1Y-2M"), iv(-14, 0, 0));
        assert_eq!(interval("-infinity"), Some(Interval::NEG_INFINITY));
        for bad in ["1 day", "P1.5D", "PT1.1234567S", "P99999999999Y", "PT1X"] {
            assert_eq!(interval(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_8601_text_of_json_messages_parses() {
        let at = |text| timestamp_tz(text).and_then(Timestamp::micros);
        let noon = days_from_civil(2024, 5, 1) * DAY_MICROS + 12 * 3_600_000_000;
        assert_eq!(at("2024-05-01T12:00:00Z"), Some(noon));
        assert_eq!(at("2024-05-01T14:00:00+02:00"), Some(noon));
        assert_eq!(at("2024-05-01T12:00:00.250Z"), Some(noon + 250_000));
        assert_eq!(at("2024-05-01 12:00:00+00"), Some(noon));
        assert_eq!(at("2024-05-01T12:00:00.1234567Z"), None);
        assert_eq!(at("2024-05-01T12:00:00ZZ"), None);
        assert_eq!(date("2024-05-01").and_then(Date::days), Some(19844));
        assert_eq!(date("2023-02-29"), None);
        assert_eq!(time("25:00:00"), None);
        assert_eq!(time("12:60:00"), None);
    }

    #[test]
    fn timestamps_beyond_postgres_range_do_not_parse() {
        // Found by the `text_values` fuzz target: overflowed in debug builds
        // and wrapped to a wrong number in release builds.
        for text in [
            "911096-9-13 23:51:59.000508+00",
            "9223372036854775807-01-01 00:00:00",
        ] {
            assert_eq!(timestamp(text), None);
            assert_eq!(timestamp_tz(text), None);
            assert_eq!(date(text), None);
        }
    }
}
