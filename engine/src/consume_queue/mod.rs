//! Consume queues: one per (topic, queue_id), one 20-byte entry per dispatched record.
//!
//! Owned by one shard. Entries live in memory from the queue's min offset on, and are
//! persisted behind the commitlog by the store's checkpoint pass (never fsynced on the hot
//! path); recovery loads them up to the dispatch checkpoint and rebuilds the rest from the
//! commitlog. Invariant: entry i of `entries` holds queue offset `base + i`, and commitlog
//! offsets increase along the queue.
//!
//! Files: `consumequeue/<topic>/<queue_id>/<20-digit byte offset>`, each holding
//! `ENTRIES_PER_FILE` entries (5 MiB, a 4 KiB multiple, unlike Java's 6,000,000 bytes).

mod entry;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

pub use entry::{CqEntry, CQ_ENTRY_SIZE_BYTES};

/// Entries per consume-queue file.
pub const ENTRIES_PER_FILE: u64 = 1 << 18;
/// Bytes per consume-queue file.
pub const FILE_SIZE_BYTES: u64 = ENTRIES_PER_FILE * CQ_ENTRY_SIZE_BYTES as u64;
const _: () = assert!(FILE_SIZE_BYTES.is_multiple_of(crate::config::PAGE_SIZE_BYTES));

/// One queue's entries.
#[derive(Debug, Default)]
pub(crate) struct ConsumeQueue {
    /// Queue offset of `entries[0]` (the min offset).
    pub(crate) base: u64,
    pub(crate) entries: VecDeque<CqEntry>,
    /// Entries below this queue offset are written to the queue's files.
    pub(crate) persisted: u64,
}

impl ConsumeQueue {
    pub(crate) fn min_offset(&self) -> u64 {
        self.base
    }
    pub(crate) fn max_offset(&self) -> u64 {
        self.base + self.entries.len() as u64
    }
    pub(crate) fn get(&self, offset: u64) -> Option<CqEntry> {
        let i = offset.checked_sub(self.base)?;
        self.entries.get(usize::try_from(i).ok()?).copied()
    }

    /// Appends the entry for queue offset `offset`. A gap (records of a deleted queue, or
    /// a queue first seen mid-stream) restarts the queue at `offset`.
    pub(crate) fn push_at(&mut self, offset: u64, e: CqEntry) {
        let max = self.max_offset();
        if offset < max {
            return; // already present (rebuilt twice)
        }
        if offset > max {
            self.entries.clear();
            self.base = offset;
            self.persisted = self.persisted.max(offset);
        }
        self.entries.push_back(e);
    }

    /// Drops entries pointing below `commit_log_offset` from the front (retention).
    pub(crate) fn drop_below(&mut self, commit_log_offset: u64) {
        while let Some(e) = self.entries.front() {
            if e.commit_log_offset >= commit_log_offset {
                break;
            }
            self.entries.pop_front();
            self.base += 1;
        }
        self.persisted = self.persisted.max(self.base);
    }

    /// Drops entries whose record ends past `end` (recovery truncated the log).
    pub(crate) fn truncate_after(&mut self, end: u64) {
        while let Some(e) = self.entries.back() {
            if e.commit_log_offset + u64::from(e.size) <= end {
                break;
            }
            self.entries.pop_back();
        }
        self.persisted = self.persisted.min(self.max_offset());
    }
}

/// Every consume queue of the shard.
#[derive(Debug)]
pub(crate) struct QueueTable {
    pub(crate) topics: HashMap<String, HashMap<u32, ConsumeQueue>>,
}

impl QueueTable {
    pub(crate) fn new() -> Self {
        Self {
            topics: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, topic: &str, queue_id: u32) -> Option<&ConsumeQueue> {
        self.topics.get(topic)?.get(&queue_id)
    }

    pub(crate) fn get_or_create(&mut self, topic: &str, queue_id: u32) -> &mut ConsumeQueue {
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_string(), HashMap::new());
        }
        self.topics
            .get_mut(topic)
            .map(|t| t.entry(queue_id).or_default())
            .expect("topic inserted just above")
    }

    /// Next queue offset to assign in (topic, queue_id).
    pub(crate) fn next_offset(&self, topic: &str, queue_id: u32) -> u64 {
        self.get(topic, queue_id)
            .map_or(0, ConsumeQueue::max_offset)
    }

    pub(crate) fn queue_dir(dir: &Path, topic: &str, queue_id: u32) -> PathBuf {
        dir.join(topic).join(queue_id.to_string())
    }

    pub(crate) fn total_entries(&self) -> usize {
        self.topics
            .values()
            .flat_map(|t| t.values())
            .map(|q| q.entries.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(o: u64) -> CqEntry {
        CqEntry {
            commit_log_offset: o,
            size: 10,
            tags_code: 0,
        }
    }

    #[test]
    fn push_drop_and_truncate_keep_offsets_consistent() {
        let mut q = ConsumeQueue::default();
        for i in 0..5 {
            q.push_at(i, e(i * 10));
        }
        q.push_at(2, e(999)); // duplicate ignored
        assert_eq!((q.min_offset(), q.max_offset()), (0, 5));
        q.drop_below(20);
        assert_eq!((q.min_offset(), q.max_offset()), (2, 5));
        assert_eq!(q.get(2), Some(e(20)));
        q.truncate_after(40);
        assert_eq!(q.max_offset(), 4);
        q.push_at(10, e(100));
        assert_eq!((q.min_offset(), q.max_offset()), (10, 11));
    }
}
