//! Validate and view a stored record in place. Never panics, never allocates.
#![deny(clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{MAGIC_BLANK, MAGIC_V1, MAGIC_V2, SYS_FLAG_BORN_HOST_V6, SYS_FLAG_STORE_HOST_V6};

/// Why bytes are not a valid stored record. `Copy`, so recovery can put it in a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared size.
    Incomplete,
    /// MAGICCODE is not a record magic.
    BadMagic,
    /// TOTALSIZE does not match the field lengths, or a length is negative.
    SizeMismatch,
    /// BODYCRC does not match the body.
    ChecksumMismatch,
    /// Topic or properties are not UTF-8.
    NotUtf8,
}

/// What the first 8 bytes at a commitlog position say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Fewer than 8 bytes.
    Short,
    /// All 8 bytes zero: never written.
    Zero,
    /// End-of-segment blank covering `size` bytes.
    Blank {
        /// TOTALSIZE of the blank.
        size: u32,
    },
    /// A record magic with a positive TOTALSIZE.
    Record {
        /// TOTALSIZE.
        size: u32,
    },
    /// Anything else.
    Garbage,
}

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes([
        b.first().copied()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

fn be_i64(buf: &[u8], at: usize) -> Option<i64> {
    let b: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(i64::from_be_bytes(b))
}

fn be_i16(buf: &[u8], at: usize) -> Option<i16> {
    let b: [u8; 2] = buf.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(i16::from_be_bytes(b))
}

/// Classifies the 8 bytes at the start of `buf`.
pub fn peek_header(buf: &[u8]) -> Peek {
    let (Some(size), Some(magic)) = (be_i32(buf, 0), be_i32(buf, 4)) else {
        return Peek::Short;
    };
    match (size, magic) {
        (0, 0) => Peek::Zero,
        (s, MAGIC_BLANK) if s >= 8 => Peek::Blank { size: s as u32 },
        (s, MAGIC_V1 | MAGIC_V2) if s > 0 => Peek::Record { size: s as u32 },
        _ => Peek::Garbage,
    }
}

/// A validated record borrowed from a buffer.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    buf: &'a [u8],
    born_host_len: usize,
    store_host_len: usize,
    body_at: usize,
    body_len: usize,
    topic_at: usize,
    topic_len: usize,
    properties_at: usize,
    properties_len: usize,
}

fn host(buf: &[u8], at: usize, len: usize) -> Option<SocketAddr> {
    let ip: IpAddr = if len == 20 {
        let o: [u8; 16] = buf.get(at..at + 16)?.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        let o: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        IpAddr::V4(Ipv4Addr::from(o))
    };
    let port = be_i32(buf, at + len - 4)?;
    Some(SocketAddr::new(ip, port as u16))
}

/// Validates magic, sizes and CRC of the record at the start of `buf` (which may hold more
/// bytes after it) and returns a view of exactly TOTALSIZE bytes.
pub fn decode(buf: &[u8]) -> Result<RecordView<'_>, DecodeError> {
    let size = match peek_header(buf) {
        Peek::Short => return Err(DecodeError::Incomplete),
        Peek::Record { size } => size as usize,
        Peek::Zero | Peek::Blank { .. } | Peek::Garbage => return Err(DecodeError::BadMagic),
    };
    let buf = buf.get(..size).ok_or(DecodeError::Incomplete)?;
    let magic = be_i32(buf, 4).ok_or(DecodeError::Incomplete)?;
    let sys_flag = be_i32(buf, 36).ok_or(DecodeError::SizeMismatch)?;
    let born_host_len = if sys_flag & SYS_FLAG_BORN_HOST_V6 != 0 {
        20
    } else {
        8
    };
    let store_host_len = if sys_flag & SYS_FLAG_STORE_HOST_V6 != 0 {
        20
    } else {
        8
    };
    let body_len_at = 72 + born_host_len + store_host_len - 4;
    let body_len = be_i32(buf, body_len_at).ok_or(DecodeError::SizeMismatch)?;
    let body_len = usize::try_from(body_len).map_err(|_| DecodeError::SizeMismatch)?;
    let body_at = body_len_at + 4;
    let topic_len_at = body_at
        .checked_add(body_len)
        .ok_or(DecodeError::SizeMismatch)?;
    let (topic_len, topic_at) = if magic == MAGIC_V2 {
        let l = be_i16(buf, topic_len_at).ok_or(DecodeError::SizeMismatch)?;
        (
            usize::try_from(l).map_err(|_| DecodeError::SizeMismatch)?,
            topic_len_at + 2,
        )
    } else {
        let l = *buf.get(topic_len_at).ok_or(DecodeError::SizeMismatch)? as i8;
        (
            usize::try_from(l).map_err(|_| DecodeError::SizeMismatch)?,
            topic_len_at + 1,
        )
    };
    let properties_len_at = topic_at + topic_len;
    let properties_len = be_i16(buf, properties_len_at).ok_or(DecodeError::SizeMismatch)?;
    let properties_len = usize::try_from(properties_len).map_err(|_| DecodeError::SizeMismatch)?;
    let properties_at = properties_len_at + 2;
    if properties_at + properties_len != size {
        return Err(DecodeError::SizeMismatch);
    }
    let body = buf
        .get(body_at..body_at + body_len)
        .ok_or(DecodeError::SizeMismatch)?;
    let crc = be_i32(buf, 8).ok_or(DecodeError::SizeMismatch)?;
    if (crc32fast::hash(body) & 0x7FFF_FFFF) as i32 != crc {
        return Err(DecodeError::ChecksumMismatch);
    }
    let topic = buf
        .get(topic_at..topic_at + topic_len)
        .ok_or(DecodeError::SizeMismatch)?;
    let props = buf
        .get(properties_at..properties_at + properties_len)
        .ok_or(DecodeError::SizeMismatch)?;
    if std::str::from_utf8(topic).is_err() || std::str::from_utf8(props).is_err() {
        return Err(DecodeError::NotUtf8);
    }
    Ok(RecordView {
        buf,
        born_host_len,
        store_host_len,
        body_at,
        body_len,
        topic_at,
        topic_len,
        properties_at,
        properties_len,
    })
}

