//! `numeric` operations whose result scale PostgreSQL chooses by a rule of
//! its own (division, `round`, conversion from `double precision`): each
//! follows `numeric.c`, so a view prints the digits PostgreSQL prints.
//!
//! Written on `bigdecimal`'s integers rather than its `/`, which divides
//! to a fixed precision of its own and would differ in the last digits.

use bigdecimal::{BigDecimal, RoundingMode};
use num_bigint::{BigInt, Sign};

use super::EvalError;

/// At least this many significant digits in a quotient (PostgreSQL's
/// `NUMERIC_MIN_SIG_DIGITS`).
const MIN_SIG_DIGITS: i64 = 16;
/// The largest display scale PostgreSQL gives a result.
const MAX_DISPLAY_SCALE: i64 = 1000;

/// `a / b` as PostgreSQL's `numeric_div`: rounded half away from zero at
/// the scale `select_div_scale` picks (16 significant digits at least, and
/// never fewer fraction digits than either operand shows).
pub(super) fn divide(a: &BigDecimal, b: &BigDecimal) -> Result<BigDecimal, EvalError> {
    if b.sign() == Sign::NoSign {
        return Err(EvalError::DivisionByZero);
    }
    let scale = division_scale(a, b);
    let (an, a_scale) = a.as_bigint_and_exponent();
    let (bn, b_scale) = b.as_bigint_and_exponent();
    // a / b * 10^scale = an * 10^(b_scale - a_scale + scale) / bn.
    let shift = b_scale - a_scale + scale;
    let (numerator, denominator) = if shift >= 0 {
        (an * ten_to(shift), bn)
    } else {
        (an, bn * ten_to(-shift))
    };
    Ok(BigDecimal::new(
        rounded_quotient(&numerator, &denominator),
        scale,
    ))
}

/// `a % b` as `mod_var`: `a - trunc(a / b) * b`, at the larger scale.
pub(super) fn remainder(a: &BigDecimal, b: &BigDecimal) -> Result<BigDecimal, EvalError> {
    if b.sign() == Sign::NoSign {
        return Err(EvalError::DivisionByZero);
    }
    let scale = a
        .fractional_digit_count()
        .max(b.fractional_digit_count())
        .max(0);
    let (an, _) = a.with_scale(scale).into_bigint_and_exponent();
    let (bn, _) = b.with_scale(scale).into_bigint_and_exponent();
    // BigInt's `%` truncates: the remainder has the dividend's sign.
    Ok(BigDecimal::new(an % bn, scale))
}

/// `round(x, scale)`: half away from zero; a negative scale rounds left of
/// the point and shows no fraction, as `numeric_round` does.
pub(super) fn round(x: &BigDecimal, scale: i64) -> BigDecimal {
    let scale = scale.clamp(-MAX_DISPLAY_SCALE, MAX_DISPLAY_SCALE);
    let rounded = x.with_scale_round(scale, RoundingMode::HalfUp);
    if scale < 0 {
        rounded.with_scale(0)
    } else {
        rounded
    }
}

/// A `double precision` as `numeric`, as `float8_numeric` converts it:
/// through its text with 15 significant digits (`%.15g`), so `0.1::float8`
/// becomes `0.1`, not the binary value's 55 digits.
pub(super) fn from_float(x: f64) -> Result<BigDecimal, EvalError> {
    if !x.is_finite() {
        return Err(EvalError::OutOfRange("numeric (NaN or infinity)"));
    }
    let text = format!("{x:.14e}");
    let value: BigDecimal = text.parse().map_err(|_| EvalError::OutOfRange("numeric"))?;
    // %g drops trailing fraction zeros but keeps an integer's digits.
    let value = value.normalized();
    Ok(if value.fractional_digit_count() < 0 {
        value.with_scale(0)
    } else {
        value
    })
}

/// `numeric(precision, scale)` typmod coercion: round to `scale`, then
/// refuse more than `precision - scale` integer digits.
pub(super) fn constrain(
    x: &BigDecimal,
    precision: u32,
    scale: u32,
) -> Result<BigDecimal, EvalError> {
    let rounded = x.with_scale_round(i64::from(scale), RoundingMode::HalfUp);
    let (digits, _) = rounded.as_bigint_and_exponent();
    let integer_digits = digits.magnitude().to_string().len() as i64 - i64::from(scale);
    if digits.sign() != Sign::NoSign && integer_digits > i64::from(precision) - i64::from(scale) {
        return Err(EvalError::NumericOverflow { precision, scale });
    }
    Ok(rounded)
}

