//! View values in PostgreSQL's wire formats: text (what psql prints; the
//! datum's own `Display`, which is PostgreSQL's output format) and binary
//! (what tokio-postgres asks for), so a driver decodes them into its usual
//! types.
//!
//! The binary forms are written here rather than through postgres-types'
//! own impls because a view column's values are one [`Datum`] enum, and a
//! `numeric` column may hold an integer datum (`sum(bigint)` while it fits):
//! the column's declared type decides the encoding.

use std::error::Error;

use bigdecimal::BigDecimal;
use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};
use tributary_views::sql::{Kind, Width};
use tributary_views::Datum;

type EncodeResult = Result<IsNull, Box<dyn Error + Sync + Send>>;

/// The PostgreSQL type a column of this kind is sent as.
pub(crate) fn pg_type(kind: Kind) -> Type {
    match kind {
        Kind::Bool => Type::BOOL,
        Kind::Int(Width::I16) => Type::INT2,
        Kind::Int(Width::I32) => Type::INT4,
        Kind::Int(Width::I64) => Type::INT8,
        Kind::Numeric => Type::NUMERIC,
        Kind::Float => Type::FLOAT8,
        Kind::Text | Kind::Unknown | Kind::Unsupported => Type::TEXT,
        Kind::Date => Type::DATE,
        Kind::Time => Type::TIME,
        Kind::Timestamp => Type::TIMESTAMP,
        Kind::TimestampTz => Type::TIMESTAMPTZ,
        Kind::Uuid => Type::UUID,
        Kind::Bytes => Type::BYTEA,
    }
}

/// The name `format_type` gives a column of this kind (psql's `\d`).
pub(crate) fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "boolean",
        Kind::Int(Width::I16) => "smallint",
        Kind::Int(Width::I32) => "integer",
        Kind::Int(Width::I64) => "bigint",
        Kind::Numeric => "numeric",
        Kind::Float => "double precision",
        Kind::Text | Kind::Unknown | Kind::Unsupported => "text",
        Kind::Date => "date",
        Kind::Time => "time without time zone",
        Kind::Timestamp => "timestamp without time zone",
        Kind::TimestampTz => "timestamp with time zone",
        Kind::Uuid => "uuid",
        Kind::Bytes => "bytea",
    }
}

/// One value to send, encoded as its column's type.
#[derive(Debug)]
pub(crate) struct Cell<'a>(pub(crate) &'a Datum);

/// Days and microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl ToSql for Cell<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> EncodeResult {
        let mismatch = || format!("cannot send {:?} as {ty}", self.0).into();
        match (self.0, ty) {
            (Datum::Null, _) => return Ok(IsNull::Yes),
            (Datum::Bool(b), &Type::BOOL) => out.put_u8(u8::from(*b)),
            (Datum::Int(i), &Type::INT2) => out.put_i16(i16::try_from(*i)?),
            (Datum::Int(i), &Type::INT4) => out.put_i32(i32::try_from(*i)?),
            (Datum::Int(i), &Type::INT8) => out.put_i64(*i),
            (Datum::Int(i), &Type::FLOAT8) => out.put_f64(*i as f64),
            (Datum::Int(i), &Type::NUMERIC) => numeric(&BigDecimal::from(*i), out),
            (Datum::Numeric(n), &Type::NUMERIC) => numeric(n, out),
            (Datum::Float(f), &Type::FLOAT8) => out.put_f64(f.get()),
            (Datum::Text(s), &Type::TEXT) => out.put_slice(s.as_bytes()),
            (Datum::Date(d), &Type::DATE) => out.put_i32(match *d {
                i32::MIN | i32::MAX => *d,
                d => d - PG_EPOCH_DAYS,
            }),
            (Datum::Time(us), &Type::TIME) => out.put_i64(*us),
            (Datum::Timestamp(us), &Type::TIMESTAMP)
            | (Datum::TimestampTz(us), &Type::TIMESTAMPTZ) => out.put_i64(match *us {
                i64::MIN | i64::MAX => *us,
                us => us - PG_EPOCH_US,
            }),
            (Datum::Uuid(bytes), &Type::UUID) => out.put_slice(bytes),
            (Datum::Bytes(bytes), &Type::BYTEA) => out.put_slice(bytes),
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for Cell<'_> {
    fn to_sql_text(&self, _: &Type, out: &mut BytesMut, _: &FormatOptions) -> EncodeResult {
        if self.0.is_null() {
            return Ok(IsNull::Yes);
        }
        use std::fmt::Write;
        write!(out, "{}", self.0)?;
        Ok(IsNull::No)
    }
}

/// PostgreSQL's binary `numeric`: base-10000 digits with a weight, a sign
/// and the display scale.
fn numeric(n: &BigDecimal, out: &mut BytesMut) {
    let (int, scale) = n.as_bigint_and_exponent();
    let (int, scale) = if scale < 0 {
        (int * num_bigint_pow10(-scale), 0)
    } else {
        (int, scale)
    };
    let negative = int.sign() == bigdecimal::num_bigint::Sign::Minus;
    let digits = int.magnitude().to_string();
    let scale = scale as usize;
    // Pad so the integer part has at least one digit.
    let digits = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let lead = (4 - whole.len() % 4) % 4;
    let whole = format!("{}{whole}", "0".repeat(lead));
    let trail = (4 - fraction.len() % 4) % 4;
    let fraction = format!("{fraction}{}", "0".repeat(trail));
    let mut groups: Vec<i16> = whole
        .as_bytes()
        .chunks(4)
        .chain(fraction.as_bytes().chunks(4))
        .map(|c| std::str::from_utf8(c).map_or(0, |s| s.parse().unwrap_or(0)))
        .collect();
    let mut weight = (whole.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(scale as u16);
    for g in groups {
        out.put_i16(g);
    }
}

fn num_bigint_pow10(exp: i64) -> bigdecimal::num_bigint::BigInt {
    bigdecimal::num_bigint::BigInt::from(10u8).pow(exp as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes PostgreSQL itself sends (`SELECT x::numeric` in binary).
    #[test]
    fn numeric_binary_matches_postgresql() {
        let cases: [(&str, &[i16], i16, u16, u16); 6] = [
            ("0", &[], 0, 0, 0),
            ("12345.67", &[1, 2345, 6700], 1, 0, 2),
            ("-0.0001", &[1], -1, 0x4000, 4),
            ("10000", &[1], 1, 0, 0),
            ("0.50", &[5000], -1, 0, 2),
            ("123456789012.345", &[1234, 5678, 9012, 3450], 2, 0, 3),
        ];
        for (text, digits, weight, sign, scale) in cases {
            let mut out = BytesMut::new();
            numeric(&text.parse().unwrap(), &mut out);
            let mut want = BytesMut::new();
            want.put_i16(digits.len() as i16);
            want.put_i16(weight);
            want.put_u16(sign);
            want.put_u16(scale);
            digits.iter().for_each(|d| want.put_i16(*d));
            assert_eq!(out, want, "{text}");
        }
    }
}