impl<'a> RecordView<'a> {
    fn i32_at(&self, at: usize) -> i32 {
        be_i32(self.buf, at).unwrap_or_default()
    }
    fn i64_at(&self, at: usize) -> i64 {
        be_i64(self.buf, at).unwrap_or_default()
    }
    /// The whole record (TOTALSIZE bytes).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// TOTALSIZE.
    pub fn total_size(&self) -> u32 {
        self.buf.len() as u32
    }
    /// BODYCRC as stored.
    pub fn body_crc(&self) -> i32 {
        self.i32_at(8)
    }
    /// QUEUEID.
    pub fn queue_id(&self) -> crate::QueueId {
        crate::QueueId(self.i32_at(12) as u32)
    }
    /// FLAG.
    pub fn flag(&self) -> i32 {
        self.i32_at(16)
    }
    /// QUEUEOFFSET.
    pub fn queue_offset(&self) -> crate::QueueOffset {
        crate::QueueOffset(self.i64_at(20) as u64)
    }
    /// PHYSICALOFFSET: this record's commitlog offset.
    pub fn commit_log_offset(&self) -> crate::CommitLogOffset {
        crate::CommitLogOffset(self.i64_at(28) as u64)
    }
    /// SYSFLAG.
    pub fn sys_flag(&self) -> i32 {
        self.i32_at(36)
    }
    /// BORNTIMESTAMP.
    pub fn born_timestamp_ms(&self) -> i64 {
        self.i64_at(40)
    }
    /// BORNHOST.
    pub fn born_host(&self) -> SocketAddr {
        host(self.buf, 48, self.born_host_len)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
    /// STORETIMESTAMP.
    pub fn store_timestamp_ms(&self) -> i64 {
        self.i64_at(48 + self.born_host_len)
    }
    /// STOREHOST.
    pub fn store_host(&self) -> SocketAddr {
        host(self.buf, 56 + self.born_host_len, self.store_host_len)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
    /// RECONSUMETIMES.
    pub fn reconsume_times(&self) -> i32 {
        self.i32_at(56 + self.born_host_len + self.store_host_len)
    }
    /// PREPARED_TX_OFFSET.
    pub fn prepared_transaction_offset(&self) -> i64 {
        self.i64_at(60 + self.born_host_len + self.store_host_len)
    }
    /// BODY.
    pub fn body(&self) -> &'a [u8] {
        self.buf
            .get(self.body_at..self.body_at + self.body_len)
            .unwrap_or_default()
    }
    /// TOPIC.
    pub fn topic(&self) -> &'a str {
        let b = self
            .buf
            .get(self.topic_at..self.topic_at + self.topic_len)
            .unwrap_or_default();
        std::str::from_utf8(b).unwrap_or_default()
    }
    /// PROPERTIES.
    pub fn properties(&self) -> &'a str {
        let b = self
            .buf
            .get(self.properties_at..self.properties_at + self.properties_len)
            .unwrap_or_default();
        std::str::from_utf8(b).unwrap_or_default()
    }
}
