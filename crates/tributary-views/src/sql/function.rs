//! Planning of the scalar forms beyond operators: `CASE`, `COALESCE`,
//! `NULLIF`, casts and the scalar functions views evaluate. Each checks
//! its arguments' kinds as PostgreSQL resolves them and refuses what it
//! would resolve to an implementation views do not have.

use sqlparser::ast::{self, CastKind, DataType, ExactNumberInfo, Spanned, TimezoneInfo};

use super::{Kind, PlanError, Width};
use crate::datum::Datum;
use crate::expr::{BinaryOp, Cast, Expr, Function, Unit};

type Planned = Result<(Expr, Kind), PlanError>;

/// The kind all of `kinds` resolve to, and each expression coerced to it.
fn unify(parts: Vec<(Expr, Kind)>, what: &str, e: &ast::Expr) -> Planned {
    let kind = parts
        .iter()
        .try_fold(Kind::Unknown, |acc, (_, k)| acc.common(*k))
        .ok_or_else(|| {
            let kinds: Vec<String> = parts.iter().map(|(_, k)| format!("{k:?}")).collect();
            PlanError::new(format!(
                "{what} types {} cannot be matched",
                kinds.join(" and ")
            ))
            .with_detail_at(e.span())
        })?;
    let exprs: Vec<Expr> = parts.into_iter().map(|(x, k)| k.coerce(x, kind)).collect();
    // Returned as a COALESCE of the coerced parts; `case` unpacks them.
    Ok((Expr::Coalesce(exprs), kind))
}

/// `CASE [operand] WHEN … THEN … [ELSE …] END`, its parts planned.
pub(super) fn case(
    operand: Option<(Expr, Kind)>,
    whens: Vec<((Expr, Kind), (Expr, Kind))>,
    otherwise: Option<(Expr, Kind)>,
    e: &ast::Expr,
) -> Planned {
    let mut conditions = Vec::with_capacity(whens.len());
    let mut results = Vec::with_capacity(whens.len() + 1);
    for ((condition, ck), result) in whens {
        let condition = match &operand {
            // `CASE x WHEN v` is `CASE WHEN x = v`.
            Some((x, xk)) => {
                if xk.common(ck).is_none() && !comparable(*xk, ck) {
                    return Err(PlanError::new(format!(
                        "operator does not exist: {xk:?} = {ck:?}"
                    ))
                    .with_detail_at(e.span()));
                }
                Expr::binary(BinaryOp::Eq, x.clone(), condition)
            }
            None => {
                if !matches!(ck, Kind::Bool | Kind::Unknown) {
                    return Err(PlanError::new(format!(
                        "argument of CASE/WHEN must be type boolean, not {ck:?}"
                    ))
                    .with_detail_at(e.span()));
                }
                condition
            }
        };
        conditions.push(condition);
        results.push(result);
    }
    results.push(otherwise.unwrap_or((Expr::Literal(Datum::Null), Kind::Unknown)));
    let (Expr::Coalesce(mut values), kind) = unify(results, "CASE", e)? else {
        unreachable!("unify returns the coerced parts")
    };
    let otherwise = values.pop().expect("the ELSE value");
    Ok((
        Expr::Case {
            branches: conditions.into_iter().zip(values).collect(),
            otherwise: Box::new(otherwise),
        },
        kind,
    ))
}

/// Whether `=` is defined between the two kinds.
pub(super) fn comparable(a: Kind, b: Kind) -> bool {
    a == b || a == Kind::Unknown || b == Kind::Unknown || (a.is_numeric() && b.is_numeric())
}

