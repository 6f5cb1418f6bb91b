//! The length-prefixed frame (REMOTING.md §1.1).
//!
//! ```text
//! | length: i32 | serializeType: u8 | headerLen: u24 | header | body |
//!   length = 4 + headerLen + bodyLen (the bytes after the length field)
//! ```
//!
//! [`check`] looks at a buffer without allocating and says whether one whole frame is there;
//! only then does the caller split it off and parse the header. Every limit is named here.
#![deny(clippy::indexing_slicing)]

use super::FrameError;

/// Bytes of the `length` prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Bytes of the `serializeType | headerLen` word.
pub const HEADER_WORD_BYTES: usize = 4;
/// Default maximum whole frame (prefix included): Netty's `frameMaxLength`, 16 MiB.
pub const FRAME_SIZE_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// Smallest frame size limit callers may configure (a header must fit).
pub const FRAME_SIZE_MAX_MIN: usize = 1024;

/// How the header of a frame is encoded (byte 4 of the frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerializeType {
    /// `0`: JSON header (what every client sends by default, and what we reply with).
    Json,
    /// `1`: RocketMQ's binary header (REMOTING.md §1.4).
    RocketMq,
}

impl SerializeType {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Json),
            1 => Some(Self::RocketMq),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }
}

/// Where the parts of one complete frame lie, as found by [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Whole frame in bytes, prefix included.
    pub frame_size: usize,
    pub serialize_type: SerializeType,
    /// Header byte count; the header starts at byte 8.
    pub header_size: usize,
}

impl FrameLayout {
    /// Byte range of the header inside the frame.
    pub fn header_range(&self) -> std::ops::Range<usize> {
        let start = LENGTH_PREFIX_BYTES + HEADER_WORD_BYTES;
        start..start + self.header_size
    }

    /// Byte range of the body inside the frame (may be empty).
    pub fn body_range(&self) -> std::ops::Range<usize> {
        self.header_range().end..self.frame_size
    }
}

/// Is there one whole frame at the start of `src`? Never allocates, never panics.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some(layout))`: `src[..layout.frame_size]` is one
/// frame. `Err`: the stream is malformed (close the connection; Java does the same).
/// The length and header word are validated as soon as their 8 bytes arrive, so a bad
/// length is refused before any of its body is buffered.
pub fn check(src: &[u8], frame_size_max: usize) -> Result<Option<FrameLayout>, FrameError> {
    let Some(prefix) = src.get(..LENGTH_PREFIX_BYTES + HEADER_WORD_BYTES) else {
        // Even with 4 bytes we can reject an oversized or negative length early.
        if let Some(len_bytes) = src.get(..LENGTH_PREFIX_BYTES) {
            validate_length(read_i32(len_bytes), frame_size_max)?;
        }
        return Ok(None);
    };
    let (len_bytes, word_bytes) = prefix.split_at(LENGTH_PREFIX_BYTES);
    let length = validate_length(read_i32(len_bytes), frame_size_max)?;
    let word = read_i32(word_bytes) as u32;
    let type_byte = (word >> 24) as u8;
    let header_size = (word & 0x00FF_FFFF) as usize;
    let serialize_type =
        SerializeType::from_byte(type_byte).ok_or(FrameError::UnknownSerializeType(type_byte))?;
    if header_size > length - HEADER_WORD_BYTES {
        return Err(FrameError::HeaderExceedsFrame {
            header_size,
            length,
        });
    }
    let frame_size = LENGTH_PREFIX_BYTES + length;
    if src.len() < frame_size {
        return Ok(None);
    }
    Ok(Some(FrameLayout {
        frame_size,
        serialize_type,
        header_size,
    }))
}

/// `length` must cover the header word and keep the whole frame within the limit.
fn validate_length(length: i32, frame_size_max: usize) -> Result<usize, FrameError> {
    let Ok(length) = usize::try_from(length) else {
        return Err(FrameError::LengthInvalid {
            length: i64::from(length),
        });
    };
    if length < HEADER_WORD_BYTES {
        return Err(FrameError::LengthInvalid {
            length: length as i64,
        });
    }
    if length + LENGTH_PREFIX_BYTES > frame_size_max {
        return Err(FrameError::FrameTooLarge {
            frame_size: length + LENGTH_PREFIX_BYTES,
            frame_size_max,
        });
    }
    Ok(length)
}

fn read_i32(b: &[u8]) -> i32 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    i32::from_be_bytes(a)
}

/// Write the 8-byte frame prefix for a header of `header_size` bytes and a body of
/// `body_size` bytes.
pub fn encode_prefix(
    serialize_type: SerializeType,
    header_size: usize,
    body_size: usize,
) -> [u8; 8] {
    let length = (HEADER_WORD_BYTES + header_size + body_size) as u32;
    let word = (u32::from(serialize_type.as_byte()) << 24) | (header_size as u32 & 0x00FF_FFFF);
    let mut out = [0u8; 8];
    let (a, b) = out.split_at_mut(4);
    a.copy_from_slice(&length.to_be_bytes());
    b.copy_from_slice(&word.to_be_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_prefix_asks_for_more() {
        assert!(matches!(check(&[], 1 << 20), Ok(None)));
        assert!(matches!(check(&[0, 0, 0], 1 << 20), Ok(None)));
        assert!(matches!(check(&[0, 0, 0, 10, 0, 0, 0], 1 << 20), Ok(None)));
    }

    #[test]
    fn negative_or_tiny_length_is_malformed() {
        assert!(matches!(
            check(&[0xff, 0, 0, 0], 1 << 20),
            Err(FrameError::LengthInvalid { .. })
        ));
        assert!(matches!(
            check(&[0, 0, 0, 3], 1 << 20),
            Err(FrameError::LengthInvalid { .. })
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let r = check(&[0x01, 0, 0, 0], 1 << 20);
        assert!(matches!(r, Err(FrameError::FrameTooLarge { .. })));
    }

    #[test]
    fn header_longer_than_frame_is_malformed() {
        let r = check(&[0, 0, 0, 8, 0, 0, 0, 9], 1 << 20);
        assert!(matches!(r, Err(FrameError::HeaderExceedsFrame { .. })));
    }

    #[test]
    fn unknown_serialize_type_is_malformed() {
        let r = check(&[0, 0, 0, 8, 7, 0, 0, 1], 1 << 20);
        assert!(matches!(r, Err(FrameError::UnknownSerializeType(7))));
    }

    #[test]
    fn complete_frame_reports_layout() {
        let mut f = encode_prefix(SerializeType::Json, 2, 3).to_vec();
        f.extend_from_slice(b"{}abc");
        let l = check(&f, 1 << 20).ok().flatten().expect("complete");
        assert_eq!(l.frame_size, 13);
        assert_eq!(&f[l.header_range()], b"{}");
        assert_eq!(&f[l.body_range()], b"abc");
        assert!(matches!(check(&f[..12], 1 << 20), Ok(None)));
    }
}
