//! Delayed delivery: RocketMQ's 18 delay levels (REMOTING.md §7.5).
//!
//! A message sent with `DELAY=n` (n ≥ 1, capped at 18), and every retry copy made by
//! CONSUMER_SEND_MSG_BACK, is not stored in its topic but parked ([`park`]) in
//! `SCHEDULE_TOPIC_XXXX`, queue `n - 1`, with its real topic and queue in the `REAL_TOPIC` /
//! `REAL_QID` properties. One task per shard ([`Scheduler::start`]) walks the 18 queues and,
//! once a message's delivery time (store time + the level's delay) has come, writes a copy to
//! its real topic and queue (same body, flag, sysFlag, born time and host, reconsume times;
//! properties without `DELAY`), then advances that level's delivery offset.
//!
//! Invariants:
//! - Bounded: the consume queue is the queue. Nothing pending is held in memory; per level the
//!   task keeps only its next offset and the due time of that head message.
//! - Ordered per level: a level has one delay, so delivery times grow with the queue offset and
//!   only the head of each level is ever checked. The task sleeps until the earliest head is due
//!   (at most `DUE_WAIT_MAX_MS`), or, when every level is idle, until a message is parked
//!   (`Scheduler::wake`), the offsets are due to be written, or `IDLE_WAIT_MAX_MS` passes.
//! - At-least-once: the per-level offsets (`<store_dir>/config/delayOffset.json`, Java's
//!   `{"offsetTable":{"<level>":<offset>}}` shape) are written only once every copy they cover
//!   is durable, every `PERSIST_INTERVAL_MS` and at shutdown. After a crash delivery resumes
//!   from the file, so a message is delivered again rather than lost.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Weak;
use std::time::Duration;

use engine::{CommitLogOffset, GetLimit, GetStatus, PutError, PutMessage, QueueId, QueueOffset};
use glommio::channels::local_channel::LocalReceiver;
use serde::{Deserialize, Serialize};

use crate::background::{PendingCopies, Settled, WakeableTask};
use crate::config_file::write_file_atomically;
use crate::error::BrokerError;
use crate::processor::send::{Properties, PROPERTY_DELAY, PROPERTY_WAIT};
use crate::shard::{now_ms, Shard};
use crate::topic::{DataVersion, SCHEDULE_TOPIC};

/// Number of delay levels (`messageDelayLevel` has 18 entries).
pub const DELAY_LEVEL_COUNT: usize = 18;
/// `messageDelayLevel` default: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
pub const DELAY_LEVELS_MS: [i64; DELAY_LEVEL_COUNT] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];
/// Original topic of a parked message.
pub const PROPERTY_REAL_TOPIC: &str = "REAL_TOPIC";
/// Original queue id of a parked message.
pub const PROPERTY_REAL_QID: &str = "REAL_QID";
/// 5.x timer properties, dropped on delivery like Java does.
const PROPERTY_TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
const PROPERTY_TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";

/// Longest sleep while some head is pending (a clock step cannot delay delivery longer).
pub const DUE_WAIT_MAX_MS: u64 = 100;
/// Longest sleep while every level is idle and the offsets are written (a park wakes the task
/// at once; this is only a safety net, since every wake-up costs CPU on an idle shard).
pub const IDLE_WAIT_MAX_MS: u64 = 60_000;
/// Wait before trying again after the store refused a write or a read failed.
pub const RETRY_WAIT_MS: u64 = 1_000;
/// How often changed delivery offsets are written.
pub const PERSIST_INTERVAL_MS: i64 = 1_000;
/// A head whose record cannot be read this many times in a row is skipped (logged).
pub const HEAD_READ_ATTEMPTS_MAX: u32 = 30;

/// A delay level, 1..=18.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DelayLevel(u8);

impl DelayLevel {
    /// The level a message asks for: none for `n ≤ 0`, 18 for anything above 18 (Java clamps).
    pub fn from_requested(n: i64) -> Option<DelayLevel> {
        if n <= 0 {
            return None;
        }
        let clamped = n.min(DELAY_LEVEL_COUNT as i64);
        u8::try_from(clamped).ok().map(DelayLevel)
    }

