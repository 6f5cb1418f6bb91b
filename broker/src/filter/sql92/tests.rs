//! The SQL92 filter against a table of expressions whose Java results are known (from the
//! rules in `ComparisonExpression`, `LogicExpression` and `UnaryExpression`), a table of
//! expressions Java refuses, the limits, and random input that must never panic.

use super::*;

/// What Java's evaluation would give: TRUE, FALSE, null, or an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    True,
    False,
    Null,
    Error,
}

const MESSAGE: &[(&str, &str)] = &[
    ("a", "5"),
    ("b", "abc"),
    ("s", "hello world"),
    ("TAGS", "x"),
    ("f", "2.5"),
    ("big", "3000000000"),
    ("t", "true"),
    ("neg", "-3"),
    ("q", "it's"),
    ("n", "NaN"),
];

fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
    move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

fn outcome(text: &str, pairs: &[(&str, &str)]) -> Outcome {
    let filter =
        Sql92Filter::compile(text).unwrap_or_else(|e| panic!("{text:?} should compile: {e}"));
    let props = lookup(pairs);
    match filter.evaluate(&props) {
        Ok(Some(Value::Bool(true))) => Outcome::True,
        Ok(Some(Value::Bool(false))) => Outcome::False,
        Ok(None) => Outcome::Null,
        Ok(Some(other)) => panic!("{text:?} evaluated to a non-boolean {other:?}"),
        Err(_) => Outcome::Error,
    }
}

