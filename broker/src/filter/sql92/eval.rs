//! Evaluation with Java's semantics (`ComparisonExpression`, `LogicExpression`,
//! `UnaryExpression` in `org.apache.rocketmq.filter.expression`):
//!
//! * A property is a string, or null when the message does not carry it.
//! * Three-valued logic: a comparison with null is null (unknown); `AND`/`OR`/`NOT` follow
//!   SQL's tables; only a result of exactly TRUE selects the message.
//! * `x = y`: null on both sides is TRUE (that is how IS NULL works); null on the left only is
//!   null; null on the right only is FALSE.
//! * Mixed types convert as Java's `__compare` does: an int literal against a property parses
//!   the property with `Integer.valueOf`, a long literal with `Long.valueOf`, a double with
//!   `Double.valueOf`; `>`/`<` between two strings parse both as doubles. A string that does not
//!   parse is an error, and an error anywhere makes the whole expression fail for that message
//!   (Java throws; the broker logs and skips the message). A boolean against a number is
//!   "less than" (so `=` is FALSE, `<>` TRUE).
//! * CONTAINS / STARTSWITH / ENDSWITH (and their NOT forms) are FALSE for null, for a
//!   non-string, and for an empty search string.

use std::cmp::Ordering;

use super::parser::{Expr, Literal, OrderOp, TextOp};

/// A non-null value during evaluation (null is `None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(&'a str),
}

impl<'a> Value<'a> {
    /// A literal's value; `None` for NULL.
    pub fn of_literal(literal: &'a Literal) -> Option<Value<'a>> {
        match literal {
            Literal::Null => None,
            Literal::Bool(b) => Some(Value::Bool(*b)),
            Literal::Int(v) => Some(Value::Int(*v)),
            Literal::Long(v) => Some(Value::Long(*v)),
            Literal::Double(v) => Some(Value::Double(*v)),
            Literal::Str(s) => Some(Value::Str(s)),
        }
    }
}

/// Why an expression could not be evaluated for one message (Java would have thrown).
#[derive(thiserror::Error, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalError {
    #[error("a property value is not a valid {target}")]
    NumberFormat { target: &'static str },
    #[error("a boolean cannot be compared with a string")]
    BooleanWithString,
    #[error("a condition did not evaluate to a boolean")]
    NotBoolean,
}

/// Looks a property up by name.
pub type Properties<'p, 'a> = &'p dyn Fn(&str) -> Option<&'a str>;

/// Evaluates `expr`; `Ok(None)` is null.
pub fn evaluate<'a>(
    expr: &'a Expr,
    properties: Properties<'_, 'a>,
) -> Result<Option<Value<'a>>, EvalError> {
    Ok(match expr {
        Expr::Literal(l) => Value::of_literal(l),
        Expr::Property(name) => properties(name).map(Value::Str),
        Expr::Negate(e) => match evaluate(e, properties)? {
            Some(Value::Int(v)) => Some(Value::Int(v.wrapping_neg())),
            Some(Value::Long(v)) => Some(Value::Long(v.wrapping_neg())),
            Some(Value::Double(v)) => Some(Value::Double(-v)),
            _ => None,
        },
        Expr::BoolCast(e) => match evaluate(e, properties)? {
            None => None,
            Some(Value::Bool(b)) => Some(Value::Bool(b)),
            Some(_) => Some(Value::Bool(false)),
        },
        Expr::Not(e) => condition(e, properties)?.map(|b| Value::Bool(!b)),
        Expr::And(terms) => {
            let mut saw_null = false;
            for term in terms {
                match condition(term, properties)? {
                    Some(false) => return Ok(Some(Value::Bool(false))),
                    Some(true) => {}
                    None => saw_null = true,
                }
            }
            (!saw_null).then_some(Value::Bool(true))
        }
        Expr::Or(terms) => {
            let mut saw_null = false;
            for term in terms {
                match condition(term, properties)? {
                    Some(true) => return Ok(Some(Value::Bool(true))),
                    Some(false) => {}
                    None => saw_null = true,
                }
            }
            (!saw_null).then_some(Value::Bool(false))
        }
        Expr::Equal(left, right) => {
            let lv = evaluate(left, properties)?;
            let rv = evaluate(right, properties)?;
            match (lv, rv) {
                (None, None) => Some(Value::Bool(true)),
                (None, Some(_)) => None,
                (Some(_), None) => Some(Value::Bool(false)),
                (Some(l), Some(r)) => Some(Value::Bool(compare(l, r)? == Ordering::Equal)),
            }
        }
        Expr::Order(op, left, right) => {
            let Some(lv) = evaluate(left, properties)? else {
                return Ok(None);
            };
            let Some(rv) = evaluate(right, properties)? else {
                return Ok(None);
            };
            let ordering = match (lv, rv) {
                (Value::Str(l), Value::Str(r)) => {
                    java_double_cmp(parse_double(l)?, parse_double(r)?)
                }
                (l, r) => compare(l, r)?,
            };
            Some(Value::Bool(match op {
                OrderOp::Gt => ordering.is_gt(),
                OrderOp::Ge => ordering.is_ge(),
                OrderOp::Lt => ordering.is_lt(),
                OrderOp::Le => ordering.is_le(),
            }))
        }
        Expr::In {
            property,
            values,
            is_negated,
        } => properties(property).map(|v| Value::Bool(values.contains(v) ^ is_negated)),
        Expr::Text {
            op,
            is_negated,
            operand,
            search,
        } => {
            if search.is_empty() {
                return Ok(Some(Value::Bool(false)));
            }
            Some(Value::Bool(match evaluate(operand, properties)? {
                Some(Value::Str(s)) => {
                    let found = match op {
                        TextOp::Contains => s.contains(search.as_str()),
                        TextOp::StartsWith => s.starts_with(search.as_str()),
                        TextOp::EndsWith => s.ends_with(search.as_str()),
                    };
                    found ^ is_negated
                }
                _ => false,
            }))
        }
    })
}