    /// The level of a `DELAY` property value (unparsable or ≤ 0: none).
    pub fn from_property(value: &str) -> Option<DelayLevel> {
        value
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(Self::from_requested)
    }

    /// The level whose schedule queue is `queue_id` (queue id = level - 1).
    pub fn from_queue_id(queue_id: QueueId) -> Option<DelayLevel> {
        let level = queue_id.0.checked_add(1)?;
        if level as usize > DELAY_LEVEL_COUNT {
            return None;
        }
        u8::try_from(level).ok().map(DelayLevel)
    }

    /// Every level, 1 to 18.
    pub fn all() -> impl Iterator<Item = DelayLevel> {
        (1..=DELAY_LEVEL_COUNT as u8).map(DelayLevel)
    }

    pub fn get(self) -> u32 {
        u32::from(self.0)
    }

    /// Its queue in `SCHEDULE_TOPIC_XXXX`.
    pub fn queue_id(self) -> QueueId {
        QueueId(self.get() - 1)
    }

    /// 0-based position in per-level arrays.
    fn index(self) -> usize {
        usize::from(self.0) - 1
    }

    pub fn delay_ms(self) -> i64 {
        DELAY_LEVELS_MS[self.index()]
    }
}

/// MessageSysFlag transaction types that may be delayed (not-a-transaction and commit).
const TRANSACTION_MASK: i32 = 0xC;
const TRANSACTION_NOT_TYPE: i32 = 0;
const TRANSACTION_COMMIT_TYPE: i32 = 0x8;

/// Java's `HookUtils.handleScheduleMessage`: when a (non-transactional or committed) message
/// carries `DELAY` > 0, rewrites its properties for parking (`DELAY` clamped to 18,
/// `REAL_TOPIC`, `REAL_QID`) and returns the level; the caller stores it in
/// `SCHEDULE_TOPIC_XXXX` queue `level.queue_id()`. Returns None (properties untouched) when
/// the message is not delayed.
pub fn park(
    props: &mut Properties,
    sys_flag: i32,
    topic: &str,
    queue_id: u32,
) -> Option<DelayLevel> {
    let tran_type = sys_flag & TRANSACTION_MASK;
    if tran_type != TRANSACTION_NOT_TYPE && tran_type != TRANSACTION_COMMIT_TYPE {
        return None;
    }
    let level = props
        .get(PROPERTY_DELAY)
        .and_then(DelayLevel::from_property)?;
    props.set(PROPERTY_DELAY, &level.get().to_string());
    props.set(PROPERTY_REAL_TOPIC, topic);
    props.set(PROPERTY_REAL_QID, &queue_id.to_string());
    Some(level)
}

/// Where a parked message goes back to, and the properties it is delivered with.
#[derive(Debug, PartialEq, Eq)]
pub struct Unparked {
    pub topic: String,
    pub queue_id: u32,
    pub properties: String,
}