#[test]
fn expressions_evaluate_as_in_java() {
    use Outcome::{Error, False, Null, True};
    let cases: &[(&str, Outcome)] = &[
        // Numbers: the property string is parsed as the literal's type.
        ("a = 5", True),
        ("a = 6", False),
        ("a <> 5", False),
        ("a <> 6", True),
        ("a > 4", True),
        ("a >= 5", True),
        ("a < 5", False),
        ("a <= 5", True),
        ("a > 4.5", True),
        ("a = 5.0", True),
        ("a < 10L", True),
        ("a = +5", True),
        ("neg = -3", True),
        ("neg < -2", True),
        ("3000000000 > 1", True),
        ("big > 2999999999", True),
        ("big = 3000000000", True),
        // Integer.valueOf("3000000000") and Integer.valueOf("2.5") throw.
        ("big > 3", Error),
        ("f > 2", Error),
        ("f > 2.0", True),
        ("f = 2.5", True),
        // Two properties ordered: both parsed as doubles.
        ("a > f", True),
        ("b > f", Error),
        ("b > 1", Error),
        ("b = 1", Error),
        // Double.valueOf("NaN") is above everything.
        ("n > 1.0", True),
        // BETWEEN / NOT BETWEEN.
        ("a BETWEEN 3 AND 5", True),
        ("a BETWEEN 5 AND 5", True),
        ("a BETWEEN 6 AND 9", False),
        ("a NOT BETWEEN 3 AND 5", False),
        ("a NOT BETWEEN 6 AND 9", True),
        ("a BETWEEN -1 AND 2.5", False),
        ("missing BETWEEN 1 AND 2", Null),
        ("missing NOT BETWEEN 1 AND 2", Null),
        // Null rules.
        ("missing = 1", Null),
        ("missing > 1", Null),
        ("missing <> 1", Null),
        ("1 = missing", False),
        ("1 <> missing", True),
        ("missing = other", True),
        ("missing IS NULL", True),
        ("missing IS NOT NULL", False),
        ("a IS NULL", False),
        ("a IS NOT NULL", True),
        ("NULL", Null),
        ("NOT NULL", Null),
        ("missing", Null),
        ("-a = -5", Null),
        // Strings.
        ("b = 'abc'", True),
        ("b = 'ABC'", False),
        ("b <> 'abc'", False),
        ("q = 'it''s'", True),
        ("TAGS IN ('x', 'y')", True),
        ("TAGS IN ('y')", False),
        ("TAGS NOT IN ('x')", False),
        ("TAGS NOT IN ('y', 'z')", True),
        ("missing IN ('x')", Null),
        ("missing NOT IN ('x')", Null),
        ("s CONTAINS 'lo w'", True),
        ("s NOT CONTAINS 'lo w'", False),
        ("s STARTSWITH 'hell'", True),
        ("s NOT STARTSWITH 'hell'", False),
        ("s ENDSWITH 'world'", True),
        ("s NOT ENDSWITH 'x'", True),
        ("missing CONTAINS 'a'", False),
        ("missing NOT CONTAINS 'a'", False),
        ("s CONTAINS ''", False),
        ("s NOT CONTAINS ''", False),
        ("(a = 5) CONTAINS 'x'", False),
        // Booleans.
        ("TRUE", True),
        ("FALSE", False),
        ("NOT TRUE", False),
        ("t = TRUE", True),
        ("b = FALSE", True),
        ("t", False),
        ("(a = 5) = TRUE", True),
        ("(a = 5) = 1", False),
        ("1 = TRUE", False),
        ("a = 1 = 2", False),
        ("a = 5 IS NULL", False),
        // NOT as a prefix binds tighter than `=`: (NOT a) = 5, i.e. TRUE = 5.
        ("NOT a = 5", False),
        ("NOT (a = 5)", False),
        ("NOT (a = 6)", True),
        // Three-valued AND / OR, evaluated left to right.
        ("a = 5 AND missing = 1", Null),
        ("a = 6 AND missing = 1", False),
        ("missing = 1 AND a = 6", False),
        ("a = 5 OR missing = 1", True),
        ("a = 6 OR missing = 1", Null),
        ("NOT (missing = 1)", Null),
        ("TAGS = 'x' OR b > 1", True),
        ("b > 1 OR TAGS = 'x'", Error),
        ("a = 6 AND b > 1", False),
        ("TAGS = 'x' AND a BETWEEN 3 AND 5", True),
        ("(TAGS = 'y' OR a = 5) AND NOT (b IS NULL)", True),
        // Keywords in any case; property names keep theirs.
        ("a between 3 and 5 and TAGS = 'x'", True),
        ("a between 3 and 5 and tags = 'x'", Null),
        ("a = 5 /* note */ AND TAGS = 'x' -- trailing comment", True),
        ("a = 5\nAND -- line\nTAGS = 'x'", True),
    ];
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let got = outcome(text, MESSAGE);
        if got != *expected {
            failures.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn only_exactly_true_matches() {
    let props = "a\u{1}5\u{2}TAGS\u{1}x\u{2}";
    let yes = Sql92Filter::compile("a BETWEEN 3 AND 5 AND TAGS = 'x'").expect("valid");
    assert!(yes.matches_properties(props));
    let unknown = Sql92Filter::compile("zzz = 1").expect("valid");
    assert!(!unknown.matches_properties(props));
    let error = Sql92Filter::compile("TAGS > 1").expect("valid");
    assert!(!error.matches_properties(props));
    assert!(!yes.matches_properties(""));
    assert_eq!(yes.source(), "a BETWEEN 3 AND 5 AND TAGS = 'x'");
}

#[test]
fn invalid_expressions_are_refused_with_a_reason() {
    let cases = [
        "",
        "   ",
        "a =",
        "a = 5 )",
        "(a = 5",
        "a = NULL",
        "NULL = a",
        "a <> NULL",
        "a > 'x'",
        "'x' < a",
        "a > TRUE",
        "(a = 1) > 2",
        "a > 1 > 2",
        "a BETWEEN 5 AND 3",
        "a BETWEEN NULL AND 3",
        "a BETWEEN 'a' AND 'c'",
        "a BETWEEN 1",
        "a BETWEEN 1 OR 2",
        "a BETWEEN 1 AND 2 BETWEEN 1 AND 2",
        "5 IN ('a')",
        "a IN ()",
        "a IN (1, 2)",
        "a IN ('x'",
        "a IN 'x'",
        "a CONTAINS b",
        "a STARTSWITH 1",
        "5",
        "'abc'",
        "-a",
        "a = 5 AND 3",
        "3 OR a = 5",
        "NOT 5",
        "TRUE = 1",
        "a IS 5",
        "a IS NOT",
        "a = 9223372036854775808",
        "a = 1e400",
        "a ; b",
        "a = 1 b",
        "a == 1",
        "a != 1",
        "a.b = 1",
        "a = 05",
        "a = 'open",
        "a = 1 /* open",
        "a NOT 5",
        "NOT",
        "()",
        "a = é",
    ];
    for text in cases {
        match Sql92Filter::compile(text) {
            Ok(f) => panic!("{text:?} should be refused, compiled to {f:?}"),
            Err(e) => {
                let shown = e.to_string();
                assert!(
                    shown.starts_with("invalid SQL92 expression at character "),
                    "{text:?}: {shown}"
                );
                assert!(!e.message.is_empty());
            }
        }
    }
    let e = Sql92Filter::compile("a = 5 AND b >").expect_err("incomplete");
    assert_eq!(e.position, 13);
    assert!(e.message.contains("end of the expression"), "{}", e.message);
}

#[test]
fn nesting_and_length_are_bounded() {
    let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(Sql92Filter::compile(&nested(30)).is_ok());
    let e = Sql92Filter::compile(&nested(1000)).expect_err("too deep");
    assert!(e.message.contains("nested deeper"), "{}", e.message);
    assert!(Sql92Filter::compile(&format!("{}TRUE", "NOT ".repeat(10))).is_ok());
    assert!(Sql92Filter::compile(&format!("{}TRUE", "NOT ".repeat(1000))).is_err());
    assert!(Sql92Filter::compile(&format!("a = {}1", "-".repeat(1000))).is_err());
    assert!(Sql92Filter::compile(&format!("a{}", " IS NULL".repeat(500))).is_err());
    assert!(Sql92Filter::compile(&format!("a = 1{}", " = TRUE".repeat(500))).is_err());

    // AND/OR chains are flat: a thousand conditions cost no depth.
    let chain = vec!["a = 5"; 1000].join(" AND ");
    let filter = Sql92Filter::compile(&chain).expect("a long flat chain is fine");
    assert!(filter.matches(&lookup(MESSAGE)));
    let chain = vec!["a = 6"; 1000].join(" OR ");
    assert!(!Sql92Filter::compile(&chain)
        .expect("valid")
        .matches(&lookup(MESSAGE)));

    let long = format!("b IN ('{}')", "x".repeat(EXPRESSION_LENGTH_MAX));
    let e = Sql92Filter::compile(&long).expect_err("too long");
    assert!(e.message.contains("bytes long"), "{}", e.message);
}

#[test]
fn filters_compare_by_source() {
    let a = Sql92Filter::compile("a = 1").expect("valid");
    let b = Sql92Filter::compile("a = 1").expect("valid");
    let c = Sql92Filter::compile("a = 2").expect("valid");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(format!("{a:?}").contains("a = 1"));
}

/// A small xorshift generator, so a failure replays from its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

fn seed() -> u64 {
    let seed = std::env::var("PETREL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| {
                    u64::try_from(d.as_nanos() & 0xffff_ffff_ffff).unwrap_or(1)
                })
        });
    println!("PETREL_SEED={seed}");
    seed.max(1)
}

