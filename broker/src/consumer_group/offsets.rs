//! Committed consumer offsets of one shard: (topic, group, queue_id) -> the next offset to
//! consume (REMOTING.md §7.2). Updated by UPDATE_CONSUMER_OFFSET and by pulls that carry the
//! COMMIT_OFFSET flag; persisted to `config/consumerOffset.json` every few seconds (only when
//! something changed) and at shutdown; loaded at open.
//!
//! The file keeps Java's shape, `{"offsetTable":{"<topic>@<group>":{"0":12}}}`, but with the
//! queue-id keys quoted (valid JSON; Java writes them bare). Bounded by `KEY_COUNT_MAX`
//! (topic, group) pairs.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config_file::write_file_atomically;
use crate::error::BrokerError;
use crate::topic::DataVersion;

/// Bound on distinct (topic, group) pairs one shard remembers offsets for.
pub const KEY_COUNT_MAX: usize = 200_000;

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct OffsetsFile {
    data_version: DataVersion,
    offset_table: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Committed offsets of one shard.
pub struct ConsumerOffsetTable {
    table: RefCell<HashMap<String, BTreeMap<u32, u64>>>,
    is_dirty: Cell<bool>,
    version: Cell<DataVersion>,
    path: PathBuf,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsetTable {
    /// Loads `<config_dir>/consumerOffset.json` if it exists.
    pub fn open(config_dir: &Path) -> Result<Self, BrokerError> {
        let path = config_dir.join("consumerOffset.json");
        let loaded: OffsetsFile = crate::config_file::read_json_or_default(&path)?;
        Ok(ConsumerOffsetTable {
            table: RefCell::new(loaded.offset_table.into_iter().collect()),
            is_dirty: Cell::new(false),
            version: Cell::new(loaded.data_version),
            path,
        })
    }

    /// The committed offset, if any.
    pub fn query(&self, topic: &str, group: &str, queue_id: u32) -> Option<u64> {
        self.table
            .borrow()
            .get(&key(topic, group))
            .and_then(|q| q.get(&queue_id).copied())
    }

    /// Records `offset` as the group's committed offset of the queue.
    pub fn commit(
        &self,
        topic: &str,
        group: &str,
        queue_id: u32,
        offset: u64,
    ) -> Result<(), BrokerError> {
        let k = key(topic, group);
        {
            let mut table = self.table.borrow_mut();
            if let Some(queues) = table.get_mut(&k) {
                if queues.insert(queue_id, offset) == Some(offset) {
                    return Ok(());
                }
            } else if table.len() >= KEY_COUNT_MAX {
                return Err(BrokerError::SystemBusy(format!(
                    "this shard already tracks offsets of {KEY_COUNT_MAX} (topic, group) pairs"
                )));
            } else {
                table.insert(k, BTreeMap::from([(queue_id, offset)]));
            }
        }
        self.is_dirty.set(true);
        Ok(())
    }

    /// Forgets every offset of a topic (topic deleted).
    pub fn remove_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        let mut table = self.table.borrow_mut();
        let before = table.len();
        table.retain(|k, _| !k.starts_with(&prefix));
        if table.len() != before {
            self.is_dirty.set(true);
        }
    }

    /// Groups with committed offsets on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}@");
        self.table
            .borrow()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// Topics on which `group` has committed offsets, sorted.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        let mut topics: Vec<String> = self
            .table
            .borrow()
            .keys()
            .filter_map(|k| k.strip_suffix(&suffix).map(str::to_string))
            .collect();
        topics.sort();
        topics
    }

    pub fn is_dirty(&self) -> bool {
        self.is_dirty.get()
    }

    /// JSON of the whole table (also the GET_ALL_CONSUMER_OFFSET shape, with quoted keys).
    pub fn to_json(&self) -> Vec<u8> {
        let file = OffsetsFile {
            data_version: self.version.get(),
            offset_table: self
                .table
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// Writes the file if anything changed since the last write.
    pub async fn persist_if_dirty(&self, now_ms: i64) -> Result<(), BrokerError> {
        if !self.is_dirty.get() {
            return Ok(());
        }
        let mut v = self.version.get();
        v.counter = v.counter.wrapping_add(1);
        v.timestamp = now_ms;
        self.version.set(v);
        // Clear first: a commit that lands while the write is in flight marks it dirty again.
        self.is_dirty.set(false);
        let bytes = self.to_json();
        let written = write_file_atomically(&self.path, bytes).await;
        if written.is_err() {
            self.is_dirty.set(true);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_query_and_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = ConsumerOffsetTable::open(dir.path()).expect("open");
        assert_eq!(t.query("T", "g", 0), None);
        t.commit("T", "g", 0, 7).expect("commit");
        t.commit("T", "g", 3, 9).expect("commit");
        assert_eq!(t.query("T", "g", 0), Some(7));
        assert_eq!(t.query("T", "g", 3), Some(9));
        assert!(t.is_dirty());
        assert_eq!(t.groups_of_topic("T"), vec!["g".to_string()]);
        t.remove_topic("T");
        assert_eq!(t.query("T", "g", 0), None);
    }

    #[test]
    fn the_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = ConsumerOffsetTable::open(dir.path()).expect("open");
        t.commit("T", "g", 1, 42).expect("commit");
        let json = t.to_json();
        std::fs::write(dir.path().join("consumerOffset.json"), json).expect("write");
        let t2 = ConsumerOffsetTable::open(dir.path()).expect("reopen");
        assert_eq!(t2.query("T", "g", 1), Some(42));
    }
}
