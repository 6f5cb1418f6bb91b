//! The stored record: RocketMQ's on-disk message layout (REMOTING.md §4.1), byte for byte.
//! The same bytes go to the commitlog and, unchanged, into PULL/QUERY/VIEW responses.
//!
//! | offset (v4/v4) | size | field |
//! |---|---|---|
//! | 0 | 4 | TOTALSIZE i32 (whole record) |
//! | 4 | 4 | MAGICCODE i32: `0xDAA320A7` (1-byte topic length) or `0xDAA320AB` (2-byte) |
//! | 8 | 4 | BODYCRC i32 = crc32(body) & 0x7FFFFFFF |
//! | 12 | 4 | QUEUEID i32 |
//! | 16 | 4 | FLAG i32 |
//! | 20 | 8 | QUEUEOFFSET i64 |
//! | 28 | 8 | PHYSICALOFFSET i64 (this record's commitlog offset) |
//! | 36 | 4 | SYSFLAG i32 (bit 0x10: born host IPv6, 0x20: store host IPv6) |
//! | 40 | 8 | BORNTIMESTAMP i64 |
//! | 48 | 8/20 | BORNHOST: IPv4 (4) or IPv6 (16) + port i32 |
//! | 56 | 8 | STORETIMESTAMP i64 |
//! | 64 | 8/20 | STOREHOST |
//! | 72 | 4 | RECONSUMETIMES i32 |
//! | 76 | 8 | PREPARED_TX_OFFSET i64 |
//! | 84 | 4 | BODYLEN i32, then BODY |
//! | | 1/2 | TOPICLEN i8/i16, then TOPIC (UTF-8) |
//! | | 2 | PROPERTIESLEN i16, then PROPERTIES (UTF-8) |
//!
//! All integers are big-endian (Java ByteBuffer). Invariant: `encode` writes exactly
//! `encoded_size` bytes and `decode(encode(x))` returns x; `decode` never panics.

mod decode;
mod encode;

pub use decode::{decode, peek_header, DecodeError, Peek, RecordView};
pub use encode::encode;
pub(crate) use encode::{check, encoded_size};

/// Magic of a record whose topic length is 1 byte.
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic of a record whose topic length is 2 bytes (topics longer than 127 bytes).
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Magic of the end-of-segment blank: `[remaining i32][0xCBD43194]`.
pub const MAGIC_BLANK: i32 = 0xCBD4_3194_u32 as i32;
/// Size of the end-of-segment blank marker.
pub const BLANK_SIZE_BYTES: u64 = 8;
/// sysFlag bit: born host is IPv6.
pub const SYS_FLAG_BORN_HOST_V6: i32 = 0x10;
/// sysFlag bit: store host is IPv6.
pub const SYS_FLAG_STORE_HOST_V6: i32 = 0x20;
/// sysFlag transaction type mask.
pub const SYS_FLAG_TRANSACTION_MASK: i32 = 0xC;
/// Transaction type: half (prepared) message.
pub const SYS_FLAG_TRANSACTION_PREPARED: i32 = 0x4;
/// Transaction type: rollback.
pub const SYS_FLAG_TRANSACTION_ROLLBACK: i32 = 0xC;
/// Longest topic (i16 length).
pub const TOPIC_LEN_MAX: usize = i16::MAX as usize;
/// Longest properties string (i16 length).
pub const PROPERTIES_LEN_MAX: usize = i16::MAX as usize;
/// Offset of BODYLEN with two IPv4 hosts.
pub const BODY_LEN_OFFSET_V4: usize = 84;

/// One message to append, as the broker hands it over.
#[derive(Clone, Debug)]
pub struct PutMessage<'a> {
    /// Topic name (UTF-8, 1..=32767 bytes).
    pub topic: &'a str,
    /// Queue inside the topic.
    pub queue_id: crate::QueueId,
    /// User flag from the send header.
    pub flag: i32,
    /// Body as sent (possibly compressed; stored unchanged).
    pub body: &'a [u8],
    /// RocketMQ properties string: name \x01 value \x02 ...
    pub properties: &'a str,
    /// sysFlag; the host V6 bits are set by the engine from the actual addresses.
    pub sys_flag: i32,
    /// Producer's timestamp.
    pub born_timestamp_ms: i64,
    /// Producer's socket address.
    pub born_host: std::net::SocketAddr,
    /// Broker address clients can reach.
    pub store_host: std::net::SocketAddr,
    /// Reconsume count.
    pub reconsume_times: i32,
    /// Commit record: commitlog offset of its half record; else 0.
    pub prepared_transaction_offset: i64,
}

impl PutMessage<'_> {
    /// Whether this record gets a consume-queue entry (prepared and rollback ones do not).
    pub fn is_dispatched_to_queue(&self) -> bool {
        let t = self.sys_flag & SYS_FLAG_TRANSACTION_MASK;
        t != SYS_FLAG_TRANSACTION_PREPARED && t != SYS_FLAG_TRANSACTION_ROLLBACK
    }
}

#[cfg(test)]
mod tests;
