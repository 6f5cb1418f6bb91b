//! Newtypes for every offset or id that could be confused with another one.
//! Arithmetic goes through named methods so a queue offset is never added to a byte offset.

/// A byte position in the shard's commitlog (RocketMQ's "phy offset").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CommitLogOffset(pub u64);

/// A logical position in one consume queue: entry n is the n-th record of (topic, queue_id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QueueOffset(pub u64);

/// A queue number inside a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QueueId(pub u32);

impl CommitLogOffset {
    /// The offset `bytes` further on.
    pub fn advanced_by(self, bytes: u64) -> Self {
        Self(self.0 + bytes)
    }
}

impl QueueOffset {
    /// The next queue offset.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

/// Whether a put waits for fdatasync (RocketMQ's flushDiskType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMode {
    /// SYNC_FLUSH: the ticket resolves after the write+fdatasync covering the record.
    Sync,
    /// ASYNC_FLUSH: data is written promptly and fdatasynced every `flush_interval_ms`.
    Async,
}
