//! `interval` as PostgreSQL keeps it: months, days and microseconds apart,
//! because a month is not a fixed number of days nor a day of hours (across
//! a daylight-saving change). Only an encoding flattens it.

/// An `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Interval {
    /// PostgreSQL 17's `infinity` and `-infinity` intervals.
    pub const INFINITY: Interval = Interval {
        months: i32::MAX,
        days: i32::MAX,
        micros: i64::MAX,
    };
    pub const NEG_INFINITY: Interval = Interval {
        months: i32::MIN,
        days: i32::MIN,
        micros: i64::MIN,
    };

    pub fn is_finite(self) -> bool {
        self != Self::INFINITY && self != Self::NEG_INFINITY
    }

    /// Microseconds with 365.25/12 days per month and 24 hours per day,
    /// saturating (Debezium's `MicroDuration`).
    pub fn approximate_micros(self) -> i64 {
        const MONTH_MICROS: i128 = 2_629_800_000_000;
        const DAY_MICROS: i128 = 86_400_000_000;
        let total = i128::from(self.months) * MONTH_MICROS
            + i128::from(self.days) * DAY_MICROS
            + i128::from(self.micros);
        i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
    }

    /// Appends the ISO-8601 duration exactly as PostgreSQL prints it with
    /// `intervalstyle = iso_8601` (`P1Y2M3DT4H5M6.5S`, `PT0S`,
    /// `P1DT-1H-0.5S`; `infinity` for the infinities): years and months from
    /// the months, hours to seconds from the microseconds, each part with
    /// its own sign and left out when zero.
    pub fn push_iso8601(self, out: &mut Vec<u8>) {
        if self == Self::INFINITY {
            return out.extend_from_slice(b"infinity");
        }
        if self == Self::NEG_INFINITY {
            return out.extend_from_slice(b"-infinity");
        }
        if self.months == 0 && self.days == 0 && self.micros == 0 {
            return out.extend_from_slice(b"PT0S");
        }
        let part = |out: &mut Vec<u8>, n: i64, unit: u8| {
            if n != 0 {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.push(unit);
            }
        };
        out.push(b'P');
        part(out, i64::from(self.months / 12), b'Y');
        part(out, i64::from(self.months % 12), b'M');
        part(out, i64::from(self.days), b'D');
        if self.micros == 0 {
            return;
        }
        out.push(b'T');
        let hours = self.micros / 3_600_000_000;
        let minutes = self.micros % 3_600_000_000 / 60_000_000;
        let micros = self.micros % 60_000_000;
        part(out, hours, b'H');
        part(out, minutes, b'M');
        if micros != 0 {
            if micros < 0 {
                out.push(b'-');
            }
            let micros = micros.abs();
            out.extend_from_slice(itoa::Buffer::new().format(micros / 1_000_000).as_bytes());
            super::calendar::push_fraction(out, micros % 1_000_000);
            out.push(b'S');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(months: i32, days: i32, micros: i64) -> String {
        let mut out = Vec::new();
        Interval {
            months,
            days,
            micros,
        }
        .push_iso8601(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn iso8601_as_postgres_prints_it() {
        assert_eq!(iso(0, 0, 0), "PT0S");
        assert_eq!(iso(14, 3, 14_706_500_000), "P1Y2M3DT4H5M6.5S");
        assert_eq!(iso(0, 1, -3_600_500_000), "P1DT-1H-0.5S");
        assert_eq!(iso(-14, 0, 0), "P-1Y-2M");
        assert_eq!(iso(0, 0, 60_000_000), "PT1M");
        assert_eq!(iso(0, 0, 1), "PT0.000001S");
        let mut out = Vec::new();
        Interval::NEG_INFINITY.push_iso8601(&mut out);
        assert_eq!(out, b"-infinity");
    }

    #[test]
    fn micro_duration_counts_a_month_as_365_25_over_12_days() {
        let month = Interval {
            months: 1,
            days: 0,
            micros: 0,
        };
        assert_eq!(month.approximate_micros(), 2_629_800_000_000);
        let huge = Interval {
            months: i32::MAX - 1,
            ..month
        };
        assert_eq!(huge.approximate_micros(), i64::MAX);
    }
}
