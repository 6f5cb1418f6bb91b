//! Java `String.hashCode` over UTF-16 code units, the consume-queue tags code (REMOTING.md §4.7).

/// Java `String.hashCode()` of `s`: `h = 31*h + c` over UTF-16 units, wrapping, signed.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The consume-queue tags code of a tag: its Java hashCode, sign-extended to i64.
pub fn tags_hash(tag: &str) -> i64 {
    i64::from(java_string_hash(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_hash_codes() {
        // Values computed by Java's String.hashCode.
        assert_eq!(tags_hash(""), 0);
        assert_eq!(tags_hash("TagA"), 2_598_919);
        assert_eq!(tags_hash("hello"), 99_162_322);
        assert_eq!(tags_hash("Hello, World!"), 1_498_789_909);
        // Wraps negative: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(tags_hash("polygenelubricants"), i64::from(i32::MIN));
        // Non-BMP character: two UTF-16 units (0xD83D, 0xDE00).
        assert_eq!(tags_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }
}
