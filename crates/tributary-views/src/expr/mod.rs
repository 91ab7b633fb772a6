//! Scalar expressions over one row, with PostgreSQL's semantics: NULL in,
//! NULL out for arithmetic and comparison; three-valued AND/OR/NOT; exact
//! numeric arithmetic; integer overflow is an error, never a wrapped value.

mod cast;
mod function;
mod numeric;

use std::cmp::Ordering;

use bigdecimal::BigDecimal;
use serde::{Deserialize, Serialize};

pub use self::cast::Cast;
pub use self::function::{Function, Unit};
use crate::datum::{Datum, Float};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expr {
    /// The input row's column at this index.
    Column(usize),
    Literal(Datum),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    IsNull(Box<Expr>),
    /// An integer of this many bits: PostgreSQL's `smallint`/`integer`
    /// arithmetic fails past its width rather than widening.
    InRange(u8, Box<Expr>),
    /// The value as exact `numeric` (an integer widened): a UNION column
    /// of integers and numerics is numeric, as PostgreSQL resolves it, so
    /// its values compare, group and add as one kind.
    ToNumeric(Box<Expr>),
    /// `CASE WHEN c THEN v … ELSE otherwise END`: the value of the first
    /// branch whose condition is TRUE; only that branch is evaluated, so
    /// `CASE WHEN x = 0 THEN NULL ELSE y / x END` never divides by zero.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Box<Expr>,
    },
    /// The first non-NULL argument; later ones are not evaluated.
    Coalesce(Vec<Expr>),
    /// NULL when the two are equal, else the first.
    NullIf(Box<Expr>, Box<Expr>),
    Cast(Box<Expr>, Cast),
    Call(Function, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Integers truncate toward zero; numerics keep PostgreSQL's scale.
    Div,
    /// The remainder of truncating division: the dividend's sign.
    Mod,
    /// Text `||` text.
    Concat,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// Why an expression has no value for a row (PostgreSQL raises these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("bigint out of range")]
    IntegerOverflow,
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("operator does not exist: {0}")]
    TypeMismatch(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("value out of range: {0}")]
    FloatRange(&'static str),
    #[error("numeric field overflow (precision {precision}, scale {scale})")]
    NumericOverflow { precision: u32, scale: u32 },
    #[error("invalid input syntax for type {0}: \"{1}\"")]
    InvalidText(&'static str, String),
}

impl Expr {
    pub fn column(index: usize) -> Self {
        Expr::Column(index)
    }

    pub fn binary(op: BinaryOp, left: Expr, right: Expr) -> Self {
        Expr::Binary(op, Box::new(left), Box::new(right))
    }

    pub fn eval(&self, row: &[Datum]) -> Result<Datum, EvalError> {
        Ok(match self {
            Expr::Column(i) => row[*i].clone(),
            Expr::Literal(d) => d.clone(),
            Expr::Binary(op, l, r) => binary(*op, l.eval(row)?, r.eval(row)?)?,
            Expr::And(l, r) => match (truth(&l.eval(row)?)?, truth(&r.eval(row)?)?) {
                (Some(false), _) | (_, Some(false)) => Datum::Bool(false),
                (Some(true), Some(true)) => Datum::Bool(true),
                _ => Datum::Null,
            },
            Expr::Or(l, r) => match (truth(&l.eval(row)?)?, truth(&r.eval(row)?)?) {
                (Some(true), _) | (_, Some(true)) => Datum::Bool(true),
                (Some(false), Some(false)) => Datum::Bool(false),
                _ => Datum::Null,
            },
            Expr::Not(e) => match truth(&e.eval(row)?)? {
                Some(b) => Datum::Bool(!b),
                None => Datum::Null,
            },
            Expr::IsNull(e) => Datum::Bool(e.eval(row)?.is_null()),
            Expr::InRange(bits, e) => match e.eval(row)? {
                Datum::Int(i) => Datum::Int(cast::in_range(*bits, i)?),
                other => other,
            },
            Expr::ToNumeric(e) => match e.eval(row)? {
                Datum::Int(i) => Datum::Numeric(BigDecimal::from(i)),
                other => other,
            },
            Expr::Case {
                branches,
                otherwise,
            } => {
                for (condition, value) in branches {
                    if condition.holds(row)? {
                        return value.eval(row);
                    }
                }
                otherwise.eval(row)?
            }
            Expr::Coalesce(args) => {
                for arg in args {
                    let d = arg.eval(row)?;
                    if !d.is_null() {
                        return Ok(d);
                    }
                }
                Datum::Null
            }
            Expr::NullIf(a, b) => {
                let (a, b) = (a.eval(row)?, b.eval(row)?);
                if !a.is_null() && !b.is_null() && compare(&a, &b)? == Ordering::Equal {
                    Datum::Null
                } else {
                    a
                }
            }
            Expr::Cast(e, to) => to.apply(e.eval(row)?)?,
            Expr::Call(f, args) => {
                f.apply(args.iter().map(|a| a.eval(row)).collect::<Result<_, _>>()?)?
            }
        })
    }

    /// Whether a row passes a WHERE clause with this predicate: only TRUE
    /// passes, NULL does not.
    pub fn holds(&self, row: &[Datum]) -> Result<bool, EvalError> {
        Ok(truth(&self.eval(row)?)? == Some(true))
    }
}

fn truth(d: &Datum) -> Result<Option<bool>, EvalError> {
    match d {
        Datum::Bool(b) => Ok(Some(*b)),
        Datum::Null => Ok(None),
        other => Err(EvalError::TypeMismatch(format!(
            "{other:?} is not a boolean"
        ))),
    }
}

fn binary(op: BinaryOp, l: Datum, r: Datum) -> Result<Datum, EvalError> {
    use BinaryOp::*;
    if l.is_null() || r.is_null() {
        return Ok(Datum::Null);
    }
    match op {
        Add | Sub | Mul | Div | Mod => arithmetic(op, l, r),
        Concat => match (l, r) {
            (Datum::Text(mut a), Datum::Text(b)) => {
                a.push_str(&b);
                Ok(Datum::Text(a))
            }
            (l, r) => Err(EvalError::TypeMismatch(format!("{l:?} || {r:?}"))),
        },
        Eq | NotEq | Lt | LtEq | Gt | GtEq => {
            let ordering = compare(&l, &r)?;
            Ok(Datum::Bool(match op {
                Eq => ordering == Ordering::Equal,
                NotEq => ordering != Ordering::Equal,
                Lt => ordering == Ordering::Less,
                LtEq => ordering != Ordering::Greater,
                Gt => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            }))
        }
    }
}

/// Two non-NULL values of comparable types, integers and numerics mixed
/// as PostgreSQL promotes them.
fn compare(l: &Datum, r: &Datum) -> Result<Ordering, EvalError> {
    match (l, r) {
        (Datum::Int(a), Datum::Numeric(b)) => Ok(BigDecimal::from(*a).cmp(b)),
        (Datum::Numeric(a), Datum::Int(b)) => Ok(a.cmp(&BigDecimal::from(*b))),
        (Datum::Int(a), Datum::Float(b)) => Ok(Float::new(*a as f64).cmp(b)),
        (Datum::Float(a), Datum::Int(b)) => Ok(a.cmp(&Float::new(*b as f64))),
        (Datum::Float(_), Datum::Numeric(_)) | (Datum::Numeric(_), Datum::Float(_)) => {
            let (a, b) = (cast::to_float(l.clone())?, cast::to_float(r.clone())?);
            Ok(Float::new(a).cmp(&Float::new(b)))
        }
        _ if std::mem::discriminant(l) == std::mem::discriminant(r) => Ok(l.cmp(r)),
        _ => Err(EvalError::TypeMismatch(format!(
            "{l:?} compared with {r:?}"
        ))),
    }
}

fn arithmetic(op: BinaryOp, l: Datum, r: Datum) -> Result<Datum, EvalError> {
    use BinaryOp::*;
    Ok(match (l, r) {
        (Datum::Int(a), Datum::Int(b)) => Datum::Int(
            match op {
                Add => a.checked_add(b),
                Sub => a.checked_sub(b),
                Mul => a.checked_mul(b),
                _ if b == 0 => return Err(EvalError::DivisionByZero),
                Mod => Some(a.wrapping_rem(b)),
                _ => a.checked_div(b),
            }
            .ok_or(EvalError::IntegerOverflow)?,
        ),
        (l @ (Datum::Numeric(_) | Datum::Int(_)), r @ (Datum::Numeric(_) | Datum::Int(_))) => {
            let (a, b) = (numeric(l), numeric(r));
            Datum::Numeric(match op {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                Mod => numeric::remainder(&a, &b)?,
                _ => numeric::divide(&a, &b)?,
            })
        }
        // A float with an integer or numeric: the other converts to
        // double precision, as PostgreSQL's implicit casts do.
        (l @ (Datum::Float(_) | Datum::Int(_) | Datum::Numeric(_)), r)
            if is_number(&r) && op != Mod =>
        {
            let (a, b) = (cast::to_float(l)?, cast::to_float(r)?);
            Datum::Float(Float::new(float(op, a, b)?))
        }
        (l, r) => return Err(EvalError::TypeMismatch(format!("{l:?} {op:?} {r:?}"))),
    })
}

fn is_number(d: &Datum) -> bool {
    matches!(d, Datum::Float(_) | Datum::Int(_) | Datum::Numeric(_))
}

/// `float8pl`/`mi`/`mul`/`div`: overflow and underflow are errors, as is
/// dividing by zero.
fn float(op: BinaryOp, a: f64, b: f64) -> Result<f64, EvalError> {
    use BinaryOp::*;
    let result = match op {
        Add => a + b,
        Sub => a - b,
        Mul => a * b,
        _ if b == 0.0 && !a.is_nan() => return Err(EvalError::DivisionByZero),
        _ => a / b,
    };
    let finite_in = !a.is_infinite() && (op == Div || !b.is_infinite());
    if result.is_infinite() && finite_in {
        return Err(EvalError::FloatRange("overflow"));
    }
    let underflow = match op {
        Mul => result == 0.0 && a != 0.0 && b != 0.0,
        Div => result == 0.0 && a != 0.0 && !b.is_infinite(),
        _ => false,
    };
    if underflow {
        return Err(EvalError::FloatRange("underflow"));
    }
    Ok(result)
}

fn numeric(d: Datum) -> BigDecimal {
    match d {
        Datum::Int(i) => BigDecimal::from(i),
        Datum::Numeric(n) => n,
        _ => unreachable!("only integers and numerics reach here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(d: Datum) -> Expr {
        Expr::Literal(d)
    }

    #[test]
    fn null_semantics() {
        let null = || lit(Datum::Null);
        let t = || lit(Datum::Bool(true));
        let f = || lit(Datum::Bool(false));
        let and = |a, b| Expr::And(Box::new(a), Box::new(b));
        let or = |a, b| Expr::Or(Box::new(a), Box::new(b));
        assert_eq!(and(null(), f()).eval(&[]), Ok(Datum::Bool(false)));
        assert_eq!(and(null(), t()).eval(&[]), Ok(Datum::Null));
        assert_eq!(or(null(), t()).eval(&[]), Ok(Datum::Bool(true)));
        assert_eq!(or(null(), f()).eval(&[]), Ok(Datum::Null));
        let eq = Expr::binary(BinaryOp::Eq, null(), null());
        assert_eq!(eq.eval(&[]), Ok(Datum::Null));
        assert_eq!(eq.holds(&[]), Ok(false));
        let add = Expr::binary(BinaryOp::Add, lit(Datum::Int(1)), null());
        assert_eq!(add.eval(&[]), Ok(Datum::Null));
    }

    #[test]
    fn arithmetic_is_exact_and_checked() {
        let n = |t: &str| Datum::Numeric(t.parse().unwrap());
        let mul = Expr::binary(BinaryOp::Mul, Expr::column(0), lit(Datum::Int(2)));
        assert_eq!(mul.eval(&[n("0.10")]).unwrap().to_string(), "0.20");
        let add = Expr::binary(BinaryOp::Add, Expr::column(0), Expr::column(1));
        assert_eq!(add.eval(&[n("0.1"), n("0.2")]).unwrap().to_string(), "0.3");
        let big = Expr::binary(BinaryOp::Add, lit(Datum::Int(i64::MAX)), lit(Datum::Int(1)));
        assert_eq!(big.eval(&[]), Err(EvalError::IntegerOverflow));
        let cmp = Expr::binary(BinaryOp::Lt, lit(Datum::Int(2)), lit(n("2.5")));
        assert_eq!(cmp.eval(&[]), Ok(Datum::Bool(true)));
    }
}
