//! Errors, one enum per operation boundary. Every I/O error keeps its source, the operation,
//! the path and the offset.

use std::io;
use std::path::PathBuf;

/// An I/O failure with the context needed to act on it.
#[derive(thiserror::Error, Debug)]
#[error("{op} failed on {} at offset {offset}: {source}", path.display())]
pub struct IoError {
    /// What the engine was doing ("append", "fdatasync", "read", ...).
    pub op: &'static str,
    /// The file involved.
    pub path: PathBuf,
    /// Byte offset in that file (0 when not meaningful).
    pub offset: u64,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// Builds an IoError from its parts.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, offset: u64, source: io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            offset,
            source,
        }
    }
}

/// A StoreConfig that cannot work.
#[derive(thiserror::Error, Debug, Clone)]
#[error("invalid store config: {reason}")]
pub struct ConfigError {
    /// Which limit is wrong, and why.
    pub reason: String,
}

/// Why a put was refused. Nothing was appended when this is returned.
#[derive(thiserror::Error, Debug)]
pub enum PutError {
    /// Body larger than body_size_max (broker -> MESSAGE_ILLEGAL).
    #[error("body of {size} bytes exceeds body_size_max {max}")]
    BodyTooLarge {
        /// Body size.
        size: usize,
        /// Limit.
        max: u32,
    },
    /// Properties longer than 32767 bytes (broker -> MESSAGE_ILLEGAL).
    #[error("properties of {size} bytes exceed 32767")]
    PropertiesTooLong {
        /// Properties size.
        size: usize,
    },
    /// Topic longer than 32767 bytes or empty (broker -> MESSAGE_ILLEGAL).
    #[error("topic of {size} bytes is empty or too long")]
    TopicTooLong {
        /// Topic size.
        size: usize,
    },
    /// The bounded append buffer is full (broker -> SYSTEM_BUSY).
    #[error("append buffer full")]
    BufferFull,
    /// Disk usage is above disk_max_used_ratio (broker -> SERVICE_NOT_AVAILABLE).
    #[error("disk full")]
    DiskFull,
    /// A write or fdatasync failed earlier; the store accepts no more writes.
    #[error("store poisoned")]
    Poisoned,
    /// shutdown() has begun.
    #[error("store shutting down")]
    ShuttingDown,
}

/// Why a durability ticket did not resolve Ok.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FlushError {
    /// Not durable within sync_flush_timeout_ms (broker -> FLUSH_DISK_TIMEOUT).
    #[error("flush timed out")]
    Timeout,
    /// The store is poisoned; the record may not be durable.
    #[error("store poisoned")]
    Poisoned,
}

/// Why a read failed.
#[derive(thiserror::Error, Debug)]
pub enum GetError {
    /// Reading the commitlog failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The bytes at the offset are not a valid record.
    #[error("invalid record at commitlog offset {offset}: {reason:?}")]
    InvalidRecord {
        /// Commitlog offset.
        offset: u64,
        /// What is wrong.
        reason: crate::record::DecodeError,
    },
    /// The offset is outside the retained commitlog (deleted or not yet written).
    #[error("commitlog offset {offset} is not available")]
    OffsetNotAvailable {
        /// Commitlog offset.
        offset: u64,
    },
}

/// Why the store could not open.
#[derive(thiserror::Error, Debug)]
pub enum OpenError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// I/O during open or recovery.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The files on disk contradict each other in a way recovery cannot repair.
    #[error("recovery failed: {reason}")]
    Corrupt {
        /// What was found.
        reason: String,
    },
}

/// Why shutdown could not flush everything.
#[derive(thiserror::Error, Debug)]
pub enum ShutdownError {
    /// The store was poisoned; some records may not be durable.
    #[error("store poisoned")]
    Poisoned,
    /// Writing consume queues, index or checkpoint failed.
    #[error(transparent)]
    Io(#[from] IoError),
}