/// The delivery of a parked message's properties: real topic and queue, `DELAY` and the timer
/// properties removed, `WAIT=false` (Java's `messageTimeup`; `REAL_TOPIC`/`REAL_QID` stay, as
/// in Java). None when the real topic or queue is missing or malformed.
pub fn unpark(properties: &str) -> Option<Unparked> {
    let mut props = Properties::parse(properties);
    let topic = props.get(PROPERTY_REAL_TOPIC)?.to_string();
    let queue_id = props.get(PROPERTY_REAL_QID)?.trim().parse::<u32>().ok()?;
    if topic.is_empty() {
        return None;
    }
    props.remove(PROPERTY_DELAY);
    props.remove(PROPERTY_TIMER_DELIVER_MS);
    props.remove(PROPERTY_TIMER_DELAY_SEC);
    props.set(PROPERTY_WAIT, "false");
    Some(Unparked {
        topic,
        queue_id,
        properties: props.encode(),
    })
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DelayOffsetFile {
    data_version: DataVersion,
    offset_table: BTreeMap<u32, u64>,
}

/// One shard's delayed-delivery state: the next offset to deliver per level, and the task.
pub struct Scheduler {
    /// Next queue offset of each level's schedule queue to deliver (index = level - 1).
    offsets: Cell<[u64; DELAY_LEVEL_COUNT]>,
    is_dirty: Cell<bool>,
    version: Cell<DataVersion>,
    path: PathBuf,
    background: WakeableTask,
    delivered_count: Cell<u64>,
}

impl Scheduler {
    /// Loads `<config_dir>/delayOffset.json` if it exists (levels outside 1..=18 are ignored).
    pub fn open(config_dir: &Path) -> Result<Scheduler, BrokerError> {
        let path = config_dir.join("delayOffset.json");
        let loaded: DelayOffsetFile = crate::config_file::read_json_or_default(&path)?;
        let mut offsets = [0u64; DELAY_LEVEL_COUNT];
        for (level, offset) in &loaded.offset_table {
            let in_range = (1..=DELAY_LEVEL_COUNT).contains(&(*level as usize));
            if let (true, Some(level)) = (in_range, DelayLevel::from_requested(i64::from(*level))) {
                offsets[level.index()] = *offset;
            }
        }
        Ok(Scheduler {
            offsets: Cell::new(offsets),
            is_dirty: Cell::new(false),
            version: Cell::new(loaded.data_version),
            path,
            background: WakeableTask::new(),
            delivered_count: Cell::new(0),
        })
    }

    /// Spawns the delivery task (once; later calls do nothing).
    pub fn start(&self, shard: Weak<Shard>) {
        self.background.start(|wake_rx| run(shard, wake_rx));
    }

    /// A message was parked (or the shard is stopping): look at the heads now.
    pub fn wake(&self) {
        self.background.wake();
    }

    /// Waits for the task to finish (it stops once the shard is stopping, after writing the
    /// offsets of everything it delivered). Call after `Shard::begin_shutdown`.
    pub async fn stop(&self) {
        self.background.join().await;
    }

    /// Next offset to deliver of `level`.
    pub fn offset(&self, level: DelayLevel) -> QueueOffset {
        QueueOffset(self.offsets.get()[level.index()])
    }

    /// Every level's next offset (for admin and metrics).
    pub fn offsets(&self) -> [u64; DELAY_LEVEL_COUNT] {
        self.offsets.get()
    }

    /// Messages delivered to their real topic since the shard opened.
    pub fn delivered_count(&self) -> u64 {
        self.delivered_count.get()
    }

    fn set_offset(&self, level: DelayLevel, offset: QueueOffset) {
        let mut offsets = self.offsets.get();
        if offsets[level.index()] != offset.0 {
            offsets[level.index()] = offset.0;
            self.offsets.set(offsets);
            self.is_dirty.set(true);
        }
    }

    fn to_json(&self, offsets: &[u64; DELAY_LEVEL_COUNT]) -> Vec<u8> {
        let file = DelayOffsetFile {
            data_version: self.version.get(),
            offset_table: DelayLevel::all()
                .map(|l| (l.get(), offsets[l.index()]))
                .collect(),
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }
}

/// What one level's head is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LevelState {
    /// Nothing parked past the delivery offset.
    Idle,
    /// The head (or a retry) is due in this many ms.
    DueIn(u64),
}

/// The head of one level as last looked at: its queue offset, its delivery time once read,
/// and how often reading it failed.
#[derive(Clone, Copy, Debug, Default)]
struct Head {
    offset: Option<u64>,
    due_ms: Option<i64>,
    read_failures: u32,
}

/// The delivery task: runs until the shard is stopping or dropped.
async fn run(shard: Weak<Shard>, wake: LocalReceiver<()>) {
    let mut heads = [Head::default(); DELAY_LEVEL_COUNT];
    let mut pending = PendingCopies::default();
    let mut last_persist_ms = now_ms();
    loop {
        let wait_ms = {
            let Some(shard) = shard.upgrade() else {
                return;
            };
            if shard.is_stopping() {
                persist(&shard, &mut pending).await;
                return;
            }
            let mut wait_ms = IDLE_WAIT_MAX_MS;
            for level in DelayLevel::all() {
                let state =
                    deliver_due(&shard, level, &mut heads[level.index()], &mut pending).await;
                if let LevelState::DueIn(ms) = state {
                    wait_ms = wait_ms.min(ms);
                }
                if shard.is_stopping() {
                    break;
                }
            }
            let now = now_ms();
            if shard.schedule().is_dirty.get() && now - last_persist_ms >= PERSIST_INTERVAL_MS {
                persist(&shard, &mut pending).await;
                last_persist_ms = now;
            }
            if shard.schedule().is_dirty.get() {
                // Come back when the offsets are due to be written (or retried).
                let persist_in = last_persist_ms + PERSIST_INTERVAL_MS - now;
                wait_ms = wait_ms.min(u64::try_from(persist_in).unwrap_or(0).max(1));
            }
            wait_ms
        };
        futures_lite::future::or(
            async {
                // None: the sender (the shard) is gone; the next turn sees that.
                let _ = wake.recv().await;
            },
            glommio::timer::sleep(Duration::from_millis(wait_ms)),
        )
        .await;
    }
}

/// Delivers every due message at the head of `level`; says when to look again.
async fn deliver_due(
    shard: &Shard,
    level: DelayLevel,
    head: &mut Head,
    pending: &mut PendingCopies,
) -> LevelState {
    let store = shard.store();
    let scheduler = shard.schedule();
    loop {
        if shard.is_stopping() {
            return LevelState::Idle;
        }
        let offset = scheduler.offset(level);
        let max = store.max_offset(SCHEDULE_TOPIC, level.queue_id());
        if offset >= max {
            if offset > max {
                // The offsets file is ahead of the queue (a store that lost its unflushed
                // tail): deliver whatever is parked from now on.
                log::warn!(
                    "shard {}: delay level {} offset {} is past the queue end {}, reset",
                    shard.id(),
                    level.get(),
                    offset.0,
                    max.0
                );
                scheduler.set_offset(level, max);
            }
            return LevelState::Idle;
        }
        if head.offset != Some(offset.0) {
            *head = Head {
                offset: Some(offset.0),
                due_ms: None,
                read_failures: 0,
            };
        }
        let now = now_ms();
        if let Some(due_ms) = head.due_ms.filter(|due| *due > now) {
            return due_in(due_ms - now);
        }
        let got = store
            .get(
                SCHEDULE_TOPIC,
                level.queue_id(),
                offset,
                GetLimit {
                    count_max: 1,
                    bytes_max: u32::MAX,
                },
                &|_| true,
            )
            .await;
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                log::warn!(
                    "shard {}: delay level {} read at {} failed: {e}",
                    shard.id(),
                    level.get(),
                    offset.0
                );
                return LevelState::DueIn(RETRY_WAIT_MS);
            }
        };
        let record = match got.status {
            GetStatus::Found => match got.messages.into_iter().next() {
                Some(record) => record,
                None => return LevelState::DueIn(RETRY_WAIT_MS),
            },
            GetStatus::OffsetTooSmall | GetStatus::MessageWasRemoving => {
                log::warn!(
                    "shard {}: delay level {}: messages {}..{} expired before delivery",
                    shard.id(),
                    level.get(),
                    offset.0,
                    got.next_begin_offset.0
                );
                scheduler.set_offset(level, got.next_begin_offset.max(QueueOffset(offset.0 + 1)));
                continue;
            }
            GetStatus::OffsetOverflowOne
            | GetStatus::OffsetOverflowBadly
            | GetStatus::NoMessageInQueue
            | GetStatus::NoMatchedLogicQueue => return LevelState::Idle,
            GetStatus::OffsetFoundNull | GetStatus::NoMatchedMessage => {
                head.read_failures += 1;
                if head.read_failures < HEAD_READ_ATTEMPTS_MAX {
                    return LevelState::DueIn(DUE_WAIT_MAX_MS);
                }
                log::warn!(
                    "shard {}: delay level {}: message at {} unreadable ({:?}), skipped",
                    shard.id(),
                    level.get(),
                    offset.0,
                    got.status
                );
                scheduler.set_offset(level, QueueOffset(offset.0 + 1));
                continue;
            }
        };
        let view = match engine::record::decode(&record) {
            Ok(view) => view,
            Err(e) => {
                log::warn!(
                    "shard {}: delay level {}: record at {} does not decode ({e:?}), skipped",
                    shard.id(),
                    level.get(),
                    offset.0
                );
                scheduler.set_offset(level, QueueOffset(offset.0 + 1));
                continue;
            }
        };
        let due_ms = view.store_timestamp_ms().saturating_add(level.delay_ms());
        head.due_ms = Some(due_ms);
        head.read_failures = 0;
        if due_ms > now {
            return due_in(due_ms - now);
        }
        match deliver(shard, &view) {
            Delivery::Done(put) => {
                pending.end = Some(CommitLogOffset(
                    put.commit_log_offset.0 + u64::from(put.size_bytes),
                ));
                pending.ticket = Some(put.ticket);
                scheduler
                    .delivered_count
                    .set(scheduler.delivered_count.get() + 1);
                scheduler.set_offset(level, QueueOffset(offset.0 + 1));
            }
            Delivery::Skipped(reason) => {
                log::warn!(
                    "shard {}: delay level {}: message at {} not deliverable ({reason}), skipped",
                    shard.id(),
                    level.get(),
                    offset.0
                );
                scheduler.set_offset(level, QueueOffset(offset.0 + 1));
            }
            Delivery::Retry(e) => {
                log::warn!(
                    "shard {}: delay level {}: delivery of {} refused by the store ({e}), retrying",
                    shard.id(),
                    level.get(),
                    offset.0
                );
                return LevelState::DueIn(RETRY_WAIT_MS);
            }
        }
        glommio::yield_if_needed().await;
    }
}

