//! Recursive-descent parser for RocketMQ's SQL92 subset, rule for rule as `SelectorParser.jj`
//! (lowest precedence first):
//!
//! ```text
//! or         := and (OR and)*
//! and        := equality (AND equality)*
//! equality   := comparison ('=' comparison | '<>' comparison | IS NULL | IS NOT NULL)*
//! comparison := unary ( ('>'|'>='|'<'|'<=') unary
//!                     | [NOT] (CONTAINS|STARTSWITH|ENDSWITH) string
//!                     | [NOT] BETWEEN unary AND unary
//!                     | [NOT] IN '(' string (',' string)* ')' )*
//! unary      := '+' unary | '-' unary | NOT unary | primary
//! primary    := string | decimal | float | TRUE | FALSE | NULL | identifier | '(' or ')'
//! ```
//!
//! Like Java, `NOT` as a prefix binds tighter than comparisons: `NOT a = 1` is `(NOT a) = 1`;
//! write `NOT (a = 1)`. The checks Java makes while building the tree are made here too, so an
//! expression Java refuses is refused: `=`/`<>` with a NULL literal, ordering (`>`, `BETWEEN`)
//! of a string or boolean literal or of a boolean expression, `BETWEEN` with a NULL bound or
//! with literal bounds in the wrong order, `IN` on anything but a property, an operand of
//! AND/OR/NOT (or the whole expression) that cannot be a boolean.
//!
//! Bounds: the caller limits the text's length; here the tree's depth and the nesting of
//! parentheses and prefix operators are limited by `NESTING_DEPTH_MAX`, so neither parsing
//! nor evaluating can exhaust the stack. AND/OR chains are flat (one node, many terms), so a
//! long chain of conditions costs no depth.

use std::collections::BTreeSet;
use std::fmt;

use super::eval::{compare, Value};
use super::lexer::{tokenize, Token, TokenKind};
use super::{ParseError, NESTING_DEPTH_MAX};

/// A literal as Java's `ConstantExpression` holds it: decimals that fit an `int` are `Int`.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderOp {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// The compiled expression tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// A message property (missing = null).
    Property(String),
    /// Unary minus: numbers are negated, anything else is null.
    Negate(Box<Expr>),
    /// A property used as a condition: null stays null, a boolean is itself, else false.
    BoolCast(Box<Expr>),
    Not(Box<Expr>),
    /// Terms evaluated left to right, stopping at the first false.
    And(Vec<Expr>),
    /// Terms evaluated left to right, stopping at the first true.
    Or(Vec<Expr>),
    /// Java's `doCreateEqual` (also IS NULL, with a NULL literal on the right).
    Equal(Box<Expr>, Box<Expr>),
    Order(OrderOp, Box<Expr>, Box<Expr>),
    In {
        property: String,
        values: BTreeSet<String>,
        is_negated: bool,
    },
    Text {
        op: TextOp,
        is_negated: bool,
        operand: Box<Expr>,
        search: String,
    },
}

