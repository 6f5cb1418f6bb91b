//! The command header in its two encodings (REMOTING.md §1.2–§1.4).
//!
//! Input is parsed leniently (whatever real clients send); output is strict: compact JSON,
//! fields in fastjson's alphabetical order, every extFields value a JSON string.
#![deny(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::HeaderError;

/// The sender's language (REMOTING.md §1.2). JSON carries the name, binary the ordinal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LanguageCode {
    #[default]
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
}

impl LanguageCode {
    const ALL: [LanguageCode; 14] = [
        Self::Java,
        Self::Cpp,
        Self::Dotnet,
        Self::Python,
        Self::Delphi,
        Self::Erlang,
        Self::Ruby,
        Self::Other,
        Self::Http,
        Self::Go,
        Self::Php,
        Self::Oms,
        Self::Rust,
        Self::NodeJs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Java => "JAVA",
            Self::Cpp => "CPP",
            Self::Dotnet => "DOTNET",
            Self::Python => "PYTHON",
            Self::Delphi => "DELPHI",
            Self::Erlang => "ERLANG",
            Self::Ruby => "RUBY",
            Self::Other => "OTHER",
            Self::Http => "HTTP",
            Self::Go => "GO",
            Self::Php => "PHP",
            Self::Oms => "OMS",
            Self::Rust => "RUST",
            Self::NodeJs => "NODE_JS",
        }
    }

    /// The binary ordinal (`LanguageCode.getCode()`).
    pub fn as_code(self) -> u8 {
        match self {
            Self::Java => 0,
            Self::Cpp => 1,
            Self::Dotnet => 2,
            Self::Python => 3,
            Self::Delphi => 4,
            Self::Erlang => 5,
            Self::Ruby => 6,
            Self::Other => 7,
            Self::Http => 8,
            Self::Go => 9,
            Self::Php => 10,
            Self::Oms => 11,
            Self::Rust => 12,
            Self::NodeJs => 13,
        }
    }

    /// Lenient: an unknown ordinal is `Other`.
    pub fn from_code(code: i64) -> Self {
        Self::ALL
            .into_iter()
            .find(|l| i64::from(l.as_code()) == code)
            .unwrap_or(Self::Other)
    }

    /// Lenient: an unknown name is `Other`.
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(name))
            .unwrap_or(Self::Other)
    }
}

impl fmt::Display for LanguageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The logical header fields, however they were encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: HashMap<String, String>,
}

/// Borrowed header fields, what the encoders read (no clone of the ext map).
#[derive(Clone, Copy, Debug)]
pub struct HeaderRef<'a> {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<&'a str>,
    pub ext_fields: &'a HashMap<String, String>,
}