/// A sub-condition: a boolean or null (anything else is Java's ClassCastException).
fn condition<'a>(
    expr: &'a Expr,
    properties: Properties<'_, 'a>,
) -> Result<Option<bool>, EvalError> {
    match evaluate(expr, properties)? {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(EvalError::NotBoolean),
    }
}

/// Java's `ComparisonExpression.__compare` with string conversion on: same types compare
/// naturally; a number meets a number by widening; a string meets a number or boolean by
/// parsing the string as that type; other pairs are "less".
pub fn compare(lv: Value<'_>, rv: Value<'_>) -> Result<Ordering, EvalError> {
    use Value::{Bool, Double, Int, Long, Str};
    Ok(match (lv, rv) {
        (Bool(a), Bool(b)) => a.cmp(&b),
        (Int(a), Int(b)) => a.cmp(&b),
        (Long(a), Long(b)) => a.cmp(&b),
        (Double(a), Double(b)) => java_double_cmp(a, b),
        // Only equality reaches here with two strings (ordering parses them as doubles).
        (Str(a), Str(b)) => a.cmp(b),
        // Java casts the Boolean to String here and throws.
        (Bool(_), Str(_)) => return Err(EvalError::BooleanWithString),
        (Bool(_), _) | (Int(_) | Long(_) | Double(_), Bool(_)) => Ordering::Less,
        (Int(a), Long(b)) => i64::from(a).cmp(&b),
        (Int(a), Double(b)) => java_double_cmp(f64::from(a), b),
        (Int(a), Str(b)) => a.cmp(&parse_int(b)?),
        (Long(a), Int(b)) => a.cmp(&i64::from(b)),
        (Long(a), Double(b)) => java_double_cmp(long_to_double(a), b),
        (Long(a), Str(b)) => a.cmp(&parse_long(b)?),
        (Double(a), Int(b)) => java_double_cmp(a, f64::from(b)),
        (Double(a), Long(b)) => java_double_cmp(a, long_to_double(b)),
        (Double(a), Str(b)) => java_double_cmp(a, parse_double(b)?),
        (Str(a), Bool(b)) => a.eq_ignore_ascii_case("true").cmp(&b),
        (Str(a), Int(b)) => parse_int(a)?.cmp(&b),
        (Str(a), Long(b)) => parse_long(a)?.cmp(&b),
        (Str(a), Double(b)) => java_double_cmp(parse_double(a)?, b),
    })
}

/// Java's `(double) long` (round to nearest).
#[allow(clippy::cast_precision_loss)]
fn long_to_double(v: i64) -> f64 {
    v as f64
}

