//! Key index: `topic#key` for every KEYS word and for UNIQ_KEY -> commitlog offsets.
//!
//! Owned by one shard. One file per commitlog segment (`index/<20-digit segment base>`), an
//! append-only array of 20-byte entries `[key_hash i32][commit_log_offset i64]
//! [store_timestamp_ms i64]`, persisted behind the commitlog by the checkpoint pass and
//! deleted with its segment. (Java's hash-slot file is built for mmap; under O_DIRECT an
//! append-only file plus an in-memory map is cheaper.) Queries match the hash, then the
//! caller checks the record's topic and key, so hash collisions are never returned.
//! Invariant: entries of one file are in commitlog order.
#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};

use crate::properties;
use crate::tags::java_string_hash;

/// Size of one index entry on disk.
pub const INDEX_ENTRY_SIZE_BYTES: usize = 20;

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// |Java hashCode| of `topic#key` (0 if it overflows).
    pub key_hash: i32,
    /// Record position.
    pub commit_log_offset: u64,
    /// Record store time.
    pub store_timestamp_ms: i64,
}

impl IndexEntry {
    /// The 20 bytes of this entry.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_SIZE_BYTES] {
        let mut out = [0u8; INDEX_ENTRY_SIZE_BYTES];
        let (a, rest) = out.split_at_mut(4);
        let (b, c) = rest.split_at_mut(8);
        a.copy_from_slice(&self.key_hash.to_be_bytes());
        b.copy_from_slice(&(self.commit_log_offset as i64).to_be_bytes());
        c.copy_from_slice(&self.store_timestamp_ms.to_be_bytes());
        out
    }
    /// Parses 20 bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            key_hash: i32::from_be_bytes(b.get(0..4)?.try_into().ok()?),
            commit_log_offset: i64::from_be_bytes(b.get(4..12)?.try_into().ok()?) as u64,
            store_timestamp_ms: i64::from_be_bytes(b.get(12..20)?.try_into().ok()?),
        })
    }
}

/// |hashCode| of `topic#key`, as Java's IndexService.
pub fn key_hash(topic: &str, key: &str) -> i32 {
    let mut s = String::with_capacity(topic.len() + 1 + key.len());
    s.push_str(topic);
    s.push('#');
    s.push_str(key);
    java_string_hash(&s).checked_abs().unwrap_or(0)
}

/// The keys of a record: every KEYS word and UNIQ_KEY.
pub fn record_keys(props: &str) -> impl Iterator<Item = &str> {
    let keys = properties::get(props, properties::KEYS).unwrap_or("");
    let uniq = properties::get(props, properties::UNIQ_KEY);
    keys.split(' ').filter(|k| !k.is_empty()).chain(uniq)
}

/// Entries of one index file (one per commitlog segment).
#[derive(Debug, Default)]
pub(crate) struct IndexFile {
    pub(crate) entries: Vec<IndexEntry>,
    /// Entries below this count are written to the file.
    pub(crate) persisted: usize,
}

/// The shard's key index.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_hash: HashMap<i32, Vec<IndexEntry>>,
    pub(crate) files: BTreeMap<u64, IndexFile>,
}

impl Index {
    /// Adds an entry to the file of segment `segment_base`.
    pub(crate) fn add(&mut self, segment_base: u64, e: IndexEntry) {
        self.by_hash.entry(e.key_hash).or_default().push(e);
        self.files.entry(segment_base).or_default().entries.push(e);
    }

    /// Adds every key of a record.
    pub(crate) fn add_record(
        &mut self,
        segment_base: u64,
        topic: &str,
        props: &str,
        commit_log_offset: u64,
        store_timestamp_ms: i64,
    ) -> usize {
        let mut n = 0;
        for k in record_keys(props) {
            let e = IndexEntry {
                key_hash: key_hash(topic, k),
                commit_log_offset,
                store_timestamp_ms,
            };
            self.add(segment_base, e);
            n += 1;
        }
        n
    }

    /// Candidate offsets for `topic#key` stored within [begin_ms, end_ms], newest first.
    pub(crate) fn candidates(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
    ) -> Vec<u64> {
        let h = key_hash(topic, key);
        let Some(v) = self.by_hash.get(&h) else {
            return Vec::new();
        };
        let mut out: Vec<u64> = v
            .iter()
            .filter(|e| e.store_timestamp_ms >= begin_ms && e.store_timestamp_ms <= end_ms)
            .map(|e| e.commit_log_offset)
            .collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        out
    }

    /// Forgets the file of a deleted segment.
    pub(crate) fn drop_segment(&mut self, segment_base: u64, segment_end: u64) {
        self.files.remove(&segment_base);
        self.by_hash.retain(|_, v| {
            v.retain(|e| e.commit_log_offset >= segment_end);
            !v.is_empty()
        });
    }

    /// Drops entries for records past `end` (recovery truncated the log).
    pub(crate) fn truncate_after(&mut self, end: u64) {
        for f in self.files.values_mut() {
            f.entries.retain(|e| e.commit_log_offset < end);
            f.persisted = f.persisted.min(f.entries.len());
        }
        self.by_hash.retain(|_, v| {
            v.retain(|e| e.commit_log_offset < end);
            !v.is_empty()
        });
    }

    pub(crate) fn total_entries(&self) -> usize {
        self.files.values().map(|f| f.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entry_round_trips_and_keys_are_found() {
        let e = IndexEntry {
            key_hash: 7,
            commit_log_offset: 1 << 40,
            store_timestamp_ms: -1,
        };
        assert_eq!(IndexEntry::decode(&e.encode()), Some(e));
        let props = "KEYS\u{1}a b\u{2}UNIQ_KEY\u{1}U1\u{2}";
        assert_eq!(record_keys(props).collect::<Vec<_>>(), vec!["a", "b", "U1"]);
        let mut idx = Index::default();
        assert_eq!(idx.add_record(0, "T", props, 100, 5), 3);
        idx.add_record(0, "T", props, 200, 9);
        assert_eq!(idx.candidates("T", "b", 0, 10), vec![200, 100]);
        assert_eq!(idx.candidates("T", "b", 6, 10), vec![200]);
        assert!(idx.candidates("Other", "zzz-none", 0, 10).is_empty());
        idx.drop_segment(0, 150);
        assert_eq!(idx.candidates("T", "U1", 0, 10), vec![200]);
    }
}