impl Header {
    pub fn as_ref(&self) -> HeaderRef<'_> {
        HeaderRef {
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: self.remark.as_deref(),
            ext_fields: &self.ext_fields,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON input

#[derive(Deserialize)]
struct JsonHeaderIn {
    #[serde(default, deserialize_with = "lenient_i32")]
    code: i32,
    #[serde(default, deserialize_with = "lenient_language")]
    language: LanguageCode,
    #[serde(default, deserialize_with = "lenient_i32")]
    version: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    opaque: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    flag: i32,
    #[serde(default, deserialize_with = "lenient_remark")]
    remark: Option<String>,
    #[serde(default, rename = "extFields", deserialize_with = "lenient_ext_fields")]
    ext_fields: HashMap<String, String>,
}

/// Parse a JSON header. Accepts unknown fields, absent or null `remark`/`extFields`,
/// `language` as a name or an ordinal, numbers given as strings, and extFields values that
/// are strings, numbers or booleans (nulls are dropped; nested values are kept as JSON text).
pub fn decode_json(src: &[u8]) -> Result<Header, HeaderError> {
    // serde would also take a JSON array as a struct; a header is always an object.
    if src.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(HeaderError::NotAnObject);
    }
    let h: JsonHeaderIn = serde_json::from_slice(src).map_err(HeaderError::Json)?;
    Ok(Header {
        code: h.code,
        language: h.language,
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark,
        ext_fields: h.ext_fields,
    })
}

fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 32-bit integer (number or decimal string)")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("{v} out of i32 range")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("{v} out of i32 range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i32, E> {
            if v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                Ok(v as i32)
            } else {
                Err(E::custom(format!("{v} is not a 32-bit integer")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("{v:?} is not a 32-bit integer")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

fn lenient_language<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = LanguageCode;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a language name or ordinal")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<LanguageCode, E> {
            Ok(LanguageCode::from_code(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<LanguageCode, E> {
            Ok(LanguageCode::from_code(i64::try_from(v).unwrap_or(-1)))
        }
        fn visit_f64<E: de::Error>(self, _v: f64) -> Result<LanguageCode, E> {
            Ok(LanguageCode::Other)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<LanguageCode, E> {
            Ok(LanguageCode::from_name(v))
        }
        fn visit_bool<E: de::Error>(self, _v: bool) -> Result<LanguageCode, E> {
            Ok(LanguageCode::Other)
        }
        fn visit_unit<E: de::Error>(self) -> Result<LanguageCode, E> {
            Ok(LanguageCode::Other)
        }
    }
    d.deserialize_any(V)
}

fn lenient_remark<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

fn lenient_ext_fields<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<HashMap<String, String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = HashMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of header fields")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(HashMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = HashMap::with_capacity(map.size_hint().unwrap_or(8).min(64));
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                let v = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

// ---------------------------------------------------------------------------------------------
// JSON output

/// Append the header as compact JSON in fastjson's field order:
/// `code, extFields, flag, language, opaque, remark, serializeTypeCurrentRPC, version`.
/// `extFields` is written with its keys sorted (deterministic bytes) and omitted when empty;
/// `remark` is omitted when `None`.
pub fn encode_json(h: &HeaderRef<'_>, dst: &mut BytesMut) {
    dst.put_slice(b"{\"code\":");
    put_decimal(dst, i64::from(h.code));
    if !h.ext_fields.is_empty() {
        dst.put_slice(b",\"extFields\":{");
        let mut keys: Vec<&String> = h.ext_fields.keys().collect();
        keys.sort_unstable();
        for (i, k) in keys.into_iter().enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            put_json_string(dst, k);
            dst.put_u8(b':');
            put_json_string(dst, h.ext_fields.get(k).map_or("", String::as_str));
        }
        dst.put_u8(b'}');
    }
    dst.put_slice(b",\"flag\":");
    put_decimal(dst, i64::from(h.flag));
    dst.put_slice(b",\"language\":\"");
    dst.put_slice(h.language.as_str().as_bytes());
    dst.put_slice(b"\",\"opaque\":");
    put_decimal(dst, i64::from(h.opaque));
    if let Some(remark) = h.remark {
        dst.put_slice(b",\"remark\":");
        put_json_string(dst, remark);
    }
    dst.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    put_decimal(dst, i64::from(h.version));
    dst.put_u8(b'}');
}

fn put_decimal(dst: &mut BytesMut, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    if v < 0 {
        dst.put_u8(b'-');
    }
    dst.put_slice(buf.get(i..).unwrap_or_default());
}

/// A JSON string literal: quotes, backslashes and control characters escaped, the rest
/// written as UTF-8.
pub(crate) fn put_json_string(dst: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    dst.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        dst.put_slice(bytes.get(start..i).unwrap_or_default());
        match esc {
            Some(e) => dst.put_slice(e),
            None => {
                dst.put_slice(b"\\u00");
                dst.put_u8(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                dst.put_u8(HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'));
            }
        }
        start = i + 1;
    }
    dst.put_slice(bytes.get(start..).unwrap_or_default());
    dst.put_u8(b'"');
}

// ---------------------------------------------------------------------------------------------
// ROCKETMQ binary input/output (REMOTING.md §1.4)

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], HeaderError> {
        if n > self.buf.len() {
            return Err(HeaderError::BinaryTruncated { field });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], HeaderError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn len_i32(&mut self, field: &'static str) -> Result<usize, HeaderError> {
        let v = i32::from_be_bytes(self.array(field)?);
        let n = usize::try_from(v).map_err(|_| HeaderError::BinaryLength { field, length: v })?;
        if n > self.buf.len() {
            return Err(HeaderError::BinaryLength { field, length: v });
        }
        Ok(n)
    }
    fn string(&mut self, n: usize, field: &'static str) -> Result<String, HeaderError> {
        let b = self.take(n, field)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| HeaderError::InvalidUtf8 { field })
    }
}

/// Parse a ROCKETMQ binary header. Every length is checked against what is left.
pub fn decode_binary(src: &[u8]) -> Result<Header, HeaderError> {
    let mut c = Cursor { buf: src };
    let code = i32::from(i16::from_be_bytes(c.array("code")?));
    let language = LanguageCode::from_code(i64::from(u8::from_be_bytes(c.array("language")?)));
    let version = i32::from(i16::from_be_bytes(c.array("version")?));
    let opaque = i32::from_be_bytes(c.array("opaque")?);
    let flag = i32::from_be_bytes(c.array("flag")?);
    let remark_len = c.len_i32("remarkLen")?;
    let remark = if remark_len == 0 {
        None
    } else {
        Some(c.string(remark_len, "remark")?)
    };
    let ext_len = c.len_i32("extLen")?;
    let mut ext = Cursor {
        buf: c.take(ext_len, "extFields")?,
    };
    let mut ext_fields = HashMap::new();
    while !ext.buf.is_empty() {
        let key_len = i16::from_be_bytes(ext.array("extKeyLen")?);
        let key_len = usize::try_from(key_len).map_err(|_| HeaderError::BinaryLength {
            field: "extKeyLen",
            length: key_len.into(),
        })?;
        let key = ext.string(key_len, "extKey")?;
        let val_len = ext.len_i32("extValueLen")?;
        let val = ext.string(val_len, "extValue")?;
        if !key.is_empty() && !val.is_empty() {
            ext_fields.insert(key, val);
        }
    }
    Ok(Header {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
    })
}

/// Append the header in ROCKETMQ binary form. `code` and `version` are truncated to i16 as
/// Java does; ext entries are written with their keys sorted.
pub fn encode_binary(h: &HeaderRef<'_>, dst: &mut BytesMut) {
    dst.put_i16(h.code as i16);
    dst.put_u8(h.language.as_code());
    dst.put_i16(h.version as i16);
    dst.put_i32(h.opaque);
    dst.put_i32(h.flag);
    match h.remark {
        Some(r) if !r.is_empty() => {
            dst.put_i32(r.len() as i32);
            dst.put_slice(r.as_bytes());
        }
        _ => dst.put_i32(0),
    }
    let mut keys: Vec<&String> = h.ext_fields.keys().collect();
    keys.sort_unstable();
    let ext_len: usize = h
        .ext_fields
        .iter()
        .map(|(k, v)| 2 + k.len() + 4 + v.len())
        .sum();
    dst.put_i32(ext_len as i32);
    for k in keys {
        let v = h.ext_fields.get(k).map_or("", String::as_str);
        dst.put_i16(k.len() as i16);
        dst.put_slice(k.as_bytes());
        dst.put_i32(v.len() as i32);
        dst.put_slice(v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_header_accepts_client_quirks() {
        let h = decode_json(
            br#"{"code":"310","language":9,"opaque":-5,"flag":0,"remark":"","extFields":{"queueId":3,"batch":false,"ts":1.5,"n":null,"AccessKey":""},"whatever":[1,2]}"#,
        )
        .expect("lenient");
        assert_eq!(h.code, 310);
        assert_eq!(h.language, LanguageCode::Go);
        assert_eq!(h.opaque, -5);
        assert_eq!(h.remark.as_deref(), Some(""));
        assert_eq!(h.ext_fields.get("queueId").map(String::as_str), Some("3"));
        assert_eq!(h.ext_fields.get("batch").map(String::as_str), Some("false"));
        assert_eq!(h.ext_fields.get("ts").map(String::as_str), Some("1.5"));
        assert!(!h.ext_fields.contains_key("n"));
        assert_eq!(h.ext_fields.get("AccessKey").map(String::as_str), Some(""));
    }

    #[test]
    fn json_header_absent_fields_default() {
        let h = decode_json(br#"{"code":34,"language":"CPP","extFields":null}"#).expect("ok");
        assert_eq!(h.code, 34);
        assert_eq!(h.language, LanguageCode::Cpp);
        assert_eq!(h.remark, None);
        assert!(h.ext_fields.is_empty());
        assert_eq!(
            decode_json(br#"{"code":1,"language":"KLINGON"}"#)
                .map(|h| h.language)
                .ok(),
            Some(LanguageCode::Other)
        );
    }

    #[test]
    fn json_header_rejects_non_objects_and_bad_numbers() {
        assert!(decode_json(b"[]").is_err());
        assert!(decode_json(b"{\"code\":1e99}").is_err());
        assert!(decode_json(b"{\"code\":99999999999}").is_err());
        assert!(decode_json(b"").is_err());
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut b = BytesMut::new();
        put_json_string(&mut b, "a\"b\\c\n\u{1}é");
        assert_eq!(&b[..], "\"a\\\"b\\\\c\\n\\u0001é\"".as_bytes());
        let mut b = BytesMut::new();
        put_decimal(&mut b, i64::from(i32::MIN));
        assert_eq!(&b[..], b"-2147483648");
    }
}