/// Random token soup and random bytes: compiling and evaluating never panic, and whatever
/// compiles evaluates against random properties. Replay with PETREL_SEED=<printed seed>.
#[test]
fn random_input_never_panics() {
    let mut rng = Rng(seed());
    let fragments = [
        "a",
        "b",
        "TAGS",
        "x_1",
        "$p",
        "NOT",
        "AND",
        "OR",
        "BETWEEN",
        "IN",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
        "=",
        "<>",
        ">",
        ">=",
        "<",
        "<=",
        "(",
        ")",
        "(",
        ")",
        ",",
        "+",
        "-",
        "0",
        "1",
        "42",
        "2147483648",
        "9223372036854775807",
        "9223372036854775808",
        "1.5",
        ".5",
        "5.",
        "1e3",
        "1e400",
        "'x'",
        "'it''s'",
        "''",
        "'",
        "--",
        "/*",
        "*/",
        "\n",
        "é",
        ";",
        ".",
        "1L",
    ];
    let values = [
        "",
        "5",
        "-3",
        "abc",
        "2.5",
        "true",
        "NaN",
        "x",
        "3000000000",
        "1e3",
    ];
    let names = ["a", "b", "TAGS", "x_1", "$p"];
    let mut compiled = 0;
    for round in 0..20_000 {
        let text: String = if round % 10 == 0 {
            (0..rng.below(40))
                .map(|_| char::from(u8::try_from(rng.below(95) + 32).unwrap_or(b' ')))
                .collect()
        } else {
            (0..rng.below(25) + 1)
                .map(|_| rng.pick(&fragments))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let Ok(filter) = Sql92Filter::compile(&text) else {
            continue;
        };
        compiled += 1;
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for name in names {
            if rng.below(3) > 0 {
                pairs.push((name, rng.pick(&values)));
            }
        }
        let props = lookup(&pairs);
        let _ = filter.evaluate(&props);
        let _ = filter.matches(&props);
    }
    assert!(
        compiled > 100,
        "only {compiled} random expressions compiled"
    );
}

/// Ordering and BETWEEN over random integers agree with Rust's integers.
#[test]
fn random_integer_comparisons_agree_with_arithmetic() {
    let mut rng = Rng(seed());
    for _ in 0..2_000 {
        let value = i64::try_from(rng.below(200)).unwrap_or(0) - 100;
        let low = i64::try_from(rng.below(200)).unwrap_or(0) - 100;
        let high = low + i64::try_from(rng.below(50)).unwrap_or(0);
        let value_text = value.to_string();
        let pairs = [("a", value_text.as_str())];
        let check = |text: &str, expected: bool| {
            let filter = Sql92Filter::compile(text).expect("valid");
            assert_eq!(
                filter.matches(&lookup(&pairs)),
                expected,
                "{text} with a={value}"
            );
        };
        check(
            &format!("a BETWEEN {low} AND {high}"),
            low <= value && value <= high,
        );
        check(
            &format!("a NOT BETWEEN {low} AND {high}"),
            value < low || value > high,
        );
        check(&format!("a > {low}"), value > low);
        check(&format!("a <= {low}"), value <= low);
        check(&format!("a = {low}"), value == low);
        check(&format!("a <> {low}"), value != low);
    }
}
