//! The RocketMQ properties string (REMOTING.md §4.4): `name \x01 value \x02` repeated.
//! Split on `\x02`, then on the first `\x01`; pairs with an empty name or value are dropped;
//! a missing trailing `\x02` is tolerated.

/// Separates a name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends a pair.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// Single tag; its Java hashCode is the consume-queue tags code.
pub const TAGS: &str = "TAGS";
/// Space-separated business keys, each indexed.
pub const KEYS: &str = "KEYS";
/// Client-generated unique id, indexed.
pub const UNIQ_KEY: &str = "UNIQ_KEY";

/// Every (name, value) pair in order.
pub fn parse(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(PROPERTY_SEPARATOR).filter_map(|pair| {
        let (name, value) = pair.split_once(NAME_VALUE_SEPARATOR)?;
        (!name.is_empty() && !value.is_empty()).then_some((name, value))
    })
}

/// The value of the last pair called `name` (Java's HashMap keeps the last one).
pub fn get<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    parse(s).filter(|(n, _)| *n == name).map(|(_, v)| v).last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_style_string() {
        let s = "TAGS\u{1}tagA\u{2}KEYS\u{1}k1 k2\u{2}WAIT\u{1}true\u{2}";
        let v: Vec<_> = parse(s).collect();
        assert_eq!(
            v,
            vec![("TAGS", "tagA"), ("KEYS", "k1 k2"), ("WAIT", "true")]
        );
        assert_eq!(get(s, "KEYS"), Some("k1 k2"));
        assert_eq!(get(s, "NOPE"), None);
    }

    #[test]
    fn tolerates_missing_trailer_and_drops_empty_pairs() {
        let s = "A\u{1}1\u{2}\u{1}x\u{2}B\u{1}\u{2}C\u{1}3";
        let v: Vec<_> = parse(s).collect();
        assert_eq!(v, vec![("A", "1"), ("C", "3")]);
        assert_eq!(parse("").count(), 0);
        assert_eq!(parse("garbage").count(), 0);
    }
}