fn due_in(ms: i64) -> LevelState {
    let ms = u64::try_from(ms).unwrap_or(0).clamp(1, DUE_WAIT_MAX_MS);
    LevelState::DueIn(ms)
}

enum Delivery {
    Done(engine::PutResult),
    /// Never deliverable (no real topic, topic gone, too large); the level moves on.
    Skipped(String),
    /// The store refused for now (buffer full, disk full, poisoned, stopping).
    Retry(PutError),
}

/// Writes the copy of a due parked record to its real topic and queue.
fn deliver(shard: &Shard, view: &engine::record::RecordView<'_>) -> Delivery {
    let Some(real) = unpark(view.properties()) else {
        return Delivery::Skipped("no valid REAL_TOPIC/REAL_QID".to_string());
    };
    // A deleted topic gets nothing (no consume queue is created for it again). Like Java, the
    // queue id is not checked against the topic's current queue count.
    if !shard.topics().contains(&real.topic) {
        return Delivery::Skipped(format!("topic {} no longer exists", real.topic));
    }
    let msg = PutMessage {
        topic: &real.topic,
        queue_id: QueueId(real.queue_id),
        flag: view.flag(),
        body: view.body(),
        properties: &real.properties,
        sys_flag: view.sys_flag(),
        born_timestamp_ms: view.born_timestamp_ms(),
        born_host: view.born_host(),
        store_host: view.store_host(),
        reconsume_times: view.reconsume_times(),
        prepared_transaction_offset: view.prepared_transaction_offset(),
    };
    match shard.store().put(&msg) {
        Ok(put) => {
            shard
                .long_polls()
                .notify_append(&real.topic, real.queue_id, put.queue_offset.0 + 1);
            Delivery::Done(put)
        }
        Err(
            e @ (PutError::BodyTooLarge { .. }
            | PutError::PropertiesTooLong { .. }
            | PutError::TopicTooLong { .. }),
        ) => Delivery::Skipped(e.to_string()),
        Err(e) => Delivery::Retry(e),
    }
}