impl Expr {
    /// Java's `BooleanExpression`: the nodes that can stand as a condition.
    fn is_boolean(&self) -> bool {
        match self {
            Expr::Literal(l) => matches!(l, Literal::Null | Literal::Bool(_)),
            Expr::Property(_) | Expr::Negate(_) => false,
            Expr::BoolCast(_)
            | Expr::Not(_)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::Equal(..)
            | Expr::Order(..)
            | Expr::In { .. }
            | Expr::Text { .. } => true,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Long(v) => write!(f, "{v}"),
            Literal::Double(v) => write!(f, "{v:?}"),
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op_name = |op: OrderOp| match op {
            OrderOp::Gt => ">",
            OrderOp::Ge => ">=",
            OrderOp::Lt => "<",
            OrderOp::Le => "<=",
        };
        let join = |f: &mut fmt::Formatter<'_>, terms: &[Expr], sep: &str| -> fmt::Result {
            f.write_str("(")?;
            for (i, t) in terms.iter().enumerate() {
                if i > 0 {
                    write!(f, " {sep} ")?;
                }
                write!(f, "{t}")?;
            }
            f.write_str(")")
        };
        match self {
            Expr::Literal(l) => write!(f, "{l}"),
            Expr::Property(name) => f.write_str(name),
            Expr::Negate(e) => write!(f, "(-{e})"),
            Expr::BoolCast(e) => write!(f, "{e}"),
            Expr::Not(e) => write!(f, "(NOT {e})"),
            Expr::And(terms) => join(f, terms, "AND"),
            Expr::Or(terms) => join(f, terms, "OR"),
            Expr::Equal(l, r) => write!(f, "({l} = {r})"),
            Expr::Order(op, l, r) => write!(f, "({l} {} {r})", op_name(*op)),
            Expr::In {
                property,
                values,
                is_negated,
            } => {
                let not = if *is_negated { "NOT " } else { "" };
                let list: Vec<String> = values
                    .iter()
                    .map(|v| Literal::Str(v.clone()).to_string())
                    .collect();
                write!(f, "({property} {not}IN ({}))", list.join(", "))
            }
            Expr::Text {
                op,
                is_negated,
                operand,
                search,
            } => {
                let not = if *is_negated { "NOT " } else { "" };
                let name = match op {
                    TextOp::Contains => "CONTAINS",
                    TextOp::StartsWith => "STARTSWITH",
                    TextOp::EndsWith => "ENDSWITH",
                };
                let search = Literal::Str(search.clone());
                write!(f, "({operand} {not}{name} {search})")
            }
        }
    }
}

/// A subtree and its depth (a leaf is 1).
struct Node {
    expr: Expr,
    depth: usize,
}

impl Node {
    fn leaf(expr: Expr) -> Node {
        Node { expr, depth: 1 }
    }
}

/// Parses a whole expression; anything after it is an error.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        index: 0,
        nesting: 0,
    };
    let node = parser.or_expression()?;
    let end = parser.peek();
    if end.kind != TokenKind::Eof {
        return Err(ParseError::at(
            end.position,
            format!(
                "unexpected {} after a complete expression",
                end.kind.describe()
            ),
        ));
    }
    Ok(as_boolean(node, 0)?.expr)
}

struct Parser {
    tokens: Vec<Token>,
    index: usize,
    /// Open parentheses and prefix operators around the current position.
    nesting: usize,
}

