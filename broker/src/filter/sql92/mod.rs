//! RocketMQ's SQL92 message filter (`expressionType = SQL92`): a condition over a message's
//! properties, e.g. `a BETWEEN 3 AND 5 AND TAGS IN ('x', 'y')`, compiled once per subscription
//! and evaluated against each candidate record of a pull.
//!
//! The language is the subset of JMS selectors RocketMQ 5 accepts (`filter/.../SelectorParser.jj`
//! in apache/rocketmq): property names; string (`'it''s'`), integer (long), decimal (double),
//! TRUE/FALSE and NULL literals; `= <> > >= < <=`; AND, OR, NOT; parentheses; [NOT] BETWEEN;
//! [NOT] IN; IS [NOT] NULL; [NOT] CONTAINS / STARTSWITH / ENDSWITH. `lexer` makes tokens,
//! `parser` builds the tree and makes Java's build-time checks, `eval` runs it with Java's
//! conversions and three-valued logic (its module doc lists the rules).
//!
//! Invariants: compiling and evaluating never panic on any input; the text is at most
//! `EXPRESSION_LENGTH_MAX` bytes and the tree at most `NESTING_DEPTH_MAX` deep, so the
//! recursion of both is bounded.
//!
//! Where Petrel differs from Java, on purpose: text after a complete expression is an error
//! (Java silently ignores it, so `a = 1 b` filtered by `a = 1` alone); a floating-point literal
//! of zero (`0.0`) is accepted (Java refuses literals below `Double.MIN_VALUE`); a `--`
//! comment may end the text without a newline; numbers in property values are ASCII only.

mod eval;
mod lexer;
mod parser;

use std::fmt;

pub use eval::{EvalError, Value};

/// Longest expression accepted, in bytes (Java has no limit; this bounds parse time/memory).
pub const EXPRESSION_LENGTH_MAX: usize = 16 * 1024;
/// Deepest nesting of parentheses / prefix operators, and deepest expression tree.
pub const NESTING_DEPTH_MAX: usize = 64;

/// An expression that does not compile. `position` counts characters from 0.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
#[error("invalid SQL92 expression at character {position}: {message}")]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl ParseError {
    fn at(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

/// A compiled SQL92 filter. Immutable; shared (`Rc`) by the subscriptions of one shard.
/// Two filters are equal when their source texts are.
pub struct Sql92Filter {
    source: String,
    expr: parser::Expr,
}

impl Sql92Filter {
    /// Compiles `text`. Errors say what was expected and where.
    pub fn compile(text: &str) -> Result<Self, ParseError> {
        if text.len() > EXPRESSION_LENGTH_MAX {
            return Err(ParseError::at(
                0,
                format!(
                    "the expression is {} bytes long; at most {EXPRESSION_LENGTH_MAX} are accepted",
                    text.len()
                ),
            ));
        }
        let expr = parser::parse(text)?;
        Ok(Sql92Filter {
            source: text.to_string(),
            expr,
        })
    }

    /// The text this filter was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's value for one message; `Ok(None)` is null (unknown).
    pub fn evaluate<'a>(
        &'a self,
        properties: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<Value<'a>>, EvalError> {
        eval::evaluate(&self.expr, properties)
    }

    /// True when the expression is exactly TRUE for a message with these properties (null,
    /// FALSE and evaluation errors all skip the message, as in Java's ExpressionMessageFilter).
    pub fn matches<'a>(&'a self, properties: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        matches!(self.evaluate(properties), Ok(Some(Value::Bool(true))))
    }

    /// [`Self::matches`] over a stored properties string (REMOTING.md §4.4).
    pub fn matches_properties<'a>(&'a self, properties: &'a str) -> bool {
        self.matches(&|name| engine::properties::get(properties, name))
    }
}

impl PartialEq for Sql92Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Sql92Filter {}

impl fmt::Debug for Sql92Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sql92Filter").field(&self.source).finish()
    }
}

#[cfg(test)]
mod tests;