/// `select_div_scale`: from the estimated weight of the quotient in
/// PostgreSQL's base-10000 digits.
fn division_scale(a: &BigDecimal, b: &BigDecimal) -> i64 {
    let (w1, d1) = leading(a);
    let (w2, d2) = leading(b);
    let mut qweight = w1 - w2;
    if d1 <= d2 {
        qweight -= 1;
    }
    let display = |x: &BigDecimal| x.fractional_digit_count().max(0);
    (MIN_SIG_DIGITS - qweight * 4)
        .max(display(a))
        .max(display(b))
        .clamp(0, MAX_DISPLAY_SCALE)
}

/// The weight of the first non-zero base-10000 digit of `x` and that
/// digit (`(0, 0)` for zero), as `numeric.c` stores `x`.
fn leading(x: &BigDecimal) -> (i64, u32) {
    let (n, scale) = x.as_bigint_and_exponent();
    if n.sign() == Sign::NoSign {
        return (0, 0);
    }
    let digits = n.magnitude().to_string();
    // The decimal exponent of the leading digit, then its base-10000 group.
    let exponent = digits.len() as i64 - 1 - scale;
    let weight = exponent.div_euclid(4);
    let width = (exponent - weight * 4 + 1) as usize;
    let first: u32 = if digits.len() >= width {
        digits[..width].parse().expect("decimal digits")
    } else {
        let padded = format!("{digits:0<width$}");
        padded.parse().expect("decimal digits")
    };
    (weight, first)
}

fn ten_to(power: i64) -> BigInt {
    BigInt::from(10u32).pow(power as u32)
}

/// `n / d` rounded half away from zero.
fn rounded_quotient(n: &BigInt, d: &BigInt) -> BigInt {
    let (q, r) = (n / d, n % d);
    let twice: BigInt = r.magnitude().clone().into();
    let twice = twice * 2u32;
    let d_abs: BigInt = d.magnitude().clone().into();
    if twice >= d_abs {
        let away = if (n.sign() == Sign::Minus) != (d.sign() == Sign::Minus) {
            -1
        } else {
            1
        };
        q + away
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::numeric_text;

    fn n(text: &str) -> BigDecimal {
        text.parse().unwrap()
    }

    /// Each quotient as PostgreSQL 15 prints it.
    #[test]
    fn quotients_have_postgresqls_scale() {
        let cases = [
            ("3", "2", "1.5000000000000000"),
            ("1", "3.0", "0.33333333333333333333"),
            ("10", "4.0", "2.5000000000000000"),
            ("2", "3.0000", "0.66666666666666666667"),
            ("1234567", "7", "176366.714285714286"),
            ("-1", "3", "-0.33333333333333333333"),
            ("0", "5", "0.00000000000000000000"),
            ("123456789.12", "0.03", "4115226304.00000000"),
            ("1e-10", "3", "0.0000000000333333333333333333"),
            ("99999999", "0.0001", "999999990000.00000000"),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                numeric_text(&divide(&n(a), &n(b)).unwrap()),
                want,
                "{a} / {b}"
            );
        }
        assert_eq!(divide(&n("1"), &n("0.00")), Err(EvalError::DivisionByZero));
        assert_eq!(
            numeric_text(&remainder(&n("-7.5"), &n("2")).unwrap()),
            "-1.5"
        );
        assert_eq!(
            numeric_text(&remainder(&n("10"), &n("0.30")).unwrap()),
            "0.10"
        );
    }

    #[test]
    fn rounding_and_conversions_match_postgresql() {
        assert_eq!(numeric_text(&round(&n("-2.5"), 0)), "-3");
        assert_eq!(numeric_text(&round(&n("1.5"), 3)), "1.500");
        assert_eq!(numeric_text(&round(&n("1234.5"), -2)), "1200");
        assert_eq!(numeric_text(&from_float(0.1).unwrap()), "0.1");
        assert_eq!(
            numeric_text(&from_float(1.0 / 3.0).unwrap()),
            "0.333333333333333"
        );
        assert_eq!(
            numeric_text(&from_float(1e20).unwrap()),
            "100000000000000000000"
        );
        assert_eq!(
            numeric_text(&constrain(&n("123.456"), 5, 2).unwrap()),
            "123.46"
        );
        assert!(constrain(&n("1234.5"), 5, 2).is_err());
    }
}