/// Writes the offsets once every copy they cover is durable; otherwise leaves them dirty for
/// the next round (a copy not known durable must be delivered again after a crash).
async fn persist(shard: &Shard, pending: &mut PendingCopies) {
    let scheduler = shard.schedule();
    if !scheduler.is_dirty.get() {
        return;
    }
    let offsets = scheduler.offsets.get();
    match pending.settle(shard.store()).await {
        Settled::Durable => {}
        Settled::NotYet => return,
        Settled::Failed(e) => {
            log::warn!(
                "shard {}: delayed copies not durable yet ({e}); delay offsets not written",
                shard.id()
            );
            return;
        }
    }
    let mut v = scheduler.version.get();
    v.counter = v.counter.wrapping_add(1);
    v.timestamp = now_ms();
    scheduler.version.set(v);
    // Clear first: only this task moves offsets, but a failed write must leave it dirty.
    scheduler.is_dirty.set(false);
    if let Err(e) = write_file_atomically(&scheduler.path, scheduler.to_json(&offsets)).await {
        scheduler.is_dirty.set(true);
        log::warn!("shard {}: delay offsets not written: {e}", shard.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_clamp_and_map_to_queues() {
        assert_eq!(DelayLevel::from_requested(0), None);
        assert_eq!(DelayLevel::from_requested(-3), None);
        assert_eq!(DelayLevel::from_requested(1).map(DelayLevel::get), Some(1));
        assert_eq!(
            DelayLevel::from_requested(99).map(DelayLevel::get),
            Some(18)
        );
        assert_eq!(
            DelayLevel::from_property(" 3 ").map(|l| l.queue_id()),
            Some(QueueId(2))
        );
        assert_eq!(DelayLevel::from_property("x"), None);
        assert_eq!(
            DelayLevel::from_queue_id(QueueId(17)).map(DelayLevel::get),
            Some(18)
        );
        assert_eq!(DelayLevel::from_queue_id(QueueId(18)), None);
        assert_eq!(DelayLevel::all().count(), 18);
        let delays: Vec<i64> = DelayLevel::all().map(DelayLevel::delay_ms).collect();
        assert_eq!(delays, DELAY_LEVELS_MS);
    }

    #[test]
    fn park_then_unpark_restores_the_destination() {
        let mut props = Properties::parse("TAGS\u{1}a\u{2}DELAY\u{1}40\u{2}");
        let level = park(&mut props, 0, "T", 3).expect("delayed");
        assert_eq!(level.get(), 18);
        let parked = props.encode();
        assert_eq!(engine::properties::get(&parked, "DELAY"), Some("18"));
        assert_eq!(engine::properties::get(&parked, "REAL_TOPIC"), Some("T"));
        assert_eq!(engine::properties::get(&parked, "REAL_QID"), Some("3"));
        let real = unpark(&parked).expect("real destination");
        assert_eq!(real.topic, "T");
        assert_eq!(real.queue_id, 3);
        assert_eq!(engine::properties::get(&real.properties, "DELAY"), None);
        assert_eq!(engine::properties::get(&real.properties, "TAGS"), Some("a"));
        assert_eq!(
            engine::properties::get(&real.properties, "WAIT"),
            Some("false")
        );
    }

    #[test]
    fn only_delayed_non_prepared_messages_park() {
        let mut props = Properties::parse("DELAY\u{1}0\u{2}");
        assert_eq!(park(&mut props, 0, "T", 0), None);
        let mut props = Properties::parse("TAGS\u{1}a\u{2}");
        assert_eq!(park(&mut props, 0, "T", 0), None);
        let mut props = Properties::parse("DELAY\u{1}2\u{2}");
        assert_eq!(park(&mut props, 0x4, "T", 0), None, "prepared half message");
        assert_eq!(props.get(PROPERTY_REAL_TOPIC), None);
        assert!(park(&mut props, 0x8, "T", 0).is_some(), "commit type");
        assert_eq!(unpark("TAGS\u{1}a\u{2}"), None);
        assert_eq!(unpark("REAL_TOPIC\u{1}T\u{2}REAL_QID\u{1}x\u{2}"), None);
    }

    #[test]
    fn offsets_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Scheduler::open(dir.path()).expect("open");
        let level = DelayLevel::from_requested(2).expect("level");
        s.set_offset(level, QueueOffset(7));
        assert!(s.is_dirty.get());
        let json = s.to_json(&s.offsets());
        std::fs::write(dir.path().join("delayOffset.json"), json).expect("write");
        let s2 = Scheduler::open(dir.path()).expect("reopen");
        assert_eq!(s2.offset(level), QueueOffset(7));
        assert_eq!(
            s2.offset(DelayLevel::from_requested(1).expect("level")),
            QueueOffset(0)
        );
    }
}