/// A scalar function call, its arguments planned.
pub(super) fn call(name: &str, args: Vec<(Expr, Kind)>, e: &ast::Expr) -> Planned {
    let refuse = |message: String| Err(PlanError::new(message).with_detail_at(e.span()));
    let kinds: Vec<Kind> = args.iter().map(|(_, k)| *k).collect();
    let signature = format!(
        "{name}({})",
        kinds
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let no_such = || {
        refuse(format!("function {signature} does not exist")).map_err(|e: PlanError| {
            e.with_hint(
                "views evaluate lower, upper, length, abs, round, date_trunc, coalesce and nullif",
            )
        })
    };
    let mut args = args.into_iter();
    Ok(match (name, kinds.as_slice()) {
        ("coalesce", [_, ..]) => {
            let parts: Vec<_> = args.collect();
            unify(parts, "COALESCE", e)?
        }
        ("nullif", [a, b]) => {
            if !comparable(*a, *b) {
                return refuse(format!("operator does not exist: {a:?} = {b:?}"));
            }
            let (x, y) = (take(&mut args).0, take(&mut args).0);
            (Expr::NullIf(Box::new(x), Box::new(y)), *a)
        }
        ("lower" | "upper", [Kind::Text | Kind::Unknown]) => {
            let f = if name == "lower" {
                Function::Lower
            } else {
                Function::Upper
            };
            (Expr::Call(f, vec![take(&mut args).0]), Kind::Text)
        }
        ("length" | "char_length" | "character_length", [Kind::Text | Kind::Unknown]) => (
            Expr::Call(Function::Length, vec![take(&mut args).0]),
            Kind::Int(Width::I32),
        ),
        ("abs", [k @ (Kind::Int(_) | Kind::Numeric | Kind::Float)]) => {
            let bits = match k {
                Kind::Int(Width::I16) => 16,
                Kind::Int(Width::I32) => 32,
                _ => 64,
            };
            (Expr::Call(Function::Abs(bits), vec![take(&mut args).0]), *k)
        }
        // round(integer) resolves to round(double precision), as in
        // PostgreSQL (float8 is the preferred numeric type).
        ("round", [k @ (Kind::Int(_) | Kind::Float)]) => {
            let x = k.coerce(take(&mut args).0, Kind::Float);
            (Expr::Call(Function::RoundFloat, vec![x]), Kind::Float)
        }
        ("round", [Kind::Numeric]) => (
            Expr::Call(Function::Round, vec![take(&mut args).0]),
            Kind::Numeric,
        ),
        ("round", [k @ (Kind::Int(_) | Kind::Numeric), Kind::Int(Width::I16 | Width::I32)]) => {
            let x = k.coerce(take(&mut args).0, Kind::Numeric);
            (
                Expr::Call(Function::Round, vec![x, take(&mut args).0]),
                Kind::Numeric,
            )
        }
        ("date_trunc", [Kind::Text, k @ (Kind::Timestamp | Kind::TimestampTz), rest @ ..]) => {
            let Expr::Literal(Datum::Text(field)) = take(&mut args).0 else {
                return refuse("date_trunc's unit must be a literal such as 'day'".into());
            };
            let Some(unit) = Unit::parse(&field) else {
                return refuse(format!("unit \"{field}\" not recognized for type {k:?}"));
            };
            let x = take(&mut args).0;
            match (k, rest) {
                (Kind::Timestamp, []) => {}
                (Kind::TimestampTz, [Kind::Text]) => {
                    let Expr::Literal(Datum::Text(zone)) = take(&mut args).0 else {
                        return refuse("date_trunc's time zone must be a literal".into());
                    };
                    if !["utc", "etc/utc", "gmt", "z"].contains(&zone.to_lowercase().as_str()) {
                        return Err(PlanError::unsupported(
                            &format!("date_trunc in time zone \"{zone}\""),
                            e.span(),
                        )
                        .with_hint("views truncate timestamptz in UTC only: pass 'UTC'"));
                    }
                }
                (Kind::TimestampTz, []) => {
                    return Err(PlanError::unsupported(
                        "date_trunc of a timestamptz in the session time zone",
                        e.span(),
                    )
                    .with_hint(
                        "a view has no session time zone: write date_trunc('day', x, 'UTC')",
                    ))
                }
                _ => return no_such(),
            }
            (Expr::Call(Function::DateTrunc(unit), vec![x]), *k)
        }
        ("date_trunc", [Kind::Text, Kind::Date, ..]) => {
            return Err(PlanError::unsupported(
                "date_trunc of a date (PostgreSQL truncates it as a timestamptz in the session \
                 time zone)",
                e.span(),
            )
            .with_hint("truncate it as a timestamp: date_trunc('month', d::timestamp)"))
        }
        _ => return no_such(),
    })
}

/// The next planned argument (the caller matched the arity).
fn take(args: &mut std::vec::IntoIter<(Expr, Kind)>) -> (Expr, Kind) {
    args.next().expect("arity checked")
}

/// `CAST(x AS type)` / `x::type`, `x` planned.
pub(super) fn cast(
    (x, from): (Expr, Kind),
    kind: &CastKind,
    to: &DataType,
    e: &ast::Expr,
) -> Planned {
    if !matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
        return Err(PlanError::unsupported("TRY_CAST/SAFE_CAST", e.span()));
    }
    let Some((cast, target)) = target(to) else {
        return Err(
            PlanError::unsupported(&format!("a cast to {to}"), e.span()).with_hint(
                "views cast to smallint, integer, bigint, numeric[(p,s)], double precision, text, \
             boolean, date and timestamp",
            ),
        );
    };
    let allowed = match (from, target) {
        (Kind::Unknown, _) => true,
        (f, t) if f == t && !matches!(cast, Cast::Numeric(Some(_))) => {
            return Ok((x, target));
        }
        (Kind::Int(_) | Kind::Numeric | Kind::Float | Kind::Text, Kind::Int(_))
        | (Kind::Int(_) | Kind::Numeric | Kind::Float | Kind::Text, Kind::Numeric)
        | (Kind::Int(_) | Kind::Numeric | Kind::Float | Kind::Text, Kind::Float) => true,
        (Kind::Bool, Kind::Int(Width::I32)) | (Kind::Int(Width::I32) | Kind::Text, Kind::Bool) => {
            true
        }
        // timestamptz prints in the session's time zone, which a view has not.
        (Kind::TimestampTz | Kind::Unsupported, Kind::Text) => false,
        (_, Kind::Text) => true,
        (Kind::Timestamp, Kind::Date) | (Kind::Date, Kind::Timestamp) => true,
        _ => false,
    };
    if !allowed {
        return Err(PlanError::unsupported(
            &format!("a cast from {from:?} to {to}"),
            e.span(),
        ));
    }
    Ok((Expr::Cast(Box::new(x), cast), target))
}

