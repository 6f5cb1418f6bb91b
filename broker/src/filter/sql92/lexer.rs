//! Tokens of RocketMQ's SQL92 subset, as `SelectorParser.jj` defines them: case-insensitive
//! keywords, identifiers `[A-Za-z_$][A-Za-z0-9_$]*` (property names, case-sensitive), single-
//! quoted strings with `''` for a quote, decimal (long) and floating-point literals, the
//! operators `= <> > >= < <= ( ) , + -`, whitespace ` \t\n\r\f`, `-- line` and `/* block */`
//! comments. Numbers follow JavaCC's longest match: `0123` is the two tokens `0` and `123`.
//!
//! Never panics: every index is checked; an unknown character is a [`ParseError`].

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    /// `DECIMAL_LITERAL` as written, without an `l`/`L` suffix (checked by the parser).
    Decimal(String),
    /// `FLOATING_POINT_LITERAL` as written.
    Float(String),
    /// A string literal, already unescaped.
    Str(String),
    Ident(String),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Eof,
}

impl TokenKind {
    /// How an error message names the token.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Not => "NOT".into(),
            TokenKind::And => "AND".into(),
            TokenKind::Or => "OR".into(),
            TokenKind::Between => "BETWEEN".into(),
            TokenKind::In => "IN".into(),
            TokenKind::True => "TRUE".into(),
            TokenKind::False => "FALSE".into(),
            TokenKind::Null => "NULL".into(),
            TokenKind::Is => "IS".into(),
            TokenKind::Contains => "CONTAINS".into(),
            TokenKind::StartsWith => "STARTSWITH".into(),
            TokenKind::EndsWith => "ENDSWITH".into(),
            TokenKind::Decimal(s) | TokenKind::Float(s) => format!("number {s}"),
            TokenKind::Str(s) => format!("string '{}'", s.replace('\'', "''")),
            TokenKind::Ident(s) => format!("identifier {s}"),
            TokenKind::Eq => "'='".into(),
            TokenKind::Ne => "'<>'".into(),
            TokenKind::Gt => "'>'".into(),
            TokenKind::Ge => "'>='".into(),
            TokenKind::Lt => "'<'".into(),
            TokenKind::Le => "'<='".into(),
            TokenKind::LParen => "'('".into(),
            TokenKind::RParen => "')'".into(),
            TokenKind::Comma => "','".into(),
            TokenKind::Plus => "'+'".into(),
            TokenKind::Minus => "'-'".into(),
            TokenKind::Eof => "the end of the expression".into(),
        }
    }
}

/// One token and the character position (0-based) where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub position: usize,
}

/// Splits `text` into tokens, ending with one `Eof`.
pub fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        i = skip_blanks_and_comments(&chars, i)?;
        let Some(&c) = chars.get(i) else {
            tokens.push(Token {
                kind: TokenKind::Eof,
                position: i,
            });
            return Ok(tokens);
        };
        let start = i;
        let next = chars.get(i + 1).copied();
        let (kind, len) = match c {
            '=' => (TokenKind::Eq, 1),
            '<' if next == Some('>') => (TokenKind::Ne, 2),
            '<' if next == Some('=') => (TokenKind::Le, 2),
            '<' => (TokenKind::Lt, 1),
            '>' if next == Some('=') => (TokenKind::Ge, 2),
            '>' => (TokenKind::Gt, 1),
            '(' => (TokenKind::LParen, 1),
            ')' => (TokenKind::RParen, 1),
            ',' => (TokenKind::Comma, 1),
            '+' => (TokenKind::Plus, 1),
            '-' => (TokenKind::Minus, 1),
            '\'' => string_literal(&chars, i)?,
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                number(&chars, i)
            }
            c if is_ident_start(c) => identifier(&chars, i),
            c => return Err(ParseError::at(start, format!("unexpected character {c:?}"))),
        };
        tokens.push(Token {
            kind,
            position: start,
        });
        i += len;
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

fn skip_blanks_and_comments(chars: &[char], mut i: usize) -> Result<usize, ParseError> {
    loop {
        match (chars.get(i), chars.get(i + 1)) {
            (Some(' ' | '\t' | '\n' | '\r' | '\u{c}'), _) => i += 1,
            (Some('-'), Some('-')) => {
                // A line comment runs to the end of the line (or of the text).
                while chars.get(i).is_some_and(|&c| c != '\n' && c != '\r') {
                    i += 1;
                }
            }
            (Some('/'), Some('*')) => {
                let start = i;
                i += 2;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('*'), Some('/')) => {
                            i += 2;
                            break;
                        }
                        (Some(_), _) => i += 1,
                        (None, _) => {
                            return Err(ParseError::at(start, "unterminated /* comment"));
                        }
                    }
                }
            }
            _ => return Ok(i),
        }
    }
}

fn string_literal(chars: &[char], start: usize) -> Result<(TokenKind, usize), ParseError> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        match (chars.get(i), chars.get(i + 1)) {
            (Some('\''), Some('\'')) => {
                value.push('\'');
                i += 2;
            }
            (Some('\''), _) => return Ok((TokenKind::Str(value), i + 1 - start)),
            (Some(&c), _) => {
                value.push(c);
                i += 1;
            }
            (None, _) => {
                return Err(ParseError::at(
                    start,
                    "unterminated string literal (a quote inside a string is written '')",
                ))
            }
        }
    }
}

