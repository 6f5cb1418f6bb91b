//! RocketMQ "remoting": frames, headers, codes, and (in `connection`) the per-connection task.
//!
//! Layers, each in its own file (frame, then command, then apply):
//! - [`frame`]: the length-prefixed frame; `check()` without allocating, then split.
//! - [`header`]: the header fields in JSON (lenient in, strict out) and ROCKETMQ binary form.
//! - [`command`]: [`RemotingCommand`], `encode`/`decode` of whole frames.
//! - [`code`]: [`RequestCode`] and [`ResponseCode`], RocketMQ's values, never renumbered.
//!
//! Everything except `connection` is plain std code (no glommio types), so blocking clients
//! such as `loadgen` use it over `std::net::TcpStream`.

pub mod code;
pub mod command;
pub mod connection;
pub mod frame;
pub mod header;

pub use code::{RequestCode, ResponseCode};
pub use command::{RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE, PETREL_VERSION};
pub use frame::{SerializeType, FRAME_SIZE_MAX_DEFAULT};
pub use header::LanguageCode;

/// A frame that cannot be decoded. The connection it came from is closed.
#[derive(thiserror::Error, Debug)]
pub enum FrameError {
    #[error("frame length field {length} is invalid (must be at least 4)")]
    LengthInvalid { length: i64 },
    #[error("frame of {frame_size} bytes exceeds the limit of {frame_size_max} bytes")]
    FrameTooLarge {
        frame_size: usize,
        frame_size_max: usize,
    },
    #[error("header length {header_size} exceeds the frame length {length}")]
    HeaderExceedsFrame { header_size: usize, length: usize },
    #[error("unknown header serialize type {0} (expected 0 = JSON or 1 = ROCKETMQ)")]
    UnknownSerializeType(u8),
    #[error("undecodable header")]
    Header(#[source] HeaderError),
}

/// A header that cannot be parsed.
#[derive(thiserror::Error, Debug)]
pub enum HeaderError {
    #[error("JSON header is not an object")]
    NotAnObject,
    #[error("JSON header: {0}")]
    Json(#[source] serde_json::Error),
    #[error("binary header truncated in field {field}")]
    BinaryTruncated { field: &'static str },
    #[error("binary header field {field} has invalid length {length}")]
    BinaryLength { field: &'static str, length: i32 },
    #[error("binary header field {field} is not UTF-8")]
    InvalidUtf8 { field: &'static str },
}