/// The cast and kind a SQL type names, for the types views cast to.
fn target(to: &DataType) -> Option<(Cast, Kind)> {
    Some(match to {
        DataType::SmallInt(None) | DataType::Int2(None) => (Cast::Int(16), Kind::Int(Width::I16)),
        DataType::Int(None) | DataType::Integer(None) | DataType::Int4(None) => {
            (Cast::Int(32), Kind::Int(Width::I32))
        }
        DataType::BigInt(None) | DataType::Int8(None) => (Cast::Int(64), Kind::Int(Width::I64)),
        DataType::Numeric(info) | DataType::Decimal(info) => {
            let typmod = match info {
                ExactNumberInfo::None => None,
                ExactNumberInfo::Precision(p) => Some((*p, 0)),
                ExactNumberInfo::PrecisionAndScale(p, s) => Some((*p, u64::try_from(*s).ok()?)),
            };
            let typmod = match typmod {
                Some((p, s)) if (1..=1000).contains(&p) && s <= p => Some((p as u32, s as u32)),
                Some(_) => return None,
                None => None,
            };
            (Cast::Numeric(typmod), Kind::Numeric)
        }
        DataType::DoublePrecision | DataType::Float8 | DataType::Double(ExactNumberInfo::None) => {
            (Cast::Float, Kind::Float)
        }
        DataType::Text | DataType::Varchar(None) | DataType::CharacterVarying(None) => {
            (Cast::Text, Kind::Text)
        }
        DataType::Boolean | DataType::Bool => (Cast::Bool, Kind::Bool),
        DataType::Date => (Cast::Date, Kind::Date),
        DataType::Timestamp(None, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            (Cast::Timestamp, Kind::Timestamp)
        }
        _ => return None,
    })
}

/// PostgreSQL's name for an unaliased cast of a non-column: the type's.
pub(super) fn type_column_name(to: &DataType) -> Option<&'static str> {
    Some(match target(to)?.0 {
        Cast::Int(16) => "int2",
        Cast::Int(32) => "int4",
        Cast::Int(_) => "int8",
        Cast::Numeric(_) => "numeric",
        Cast::Float => "float8",
        Cast::Text => "text",
        Cast::Bool => "bool",
        Cast::Date => "date",
        Cast::Timestamp => "timestamp",
    })
}