fn identifier(chars: &[char], start: usize) -> (TokenKind, usize) {
    let mut end = start;
    while chars.get(end).copied().is_some_and(is_ident_part) {
        end += 1;
    }
    let word: String = chars.get(start..end).unwrap_or_default().iter().collect();
    let kind = match word.to_ascii_uppercase().as_str() {
        "NOT" => TokenKind::Not,
        "AND" => TokenKind::And,
        "OR" => TokenKind::Or,
        "BETWEEN" => TokenKind::Between,
        "IN" => TokenKind::In,
        "TRUE" => TokenKind::True,
        "FALSE" => TokenKind::False,
        "NULL" => TokenKind::Null,
        "IS" => TokenKind::Is,
        "CONTAINS" => TokenKind::Contains,
        "STARTSWITH" => TokenKind::StartsWith,
        "ENDSWITH" => TokenKind::EndsWith,
        _ => TokenKind::Ident(word),
    };
    (kind, end - start)
}

fn digits(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(char::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Length of `[eE][+-]?[0-9]+` at `i` (0 if none).
fn exponent_len(chars: &[char], i: usize) -> usize {
    if !matches!(chars.get(i), Some('e' | 'E')) {
        return 0;
    }
    let mut j = i + 1;
    if matches!(chars.get(j), Some('+' | '-')) {
        j += 1;
    }
    let end = digits(chars, j);
    if end == j {
        0
    } else {
        end - i
    }
}

/// The longest of JavaCC's number tokens at `start` (a decimal wins ties, as it is declared
/// first): `0 | [1-9][0-9]*[lL]?`, `[0-9]+ . [0-9]* exp?`, `. [0-9]+ exp?`, `[0-9]+ exp`.
fn number(chars: &[char], start: usize) -> (TokenKind, usize) {
    let int_end = digits(chars, start);
    let decimal_len = match chars.get(start) {
        Some('0') => 1,
        Some('1'..='9') => {
            if matches!(chars.get(int_end), Some('l' | 'L')) {
                int_end + 1 - start
            } else {
                int_end - start
            }
        }
        _ => 0,
    };
    let mut float_len = 0;
    if int_end > start {
        if chars.get(int_end) == Some(&'.') {
            let frac_end = digits(chars, int_end + 1);
            float_len = frac_end + exponent_len(chars, frac_end) - start;
        } else {
            let e = exponent_len(chars, int_end);
            if e > 0 {
                float_len = int_end + e - start;
            }
        }
    } else if chars.get(start) == Some(&'.') {
        let frac_end = digits(chars, start + 1);
        if frac_end > start + 1 {
            float_len = frac_end + exponent_len(chars, frac_end) - start;
        }
    }
    let text = |len: usize| -> String {
        chars
            .get(start..start + len)
            .unwrap_or_default()
            .iter()
            .collect()
    };
    if float_len > decimal_len {
        (TokenKind::Float(text(float_len)), float_len)
    } else {
        (TokenKind::Decimal(text(decimal_len)), decimal_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .expect("lexes")
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn keywords_are_case_insensitive_and_identifiers_keep_case() {
        assert_eq!(
            kinds("a And NOT isx Is nUlL TAGS"),
            vec![
                TokenKind::Ident("a".into()),
                TokenKind::And,
                TokenKind::Not,
                TokenKind::Ident("isx".into()),
                TokenKind::Is,
                TokenKind::Null,
                TokenKind::Ident("TAGS".into()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn numbers_follow_javacc_longest_match() {
        assert_eq!(
            kinds("10 10L 1.5 5. .5 5E3 1.5e-2 0123"),
            vec![
                TokenKind::Decimal("10".into()),
                TokenKind::Decimal("10L".into()),
                TokenKind::Float("1.5".into()),
                TokenKind::Float("5.".into()),
                TokenKind::Float(".5".into()),
                TokenKind::Float("5E3".into()),
                TokenKind::Float("1.5e-2".into()),
                TokenKind::Decimal("0".into()),
                TokenKind::Decimal("123".into()),
                TokenKind::Eof
            ]
        );
        // `1e` is the number 1 then the identifier e.
        assert_eq!(
            kinds("1e"),
            vec![
                TokenKind::Decimal("1".into()),
                TokenKind::Ident("e".into()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        assert_eq!(
            kinds("'it''s' ''"),
            vec![
                TokenKind::Str("it's".into()),
                TokenKind::Str(String::new()),
                TokenKind::Eof
            ]
        );
        assert!(tokenize("'open").is_err());
    }

    #[test]
    fn operators_and_comments() {
        assert_eq!(
            kinds("a<>b -- note\n<= >= < > = /* x */ (,)+-"),
            vec![
                TokenKind::Ident("a".into()),
                TokenKind::Ne,
                TokenKind::Ident("b".into()),
                TokenKind::Le,
                TokenKind::Ge,
                TokenKind::Lt,
                TokenKind::Gt,
                TokenKind::Eq,
                TokenKind::LParen,
                TokenKind::Comma,
                TokenKind::RParen,
                TokenKind::Plus,
                TokenKind::Minus,
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("a -- to the end"),
            vec![TokenKind::Ident("a".into()), TokenKind::Eof]
        );
        assert!(tokenize("a /* open").is_err());
        assert!(tokenize("a ; b").is_err());
        assert!(tokenize("a.b").is_err());
        assert!(tokenize("é").is_err());
    }
}
