//! The proleptic Gregorian calendar over days since 1970-01-01, and the
//! ISO-8601 text of dates, clock times and UTC instants.
//!
//! Written here rather than taken from `chrono`/`time`: PostgreSQL's dates
//! reach 5874897 AD and its timestamps 294276 AD, beyond those crates'
//! ranges, and the conversions run for every temporal value of every row
//! (Howard Hinnant's algorithms: a few dozen integer operations, no tables).
//! The writers append bytes without `fmt`, which cost ~2,000 instructions per
//! `timestamptz` when it was used.

/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// Days from 1970-01-01 to a proleptic Gregorian date (year 0 is 1 BC).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count; inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
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

/// Days in a month of a (proleptic Gregorian) year.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Appends `2024-05-01` (ISO-8601; years outside 0–9999 expanded with a
/// sign, `+10000-01-01`, `-0001-12-31`, as java.time prints them).
pub fn push_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        push_digits(out, y, 4);
    } else {
        out.push(if y < 0 { b'-' } else { b'+' });
        push_digits(out, y.abs(), 4);
    }
    out.push(b'-');
    push_digits(out, m, 2);
    out.push(b'-');
    push_digits(out, d, 2);
}

/// Appends `HH:MM:SS[.ffffff]`, the fraction without trailing zeros (as
/// PostgreSQL prints it).
pub fn push_clock(out: &mut Vec<u8>, micros_of_day: i64) {
    let secs = micros_of_day / 1_000_000;
    let frac = micros_of_day % 1_000_000;
    push_digits(out, secs / 3600, 2);
    out.push(b':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(b':');
    push_digits(out, secs % 60, 2);
    push_fraction(out, frac);
}

/// Appends `.ffffff` for a non-zero count of microseconds (below a
/// second), without trailing zeros; nothing for zero.
pub fn push_fraction(out: &mut Vec<u8>, micros: i64) {
    if micros == 0 {
        return;
    }
    let start = out.len();
    out.push(b'.');
    push_digits(out, micros, 6);
    while out.len() > start + 2 && out.last() == Some(&b'0') {
        out.pop();
    }
}

/// Appends an instant as `2024-05-01T08:00:00[.5]Z`.
pub fn push_utc_timestamp(out: &mut Vec<u8>, micros: i64) {
    push_date(out, micros.div_euclid(DAY_MICROS));
    out.push(b'T');
    push_clock(out, micros.rem_euclid(DAY_MICROS));
    out.push(b'Z');
}

/// `n` (non-negative) zero-padded to `width` digits.
fn push_digits(out: &mut Vec<u8>, n: i64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    for _ in digits.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn civil_round_trip() {
        for days in [
            -2_440_588,
            -800_000,
            -1,
            0,
            1,
            19_844,
            2_932_896,
            2_145_042_906,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=days_in_month(y, m)).contains(&d));
        }
        assert_eq!(days_from_civil(2024, 5, 1), 19_844);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
    }

    #[test]
    fn iso_texts() {
        assert_eq!(text(|o| push_date(o, 19_844)), "2024-05-01");
        assert_eq!(text(|o| push_date(o, -719_529)), "-0001-12-31");
        assert_eq!(text(|o| push_date(o, 2_932_897)), "+10000-01-01");
        assert_eq!(text(|o| push_clock(o, 49_530_123_456)), "13:45:30.123456");
        assert_eq!(text(|o| push_clock(o, 1_500_000)), "00:00:01.5");
        assert_eq!(text(|o| push_clock(o, 1_000_010)), "00:00:01.00001");
        assert_eq!(
            text(|o| push_utc_timestamp(o, 1_714_550_400_000_000)),
            "2024-05-01T08:00:00Z"
        );
        assert_eq!(
            text(|o| push_utc_timestamp(o, -1)),
            "1969-12-31T23:59:59.999999Z"
        );
    }
}
