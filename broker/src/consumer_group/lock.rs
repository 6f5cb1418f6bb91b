//! Orderly-consume queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ, REMOTING.md §7.8): per
//! (group, topic, queue_id) the client id holding it and when it last renewed. A lock is free
//! when unowned or older than `LOCK_MAX_LIVE_MS`; the holder renews it by locking again.
//!
//! Owned by one shard. Bounded by `LOCK_COUNT_MAX` entries; expired entries are swept.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Java's `rocketmq.broker.rebalance.lockMaxLiveTime` default.
pub const LOCK_MAX_LIVE_MS: i64 = 60_000;
pub const LOCK_COUNT_MAX: usize = 1_000_000;

/// `MessageQueue.java` as JSON (field order brokerName, queueId, topic).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    #[serde(default)]
    pub broker_name: String,
    #[serde(default)]
    pub queue_id: i32,
    pub topic: String,
}

#[derive(Clone, Debug)]
struct LockEntry {
    client_id: String,
    last_update_ms: i64,
}

impl LockEntry {
    fn is_expired(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_update_ms) > LOCK_MAX_LIVE_MS
    }
}

/// Queue locks of one shard.
/// (topic, queue_id) -> holder, for one group.
type GroupLocks = HashMap<(String, i32), LockEntry>;

#[derive(Default)]
pub struct LockTable {
    locks: RefCell<HashMap<String, GroupLocks>>,
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn count(&self) -> usize {
        self.locks.borrow().values().map(HashMap::len).sum()
    }

    /// Locks (or renews) each queue for `client_id`; returns the queues it now holds.
    pub fn lock_batch(
        &self,
        group: &str,
        mqs: &[MessageQueue],
        client_id: &str,
        now_ms: i64,
    ) -> Vec<MessageQueue> {
        let mut room = LOCK_COUNT_MAX.saturating_sub(self.count());
        let mut locks = self.locks.borrow_mut();
        let group_locks = match locks.get_mut(group) {
            Some(g) => g,
            None => locks.entry(group.to_string()).or_default(),
        };
        let mut locked = Vec::with_capacity(mqs.len());
        for mq in mqs {
            let key = (mq.topic.clone(), mq.queue_id);
            match group_locks.get_mut(&key) {
                Some(entry) if entry.client_id == client_id || entry.is_expired(now_ms) => {
                    entry.client_id.clear();
                    entry.client_id.push_str(client_id);
                    entry.last_update_ms = now_ms;
                    locked.push(mq.clone());
                }
                Some(_) => {}
                None if room > 0 => {
                    room -= 1;
                    group_locks.insert(
                        key,
                        LockEntry {
                            client_id: client_id.to_string(),
                            last_update_ms: now_ms,
                        },
                    );
                    locked.push(mq.clone());
                }
                None => {}
            }
        }
        locked
    }

    /// Releases the queues held by `client_id`.
    pub fn unlock_batch(&self, group: &str, mqs: &[MessageQueue], client_id: &str) {
        let mut locks = self.locks.borrow_mut();
        if let Some(group_locks) = locks.get_mut(group) {
            for mq in mqs {
                let key = (mq.topic.clone(), mq.queue_id);
                if group_locks
                    .get(&key)
                    .is_some_and(|e| e.client_id == client_id)
                {
                    group_locks.remove(&key);
                }
            }
            if group_locks.is_empty() {
                locks.remove(group);
            }
        }
    }

    /// True when the group holds no unexpired lock (then retries go to %RETRY%, not DLQ).
    pub fn is_lock_all_expired(&self, group: &str, now_ms: i64) -> bool {
        self.locks
            .borrow()
            .get(group)
            .is_none_or(|g| g.values().all(|e| e.is_expired(now_ms)))
    }

    /// Drops expired locks.
    pub fn sweep(&self, now_ms: i64) {
        let mut locks = self.locks.borrow_mut();
        locks.retain(|_, g| {
            g.retain(|_, e| !e.is_expired(now_ms));
            !g.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "b".into(),
            queue_id: q,
            topic: "T".into(),
        }
    }

    #[test]
    fn a_lock_is_exclusive_until_it_expires() {
        let t = LockTable::new();
        assert_eq!(t.lock_batch("g", &[mq(0), mq(1)], "c1", 0).len(), 2);
        assert!(t.lock_batch("g", &[mq(0)], "c2", 1000).is_empty());
        assert!(!t.is_lock_all_expired("g", 1000));
        assert_eq!(
            t.lock_batch("g", &[mq(0)], "c2", LOCK_MAX_LIVE_MS + 1)
                .len(),
            1
        );
        t.unlock_batch("g", &[mq(0)], "c2");
        assert_eq!(
            t.lock_batch("g", &[mq(0)], "c3", LOCK_MAX_LIVE_MS + 2)
                .len(),
            1
        );
        t.sweep(10 * LOCK_MAX_LIVE_MS);
        assert!(t.is_lock_all_expired("g", 10 * LOCK_MAX_LIVE_MS));
    }
}