/// Java's `Double.compare`: -0.0 < 0.0, NaN equals NaN and is above everything.
fn java_double_cmp(a: f64, b: f64) -> Ordering {
    if a < b {
        return Ordering::Less;
    }
    if a > b {
        return Ordering::Greater;
    }
    let bits = |x: f64| {
        let x = if x.is_nan() { f64::NAN } else { x };
        i64::from_ne_bytes(x.to_bits().to_ne_bytes())
    };
    bits(a).cmp(&bits(b))
}

/// `Integer.valueOf(String)`: optional sign, ASCII digits, no blanks.
fn parse_int(s: &str) -> Result<i32, EvalError> {
    s.parse()
        .map_err(|_| EvalError::NumberFormat { target: "int" })
}

/// `Long.valueOf(String)`.
fn parse_long(s: &str) -> Result<i64, EvalError> {
    s.parse()
        .map_err(|_| EvalError::NumberFormat { target: "long" })
}

/// `Double.valueOf(String)`: surrounding blanks, a sign, `NaN`, `Infinity`, or decimal digits
/// with an optional point and exponent and an optional `f`/`d` suffix. (Java's hexadecimal
/// floats are not accepted.)
pub fn parse_double(s: &str) -> Result<f64, EvalError> {
    const ERROR: EvalError = EvalError::NumberFormat { target: "double" };
    let t = s.trim_matches(|c: char| c <= ' ');
    let (is_negative, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let magnitude = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let body = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
            if !is_decimal_float(body) {
                return Err(ERROR);
            }
            body.parse::<f64>().map_err(|_| ERROR)?
        }
    };
    Ok(if is_negative { -magnitude } else { magnitude })
}

/// `digits [. digits] [(e|E) [+|-] digits]` with at least one mantissa digit.
fn is_decimal_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
        None => (s, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let is_mantissa_ok = all_digits(int_part)
        && all_digits(frac_part)
        && !(int_part.is_empty() && frac_part.is_empty());
    let is_exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            !digits.is_empty() && all_digits(digits)
        }
    };
    is_mantissa_ok && is_exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_parsing() {
        assert_eq!(parse_double(" 1.5 "), Ok(1.5));
        assert_eq!(parse_double("-2"), Ok(-2.0));
        assert_eq!(parse_double("+.5"), Ok(0.5));
        assert_eq!(parse_double("5."), Ok(5.0));
        assert_eq!(parse_double("1e3"), Ok(1000.0));
        assert_eq!(parse_double("2.5f"), Ok(2.5));
        assert_eq!(parse_double("7D"), Ok(7.0));
        assert_eq!(parse_double("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_double("NaN").is_ok_and(f64::is_nan));
        for bad in [
            "", ".", "e5", "1e", "1e+", "inf", "nan", "1,5", "0x10", "abc", "1.2.3", "--1",
        ] {
            assert!(parse_double(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn java_comparisons_convert_like_compare() {
        use Value::{Bool, Double, Int, Long, Str};
        assert_eq!(compare(Str("4"), Int(3)), Ok(Ordering::Greater));
        assert_eq!(compare(Int(3), Str("3")), Ok(Ordering::Equal));
        assert!(compare(Str("4.5"), Int(3)).is_err());
        assert!(compare(Str("3000000000"), Int(3)).is_err());
        assert_eq!(
            compare(Str("3000000000"), Long(3_000_000_000)),
            Ok(Ordering::Equal)
        );
        assert_eq!(compare(Str("4.5"), Double(4.5)), Ok(Ordering::Equal));
        assert_eq!(compare(Int(1), Double(1.5)), Ok(Ordering::Less));
        assert_eq!(compare(Long(2), Int(2)), Ok(Ordering::Equal));
        assert_eq!(compare(Str("TRUE"), Bool(true)), Ok(Ordering::Equal));
        assert_eq!(compare(Str("yes"), Bool(false)), Ok(Ordering::Equal));
        assert!(compare(Bool(true), Str("true")).is_err());
        assert_eq!(compare(Bool(true), Int(1)), Ok(Ordering::Less));
        assert_eq!(compare(Int(1), Bool(true)), Ok(Ordering::Less));
        assert_eq!(java_double_cmp(-0.0, 0.0), Ordering::Less);
        assert_eq!(java_double_cmp(f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(java_double_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
    }
}
