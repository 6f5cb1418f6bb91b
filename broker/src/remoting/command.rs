//! `RemotingCommand`: one request or response, header fields plus body.
#![deny(clippy::indexing_slicing)]

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{self, SerializeType};
use super::header::{self, Header, HeaderRef, LanguageCode};
use super::FrameError;

/// Flag bit 0: this frame is a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Flag bit 1: oneway request, never answered.
pub const FLAG_ONEWAY: i32 = 0x2;
/// The version we put in our own requests and responses: `MQVersion.Version.V5_3_3`.
pub const PETREL_VERSION: i32 = 479;

/// One frame's worth of command: a request (flag bit0 = 0) or a response (bit0 = 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: HashMap<String, String>,
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request with `opaque` 0 (the caller sets it), language JAVA, version 479.
    pub fn request(code: i32) -> Self {
        Self {
            code,
            language: LanguageCode::Java,
            version: PETREL_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: HashMap::new(),
            body: Bytes::new(),
        }
    }

    /// A response to the request whose opaque is `request_opaque` (sets flag bit0).
    pub fn response(code: i32, request_opaque: i32, remark: Option<String>) -> Self {
        Self {
            opaque: request_opaque,
            flag: FLAG_RESPONSE,
            remark,
            ..Self::request(code)
        }
    }

    pub fn with_ext(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_owned(), value.to_string());
        self
    }

    pub fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Appends one whole frame (length prefix, JSON header, body) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_as(SerializeType::Json, dst);
    }

    /// Appends one whole frame with the header in the given encoding.
    pub fn encode_as(&self, serialize_type: SerializeType, dst: &mut BytesMut) {
        let start = dst.len();
        dst.reserve(8 + 128 + self.ext_fields.len() * 32 + self.body.len());
        dst.put_slice(&[0u8; 8]);
        let header = self.header_view();
        match serialize_type {
            SerializeType::Json => header::encode_json(&header, dst),
            SerializeType::RocketMq => header::encode_binary(&header, dst),
        }
        let header_size = dst.len() - start - 8;
        dst.put_slice(&self.body);
        let prefix = frame::encode_prefix(serialize_type, header_size, self.body.len());
        if let Some(slot) = dst.get_mut(start..start + 8) {
            slot.copy_from_slice(&prefix);
        }
    }

    /// The encoded frame as one buffer (convenience for blocking clients and tests).
    pub fn to_frame(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// [`frame::check`] first (no allocation): `Ok(None)` = incomplete, read more;
    /// `Ok(Some(cmd))` consumed one frame from `src`; `Err` = malformed (close the
    /// connection). The body is a zero-copy slice of the frame.
    pub fn decode(
        src: &mut BytesMut,
        frame_size_max: usize,
    ) -> Result<Option<RemotingCommand>, FrameError> {
        let Some(layout) = frame::check(src, frame_size_max)? else {
            return Ok(None);
        };
        let frame = src.split_to(layout.frame_size).freeze();
        let header_bytes = frame.get(layout.header_range()).unwrap_or_default();
        let header = match layout.serialize_type {
            SerializeType::Json => header::decode_json(header_bytes),
            SerializeType::RocketMq => header::decode_binary(header_bytes),
        }
        .map_err(FrameError::Header)?;
        let body = frame.slice(layout.body_range());
        Ok(Some(Self::from_header(header, body)))
    }

    /// Decode from a byte slice holding at least one whole frame; returns the command and
    /// the number of bytes it used. For blocking clients that manage their own buffer.
    pub fn decode_slice(
        src: &[u8],
        frame_size_max: usize,
    ) -> Result<Option<(RemotingCommand, usize)>, FrameError> {
        let Some(layout) = frame::check(src, frame_size_max)? else {
            return Ok(None);
        };
        let header_bytes = src.get(layout.header_range()).unwrap_or_default();
        let header = match layout.serialize_type {
            SerializeType::Json => header::decode_json(header_bytes),
            SerializeType::RocketMq => header::decode_binary(header_bytes),
        }
        .map_err(FrameError::Header)?;
        let body = Bytes::copy_from_slice(src.get(layout.body_range()).unwrap_or_default());
        Ok(Some((Self::from_header(header, body), layout.frame_size)))
    }

    fn from_header(h: Header, body: Bytes) -> Self {
        Self {
            code: h.code,
            language: h.language,
            version: h.version,
            opaque: h.opaque,
            flag: h.flag,
            remark: h.remark,
            ext_fields: h.ext_fields,
            body,
        }
    }

    fn header_view(&self) -> HeaderRef<'_> {
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