/// The last token is always `Eof`; peeking past it yields it again.
const EOF: Token = Token {
    kind: TokenKind::Eof,
    position: 0,
};

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens
            .get(self.index)
            .or_else(|| self.tokens.last())
            .unwrap_or(&EOF)
    }

    fn peek_kind_at(&self, ahead: usize) -> &TokenKind {
        self.tokens
            .get(self.index + ahead)
            .or_else(|| self.tokens.last())
            .map_or(&TokenKind::Eof, |t| &t.kind)
    }

    /// Takes the next token (never moves past `Eof`).
    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::Eof {
            self.index += 1;
        }
        token
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> Result<Token, ParseError> {
        let token = self.advance();
        if &token.kind == kind {
            Ok(token)
        } else {
            Err(ParseError::at(
                token.position,
                format!("expected {what} but found {}", token.kind.describe()),
            ))
        }
    }

    fn enter(&mut self, position: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > NESTING_DEPTH_MAX {
            return Err(ParseError::at(
                position,
                format!("expression nested deeper than {NESTING_DEPTH_MAX} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    fn or_expression(&mut self) -> Result<Node, ParseError> {
        let first = self.and_expression()?;
        if self.peek().kind != TokenKind::Or {
            return Ok(first);
        }
        let first_position = self.peek().position;
        let mut terms = vec![as_boolean(first, first_position)?];
        while self.peek().kind == TokenKind::Or {
            let position = self.advance().position;
            let term = self.and_expression()?;
            terms.push(as_boolean(term, position)?);
        }
        flat(terms, Expr::Or)
    }

    fn and_expression(&mut self) -> Result<Node, ParseError> {
        let first = self.equality_expression()?;
        if self.peek().kind != TokenKind::And {
            return Ok(first);
        }
        let first_position = self.peek().position;
        let mut terms = vec![as_boolean(first, first_position)?];
        while self.peek().kind == TokenKind::And {
            let position = self.advance().position;
            let term = self.equality_expression()?;
            terms.push(as_boolean(term, position)?);
        }
        flat(terms, Expr::And)
    }

    fn equality_expression(&mut self) -> Result<Node, ParseError> {
        let mut left = self.comparison_expression()?;
        loop {
            let position = self.peek().position;
            left = match self.peek().kind {
                TokenKind::Eq => {
                    self.advance();
                    let right = self.comparison_expression()?;
                    equal(left, right, position)?
                }
                TokenKind::Ne => {
                    self.advance();
                    let right = self.comparison_expression()?;
                    not(equal(left, right, position)?, position)?
                }
                TokenKind::Is => {
                    self.advance();
                    let is_negated = self.peek().kind == TokenKind::Not;
                    if is_negated {
                        self.advance();
                    }
                    self.expect(&TokenKind::Null, "NULL after IS / IS NOT")?;
                    let is_null =
                        binary(left, Node::leaf(Expr::Literal(Literal::Null)), |l, r| {
                            Expr::Equal(l, r)
                        })?;
                    if is_negated {
                        not(is_null, position)?
                    } else {
                        is_null
                    }
                }
                _ => return Ok(left),
            };
        }
    }

    fn comparison_expression(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary_expression()?;
        loop {
            let position = self.peek().position;
            let kind = self.peek().kind.clone();
            left = match kind {
                TokenKind::Gt | TokenKind::Ge | TokenKind::Lt | TokenKind::Le => {
                    self.advance();
                    let op = match kind {
                        TokenKind::Gt => OrderOp::Gt,
                        TokenKind::Ge => OrderOp::Ge,
                        TokenKind::Lt => OrderOp::Lt,
                        _ => OrderOp::Le,
                    };
                    let right = self.unary_expression()?;
                    order(op, left, right, position)?
                }
                TokenKind::Not
                    if matches!(
                        self.peek_kind_at(1),
                        TokenKind::Contains
                            | TokenKind::StartsWith
                            | TokenKind::EndsWith
                            | TokenKind::Between
                            | TokenKind::In
                    ) =>
                {
                    self.advance();
                    self.negatable(left, true)?
                }
                TokenKind::Contains
                | TokenKind::StartsWith
                | TokenKind::EndsWith
                | TokenKind::Between
                | TokenKind::In => self.negatable(left, false)?,
                _ => return Ok(left),
            };
        }
    }

    /// CONTAINS / STARTSWITH / ENDSWITH / BETWEEN / IN, after an optional NOT.
    fn negatable(&mut self, left: Node, is_negated: bool) -> Result<Node, ParseError> {
        let token = self.advance();
        let position = token.position;
        let text_op = match token.kind {
            TokenKind::Contains => Some(TextOp::Contains),
            TokenKind::StartsWith => Some(TextOp::StartsWith),
            TokenKind::EndsWith => Some(TextOp::EndsWith),
            _ => None,
        };
        if let Some(op) = text_op {
            let search = self.string_literal()?;
            return with_depth(left.depth + 1, || Expr::Text {
                op,
                is_negated,
                operand: Box::new(left.expr),
                search,
            });
        }
        match token.kind {
            TokenKind::Between => {
                let low = self.unary_expression()?;
                self.expect(&TokenKind::And, "AND between the BETWEEN bounds")?;
                let high = self.unary_expression()?;
                between(left, low, high, is_negated, position)
            }
            TokenKind::In => {
                let Expr::Property(property) = left.expr else {
                    return Err(ParseError::at(
                        position,
                        format!("IN needs a property on its left, not {}", left.expr),
                    ));
                };
                self.expect(&TokenKind::LParen, "'(' after IN")?;
                let mut values = BTreeSet::new();
                values.insert(self.string_literal()?);
                while self.peek().kind == TokenKind::Comma {
                    self.advance();
                    values.insert(self.string_literal()?);
                }
                self.expect(&TokenKind::RParen, "',' or ')' in the IN list")?;
                Ok(Node::leaf(Expr::In {
                    property,
                    values,
                    is_negated,
                }))
            }
            other => Err(ParseError::at(
                position,
                format!("unexpected {}", other.describe()),
            )),
        }
    }

    fn string_literal(&mut self) -> Result<String, ParseError> {
        let token = self.advance();
        match token.kind {
            TokenKind::Str(s) => Ok(s),
            other => Err(ParseError::at(
                token.position,
                format!(
                    "expected a string literal in single quotes but found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn unary_expression(&mut self) -> Result<Node, ParseError> {
        let position = self.peek().position;
        match self.peek().kind {
            TokenKind::Plus => {
                self.advance();
                self.enter(position)?;
                let operand = self.unary_expression()?;
                self.leave();
                Ok(operand)
            }
            TokenKind::Minus => {
                self.advance();
                self.enter(position)?;
                let operand = self.unary_expression()?;
                self.leave();
                with_depth(operand.depth + 1, || Expr::Negate(Box::new(operand.expr)))
            }
            TokenKind::Not => {
                self.advance();
                self.enter(position)?;
                let operand = self.unary_expression()?;
                self.leave();
                not(operand, position)
            }
            _ => self.primary_expression(),
        }
    }

    fn primary_expression(&mut self) -> Result<Node, ParseError> {
        let token = self.advance();
        let position = token.position;
        let literal = match token.kind {
            TokenKind::Str(s) => Literal::Str(s),
            TokenKind::Decimal(text) => decimal(&text, position)?,
            TokenKind::Float(text) => float(&text, position)?,
            TokenKind::True => Literal::Bool(true),
            TokenKind::False => Literal::Bool(false),
            TokenKind::Null => Literal::Null,
            TokenKind::Ident(name) => return Ok(Node::leaf(Expr::Property(name))),
            TokenKind::LParen => {
                self.enter(position)?;
                let inner = self.or_expression()?;
                self.leave();
                self.expect(&TokenKind::RParen, "')'")?;
                return Ok(inner);
            }
            other => {
                return Err(ParseError::at(
                    position,
                    format!(
                        "expected a literal, a property name or '(' but found {}",
                        other.describe()
                    ),
                ))
            }
        };
        Ok(Node::leaf(Expr::Literal(literal)))
    }
}

/// Builds a node of the given depth, refusing trees deeper than `NESTING_DEPTH_MAX`.
fn with_depth(depth: usize, build: impl FnOnce() -> Expr) -> Result<Node, ParseError> {
    if depth > NESTING_DEPTH_MAX {
        return Err(ParseError::at(
            0,
            format!("expression nested deeper than {NESTING_DEPTH_MAX} levels"),
        ));
    }
    Ok(Node {
        expr: build(),
        depth,
    })
}

fn binary(
    left: Node,
    right: Node,
    build: impl FnOnce(Box<Expr>, Box<Expr>) -> Expr,
) -> Result<Node, ParseError> {
    with_depth(left.depth.max(right.depth) + 1, || {
        build(Box::new(left.expr), Box::new(right.expr))
    })
}

fn flat(terms: Vec<Node>, build: impl FnOnce(Vec<Expr>) -> Expr) -> Result<Node, ParseError> {
    let depth = terms.iter().map(|t| t.depth).max().unwrap_or(0) + 1;
    with_depth(depth, || build(terms.into_iter().map(|t| t.expr).collect()))
}

/// Java's `asBooleanExpression`: a condition as is, a property cast to boolean, else an error.
fn as_boolean(node: Node, position: usize) -> Result<Node, ParseError> {
    if node.expr.is_boolean() {
        return Ok(node);
    }
    if matches!(node.expr, Expr::Property(_)) {
        return with_depth(node.depth + 1, || Expr::BoolCast(Box::new(node.expr)));
    }
    Err(ParseError::at(
        position,
        format!(
            "expression will not result in a boolean value: {}",
            node.expr
        ),
    ))
}

fn not(operand: Node, position: usize) -> Result<Node, ParseError> {
    let operand = as_boolean(operand, position)?;
    with_depth(operand.depth + 1, || Expr::Not(Box::new(operand.expr)))
}

/// `=` (and `<>` around it): no NULL literal on either side; a boolean literal on the left
/// only against a boolean.
fn equal(left: Node, right: Node, position: usize) -> Result<Node, ParseError> {
    for side in [&left, &right] {
        if side.expr == Expr::Literal(Literal::Null) {
            return Err(ParseError::at(
                position,
                "NULL cannot be compared with = or <>; use IS NULL or IS NOT NULL",
            ));
        }
    }
    if let (Expr::Literal(Literal::Bool(_)), Expr::Literal(r)) = (&left.expr, &right.expr) {
        if !matches!(r, Literal::Bool(_)) {
            return Err(ParseError::at(
                position,
                format!("{} cannot be compared with {}", left.expr, right.expr),
            ));
        }
    }
    binary(left, right, Expr::Equal)
}

/// `>`, `>=`, `<`, `<=`: literals must be numbers, and neither side may be a condition.
fn order(op: OrderOp, left: Node, right: Node, position: usize) -> Result<Node, ParseError> {
    for side in [&left, &right] {
        let is_comparable = match &side.expr {
            Expr::Literal(l) => {
                matches!(l, Literal::Int(_) | Literal::Long(_) | Literal::Double(_))
            }
            e => !e.is_boolean(),
        };
        if !is_comparable {
            return Err(ParseError::at(
                position,
                format!(
                    "value {} cannot be compared with >, >=, <, <= or BETWEEN (only numbers can)",
                    side.expr
                ),
            ));
        }
    }
    binary(left, right, |l, r| Expr::Order(op, l, r))
}

/// `v BETWEEN low AND high` is `v >= low AND v <= high`; `NOT BETWEEN` is
/// `v < low OR v > high`. Literal bounds must not be NULL and must be in order.
fn between(
    value: Node,
    low: Node,
    high: Node,
    is_negated: bool,
    position: usize,
) -> Result<Node, ParseError> {
    if !is_negated {
        if let (Expr::Literal(l), Expr::Literal(h)) = (&low.expr, &high.expr) {
            let (Some(lv), Some(hv)) = (Value::of_literal(l), Value::of_literal(h)) else {
                return Err(ParseError::at(
                    position,
                    "the bounds of BETWEEN cannot be NULL",
                ));
            };
            if !compare(hv, lv).is_ok_and(std::cmp::Ordering::is_ge) {
                return Err(ParseError::at(
                    position,
                    format!(
                        "the low bound of BETWEEN ({l}) must be less than or equal to its \
                         high bound ({h})"
                    ),
                ));
            }
        }
    }
    let value_again = Node {
        expr: value.expr.clone(),
        depth: value.depth,
    };
    let (low_op, high_op) = if is_negated {
        (OrderOp::Lt, OrderOp::Gt)
    } else {
        (OrderOp::Ge, OrderOp::Le)
    };
    let terms = vec![
        order(low_op, value, low, position)?,
        order(high_op, value_again, high, position)?,
    ];
    if is_negated {
        flat(terms, Expr::Or)
    } else {
        flat(terms, Expr::And)
    }
}

fn decimal(text: &str, position: usize) -> Result<Literal, ParseError> {
    let digits = text.trim_end_matches(['l', 'L']);
    let value: i64 = digits.parse().map_err(|_| {
        ParseError::at(
            position,
            format!("{text} is out of range for a long (-2^63 .. 2^63-1)"),
        )
    })?;
    Ok(match i32::try_from(value) {
        Ok(v) => Literal::Int(v),
        Err(_) => Literal::Long(value),
    })
}

fn float(text: &str, position: usize) -> Result<Literal, ParseError> {
    let value: f64 = text
        .parse()
        .map_err(|e| ParseError::at(position, format!("{text} is not a number: {e}")))?;
    if value.is_infinite() {
        return Err(ParseError::at(
            position,
            format!("{text} is greater than the largest double"),
        ));
    }
    Ok(Literal::Double(value))
}
