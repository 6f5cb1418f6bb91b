//! Store: the facade one shard owns. `put` assigns offsets, encodes the record into the
//! append buffer and dispatches its consume-queue and index entries, all synchronously;
//! durability comes later through the ticket. Reads walk the consume queue and fetch records
//! from the tail cache or the segment files.
//!
//! Owned by one shard; never crosses cores. After `put` returns, the record is readable; it is
//! durable once the ticket resolves (SYNC_FLUSH waits for that). Background tasks: the
//! flusher (commitlog) and maintenance (checkpoint pass and retention, every second).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;

use crate::clock::{Clock, SystemClock};
use crate::commitlog::{
    retry_next_segment, run_flusher, segment_file, CommitLog, CommitLogConfig, DurabilityTicket,
    Segment,
};
use crate::config::StoreConfig;
use crate::consume_queue::QueueTable;
use crate::disk::glommio::GlommioDisk;
use crate::disk::Disk;
use crate::dispatch::{dispatch, is_queued, DispatchRecord};
use crate::error::{GetError, IoError, OpenError, PutError, ShutdownError};
use crate::index::{record_keys, Index};
use crate::persist::Persister;
use crate::record::{self, PutMessage};
use crate::recovery::{self, RecoveryReport};
use crate::retention::{self, RetentionReport};
use crate::signal::Signal;
use crate::{CommitLogOffset, QueueId, QueueOffset};

/// Period of the maintenance task (checkpoint pass, retention, disk usage).
pub const MAINTENANCE_INTERVAL_MS: u64 = 1000;
/// Consume-queue entries one `get` looks at, at most (RocketMQ's 16000 bytes / 20).
pub const GET_SCAN_ENTRIES_MAX: u64 = 800;

/// How the store's background work (fsync interval under ASYNC_FLUSH, checkpoint pass,
/// retention) is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// Glommio timers (production).
    Timers,
    /// No timers: the caller runs `checkpoint_now` and `run_retention_now`, and the ASYNC_FLUSH
    /// interval is measured on the store's `Clock` only. Deterministic, for seeded tests.
    Manual,
}

/// Result of a put: where the record went, and the ticket for its durability.
#[derive(Debug)]
pub struct PutResult {
    /// The record's commitlog offset.
    pub commit_log_offset: CommitLogOffset,
    /// Its queue offset (0 for prepared/rollback transaction records).
    pub queue_offset: QueueOffset,
    /// Its stored size.
    pub size_bytes: u32,
    /// Store timestamp written into the record.
    pub store_timestamp_ms: i64,
    /// Resolves when the record is durable.
    pub ticket: DurabilityTicket,
}

/// Result of a batch put.
#[derive(Debug)]
pub struct BatchPutResult {
    /// Queue offset of the first message; the rest follow consecutively.
    pub first_queue_offset: QueueOffset,
    /// One per message, in order.
    pub commit_log_offsets: Vec<CommitLogOffset>,
    /// Covers the whole batch.
    pub ticket: DurabilityTicket,
}

/// Bounds of one `get`.
#[derive(Clone, Copy, Debug)]
pub struct GetLimit {
    /// Messages returned at most.
    pub count_max: u32,
    /// Bytes returned at most (at least one message is returned if any matches).
    pub bytes_max: u32,
}

/// RocketMQ's GetMessageStatus; the broker maps it per REMOTING.md §7.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetStatus {
    /// At least one message matched.
    Found,
    /// Entries were read, none matched the filter.
    NoMatchedMessage,
    /// The commitlog data is being deleted.
    MessageWasRemoving,
    /// The entry's record could not be read.
    OffsetFoundNull,
    /// offset > max.
    OffsetOverflowBadly,
    /// offset == max.
    OffsetOverflowOne,
    /// offset < min.
    OffsetTooSmall,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    /// The queue is empty (max == 0).
    NoMessageInQueue,
}

/// What `get` found.
#[derive(Debug)]
pub struct GetResult {
    /// Status per §7.3.
    pub status: GetStatus,
    /// Whole stored records, as on disk.
    pub messages: Vec<Bytes>,
    /// Where the next pull starts.
    pub next_begin_offset: QueueOffset,
    /// Queue min offset.
    pub min_offset: QueueOffset,
    /// Queue max offset (next to be written).
    pub max_offset: QueueOffset,
}

/// One shard's store. See the module doc.
pub struct Store {
    cfg: StoreConfig,
    pub(crate) disk: Rc<dyn Disk>,
    pub(crate) clock: Rc<dyn Clock>,
    pub(crate) log: Rc<CommitLog>,
    queues: RefCell<QueueTable>,
    index: RefCell<Index>,
    persister: Persister,
    is_shutting_down: Cell<bool>,
    pub(crate) is_disk_full: Cell<bool>,
    is_persist_running: Cell<bool>,
    maintenance_stop: Signal,
    maintenance_stopped: Signal,
    is_maintenance_running: Cell<bool>,
    /// Segments retention removed, with their sizes: still taking space while held open.
    removed_segments: RefCell<Vec<(Weak<Segment>, u64)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root_dir", &self.cfg.root_dir)
            .finish()
    }
}

impl Store {
    /// Opens (recovering if needed) the store under `config.root_dir` on the real disk
    /// (glommio DmaFile), and spawns its flusher and maintenance tasks on this executor.
    pub async fn open(config: StoreConfig) -> Result<(Rc<Store>, RecoveryReport), OpenError> {
        config.validate()?;
        let disk = GlommioDisk::new(&config.root_dir).await?;
        Self::open_with(
            config,
            Rc::new(disk),
            Rc::new(SystemClock),
            Background::Timers,
        )
        .await
    }

    /// Like `open`, on any `Disk` and `Clock` (tests use `SimDisk` and `ManualClock`), with
    /// background work driven by timers or by the caller.
    pub async fn open_with(
        config: StoreConfig,
        disk: Rc<dyn Disk>,
        clock: Rc<dyn Clock>,
        background: Background,
    ) -> Result<(Rc<Store>, RecoveryReport), OpenError> {
        config.validate()?;
        let r = recovery::recover(&config, &disk).await?;
        let log_cfg = CommitLogConfig {
            dir: config.root_dir.join("commitlog"),
            segment_size_bytes: config.segment_size_bytes,
            flush_mode: config.flush_mode,
            flush_interval_ms: config.flush_interval_ms,
            sync_flush_timeout_ms: config.sync_flush_timeout_ms,
            append_buffer_bytes_max: config.append_buffer_bytes_max,
            tail_cache_bytes_max: config.tail_cache_bytes_max,
            clock: clock.clone(),
            background,
        };
        let log = Rc::new(CommitLog::new(
            log_cfg,
            disk.clone(),
            r.segments,
            r.min_offset,
            r.end,
            r.carried,
        ));
        let persister = Persister::new(
            disk.clone(),
            config.root_dir.join("consumequeue"),
            config.root_dir.join("index"),
            r.checkpoint_file,
        );
        let store = Rc::new(Store {
            cfg: config,
            disk,
            clock,
            log: log.clone(),
            queues: RefCell::new(r.queues),
            index: RefCell::new(r.index),
            persister,
            is_shutting_down: Cell::new(false),
            is_disk_full: Cell::new(false),
            is_persist_running: Cell::new(false),
            maintenance_stop: Signal::default(),
            maintenance_stopped: Signal::default(),
            is_maintenance_running: Cell::new(false),
            removed_segments: RefCell::new(Vec::new()),
        });
        // The active segment exists (preallocated, zero-filled) before the first put; the flusher
        // prepares the next one in the background.
        let active_base = log.segment_base_of(log.write_offset());
        segment_file(&log, active_base).await?;
        // Make the recovered state the checkpoint: recovering again starts from here.
        store.checkpoint_now().await?;
        retention::run(&store).await?;
        glommio::spawn_local(run_flusher(log)).detach();
        if background == Background::Timers {
            store.is_maintenance_running.set(true);
            glommio::spawn_local(run_maintenance(Rc::downgrade(&store))).detach();
        }
        Ok((store, r.report))
    }

    /// The configuration this store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn check_writable(&self) -> Result<(), PutError> {
        if self.is_shutting_down.get() {
            return Err(PutError::ShuttingDown);
        }
        if self.log.is_poisoned() {
            return Err(PutError::Poisoned);
        }
        if self.is_disk_full.get() {
            return Err(PutError::DiskFull);
        }
        if self.log.is_out_of_space() {
            // The flusher could not create a segment for lack of space: refused like a full
            // disk, and the flusher retries (space may be back).
            self.log.retry_when_out_of_space();
            return Err(PutError::DiskFull);
        }
        Ok(())
    }

    /// An append refused because the next segment could not be prepared (no space) retries
    /// that preparation in the background.
    fn retry_if_disk_full<T>(&self, appended: Result<T, PutError>) -> Result<T, PutError> {
        if matches!(appended, Err(PutError::DiskFull)) {
            retry_next_segment(&self.log);
        }
        appended
    }

    fn dispatch_put(
        &self,
        msg: &PutMessage<'_>,
        queue_offset: u64,
        offset: u64,
        size: u32,
        ts: i64,
    ) {
        let r = DispatchRecord {
            topic: msg.topic,
            queue_id: msg.queue_id.0,
            queue_offset,
            commit_log_offset: offset,
            size,
            sys_flag: msg.sys_flag,
            properties: msg.properties,
            store_timestamp_ms: ts,
        };
        let seg_base = self.log.segment_base_of(offset);
        dispatch(
            &mut self.queues.borrow_mut(),
            &mut self.index.borrow_mut(),
            seg_base,
            &r,
        );
    }

    /// Appends one record. Not async: the record is readable when this returns, durable when
    /// the ticket resolves.
    pub fn put(&self, msg: &PutMessage<'_>) -> Result<PutResult, PutError> {
        self.check_writable()?;
        record::check(msg, self.cfg.body_size_max)?;
        let size = record::encoded_size(msg);
        let queue_offset = if is_queued(msg.sys_flag) {
            self.queues.borrow().next_offset(msg.topic, msg.queue_id.0)
        } else {
            0
        };
        let ts = self.clock.now_ms();
        let appended = self.log.append(&[size], |_, offset, buf| {
            record::encode(buf, msg, queue_offset, offset, ts);
        });
        let (offsets, end) = self.retry_if_disk_full(appended)?;
        let offset = offsets.first().copied().unwrap_or(end);
        self.dispatch_put(msg, queue_offset, offset, size as u32, ts);
        Ok(PutResult {
            commit_log_offset: CommitLogOffset(offset),
            queue_offset: QueueOffset(queue_offset),
            size_bytes: size as u32,
            store_timestamp_ms: ts,
            ticket: DurabilityTicket::new(self.log.clone(), end),
        })
    }

    /// Appends records that share topic and queue_id, with consecutive queue offsets; one
    /// ticket covers them all. All or nothing: on error nothing was appended.
    pub fn put_batch(&self, msgs: &[PutMessage<'_>]) -> Result<BatchPutResult, PutError> {
        self.check_writable()?;
        let Some(first) = msgs.first() else {
            let end = self.log.write_offset();
            return Ok(BatchPutResult {
                first_queue_offset: QueueOffset(0),
                commit_log_offsets: Vec::new(),
                ticket: DurabilityTicket::new(self.log.clone(), end),
            });
        };
        // Every message is stored under the first one's topic and queue (the contract).
        let msgs: Vec<PutMessage<'_>> = msgs
            .iter()
            .map(|m| PutMessage {
                topic: first.topic,
                queue_id: first.queue_id,
                ..m.clone()
            })
            .collect();
        let mut sizes = Vec::with_capacity(msgs.len());
        for m in &msgs {
            record::check(m, self.cfg.body_size_max)?;
            sizes.push(record::encoded_size(m));
        }
        let queued = is_queued(first.sys_flag);
        let first_queue_offset = if queued {
            self.queues
                .borrow()
                .next_offset(first.topic, first.queue_id.0)
        } else {
            0
        };
        let ts = self.clock.now_ms();
        let qo = |i: usize| {
            if queued {
                first_queue_offset + i as u64
            } else {
                0
            }
        };
        let appended = self.log.append(&sizes, |i, offset, buf| {
            if let Some(m) = msgs.get(i) {
                record::encode(buf, m, qo(i), offset, ts);
            }
        });
        let (offsets, end) = self.retry_if_disk_full(appended)?;
        for (i, (m, off)) in msgs.iter().zip(&offsets).enumerate() {
            let size = sizes.get(i).copied().unwrap_or(0) as u32;
            self.dispatch_put(m, qo(i), *off, size, ts);
        }
        Ok(BatchPutResult {
            first_queue_offset: QueueOffset(first_queue_offset),
            commit_log_offsets: offsets.into_iter().map(CommitLogOffset).collect(),
            ticket: DurabilityTicket::new(self.log.clone(), end),
        })
    }

    /// Walks the consume queue from `offset`; `filter(tags_code)` false skips an entry.
    pub async fn get(
        &self,
        topic: &str,
        queue_id: QueueId,
        offset: QueueOffset,
        limit: GetLimit,
        filter: &dyn Fn(i64) -> bool,
    ) -> Result<GetResult, GetError> {
        let o = offset.0;
        let (min, max, window) = {
            let t = self.queues.borrow();
            let Some(q) = t.get(topic, queue_id.0) else {
                return Ok(empty(GetStatus::NoMatchedLogicQueue, 0, 0, 0));
            };
            let (min, max) = (q.min_offset(), q.max_offset());
            if max == 0 {
                return Ok(empty(GetStatus::NoMessageInQueue, 0, min, max));
            }
            if o < min {
                return Ok(empty(GetStatus::OffsetTooSmall, min, min, max));
            }
            if o == max {
                return Ok(empty(GetStatus::OffsetOverflowOne, o, min, max));
            }
            if o > max {
                return Ok(empty(GetStatus::OffsetOverflowBadly, max, min, max));
            }
            let n = (max - o).min(GET_SCAN_ENTRIES_MAX);
            let window: Vec<_> = (o..o + n)
                .filter_map(|i| q.get(i).map(|e| (i, e)))
                .collect();
            (min, max, window)
        };
        let mut messages = Vec::new();
        let mut bytes_total: u64 = 0;
        let mut next = o;
        let mut status = GetStatus::NoMatchedMessage;
        for (qo, e) in window {
            if messages.len() >= limit.count_max as usize {
                break;
            }
            if !messages.is_empty() && bytes_total + u64::from(e.size) > u64::from(limit.bytes_max)
            {
                break;
            }
            if !filter(e.tags_code) {
                next = qo + 1;
                continue;
            }
            match self
                .log
                .read_record(e.commit_log_offset, Some(e.size))
                .await
            {
                Ok(b) => {
                    bytes_total += b.len() as u64;
                    messages.push(b);
                    next = qo + 1;
                }
                Err(GetError::OffsetNotAvailable { .. }) if messages.is_empty() => {
                    let min_now = self.min_offset(topic, queue_id).0;
                    let removing = e.commit_log_offset < self.log.min_offset();
                    status = if removing {
                        GetStatus::MessageWasRemoving
                    } else {
                        GetStatus::OffsetFoundNull
                    };
                    next = if removing { min_now.max(qo + 1) } else { qo };
                    break;
                }
                Err(GetError::OffsetNotAvailable { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        if !messages.is_empty() {
            status = GetStatus::Found;
        }
        Ok(GetResult {
            status,
            messages,
            next_begin_offset: QueueOffset(next),
            min_offset: QueueOffset(min),
            max_offset: QueueOffset(max),
        })
    }

    /// Lowest queue offset still readable (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: QueueId) -> QueueOffset {
        QueueOffset(
            self.queues
                .borrow()
                .get(topic, queue_id.0)
                .map_or(0, |q| q.min_offset()),
        )
    }

    /// Next queue offset to be written (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: QueueId) -> QueueOffset {
        QueueOffset(self.queues.borrow().next_offset(topic, queue_id.0))
    }

    /// First queue offset whose record was stored at or after `timestamp_ms` (max offset when
    /// none is).
    pub async fn offset_by_time(
        &self,
        topic: &str,
        queue_id: QueueId,
        timestamp_ms: i64,
    ) -> Result<QueueOffset, GetError> {
        let (mut lo, mut hi) = {
            let t = self.queues.borrow();
            let Some(q) = t.get(topic, queue_id.0) else {
                return Ok(QueueOffset(0));
            };
            (q.min_offset(), q.max_offset())
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = self
                .queues
                .borrow()
                .get(topic, queue_id.0)
                .and_then(|q| q.get(mid));
            let Some(e) = entry else { break };
            let b = self
                .log
                .read_record(e.commit_log_offset, Some(e.size))
                .await?;
            let ts = record::decode(&b)
                .map_err(|reason| GetError::InvalidRecord {
                    offset: e.commit_log_offset,
                    reason,
                })?
                .store_timestamp_ms();
            if ts >= timestamp_ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(QueueOffset(lo))
    }

    /// One whole stored record at `offset`.
    pub async fn read_message(&self, offset: CommitLogOffset) -> Result<Bytes, GetError> {
        self.log.read_record(offset.0, None).await
    }

    /// Records of `topic` whose KEYS word or UNIQ_KEY equals `key`, stored within
    /// [begin_ms, end_ms], newest first, at most `count_max`.
    pub async fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        count_max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Bytes>, GetError> {
        let candidates = self.index.borrow().candidates(topic, key, begin_ms, end_ms);
        let mut out = Vec::new();
        for offset in candidates {
            if out.len() >= count_max {
                break;
            }
            let b = match self.log.read_record(offset, None).await {
                Ok(b) => b,
                Err(GetError::OffsetNotAvailable { .. }) => continue,
                Err(e) => return Err(e),
            };
            let is_match = record::decode(&b)
                .is_ok_and(|v| v.topic() == topic && record_keys(v.properties()).any(|k| k == key));
            if is_match {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// End of the commitlog: the next record's offset.
    pub fn max_commit_log_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.log.write_offset())
    }

    /// Lowest retained commitlog offset.
    pub fn min_commit_log_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.log.min_offset())
    }

    /// Whether a failed write or fdatasync poisoned the store.
    pub fn is_poisoned(&self) -> bool {
        self.log.is_poisoned()
    }

    /// Whether puts are refused because the disk is above `disk_max_used_ratio`, or because
    /// a commitlog segment could not be created for lack of space (until a retry succeeds).
    pub fn is_disk_full(&self) -> bool {
        self.is_disk_full.get() || self.log.is_out_of_space()
    }

    /// Commitlog offset below which everything is durable.
    pub fn durable_commit_log_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.log.durable_offset())
    }

    /// Number of completed fdatasync rounds of the commitlog (group-commit batches).
    pub fn flush_count(&self) -> u64 {
        self.log.flush_count.get()
    }

    /// Drops the consume queues of `topic` (memory and files). Its records stay in the
    /// commitlog until retention removes them.
    pub fn delete_topic(&self, topic: &str) {
        self.queues.borrow_mut().topics.remove(topic);
        self.persister.forget_topic(topic);
        let dir = self.cfg.root_dir.join("consumequeue").join(topic);
        if let Err(e) = self.disk.remove_dir_all(&dir) {
            log::warn!("delete_topic {topic}: {e}");
        }
    }

    /// Runs a checkpoint pass now: persists consume-queue and index entries of durable
    /// records, then the checkpoint. (The maintenance task does this every second.)
    pub async fn checkpoint_now(&self) -> Result<(), IoError> {
        self.persist(false).await
    }

    async fn persist(&self, is_clean: bool) -> Result<(), IoError> {
        if self.is_persist_running.replace(true) {
            return Ok(());
        }
        let durable = self.log.durable_offset();
        let r = self
            .persister
            .run(&self.queues, &self.index, durable, is_clean)
            .await;
        self.is_persist_running.set(false);
        r.map(|_| ())
    }

    /// Runs a retention pass now (the maintenance task does this every second).
    pub async fn run_retention_now(&self) -> Result<RetentionReport, IoError> {
        retention::run(self).await
    }

    /// Deletes one commitlog segment and everything that points into it.
    pub(crate) fn delete_segment(&self, base: u64) -> Result<(), IoError> {
        let Some(seg) = self.log.forget_segment(base) else {
            return Ok(());
        };
        let seg_end = base + self.cfg.segment_size_bytes;
        self.disk.remove(&seg.path)?;
        self.index.borrow_mut().drop_segment(base, seg_end);
        self.persister.remove_index_file(base);
        let mut mins = Vec::new();
        {
            let mut t = self.queues.borrow_mut();
            for (topic, qs) in t.topics.iter_mut() {
                for (qid, q) in qs.iter_mut() {
                    q.drop_below(seg_end);
                    mins.push((topic.clone(), *qid, q.min_offset()));
                }
            }
        }
        for (topic, qid, min) in mins {
            self.persister.remove_cq_files_below(&topic, qid, min);
        }
        log::info!(
            "retention: deleted commitlog segment {}",
            seg.path.display()
        );
        self.removed_segments
            .borrow_mut()
            .push((Rc::downgrade(&seg), self.cfg.segment_size_bytes));
        Ok(())
    }

    /// Bytes of removed segments still held open (by a reader), so not yet freed on disk.
    pub(crate) fn removed_segments_held_bytes(&self) -> u64 {
        let mut removed = self.removed_segments.borrow_mut();
        removed.retain(|(w, _)| w.strong_count() > 0);
        removed.iter().map(|(_, size)| size).sum()
    }

    /// Flushes everything, writes the checkpoint (marked clean) and stops the tasks.
    /// Puts fail with `ShuttingDown` from the moment this is called.
    pub async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.is_shutting_down.set(true);
        self.log.stop_requested.set(true);
        self.log.flusher_wake.notify();
        if self.log.is_flusher_running.get() {
            self.log.flusher_stopped.wait().await;
        }
        if self.is_maintenance_running.get() {
            self.maintenance_stop.notify();
            self.maintenance_stopped.wait().await;
        }
        if self.log.is_poisoned() {
            return Err(ShutdownError::Poisoned);
        }
        self.persist(true).await?;
        Ok(())
    }

    /// Whether the segment after the active one is already preallocated (benchmarks wait for
    /// it so that segment creation is not measured as put latency).
    pub fn is_next_segment_ready(&self) -> bool {
        let next = self.log.segment_base_of(self.log.write_offset()) + self.cfg.segment_size_bytes;
        self.log.segment_for(next).is_some()
    }

    /// Bytes held by the tail cache.
    pub fn tail_cache_size_bytes(&self) -> usize {
        self.log.tail_cache_size_bytes()
    }
}

fn empty(status: GetStatus, next: u64, min: u64, max: u64) -> GetResult {
    GetResult {
        status,
        messages: Vec::new(),
        next_begin_offset: QueueOffset(next),
        min_offset: QueueOffset(min),
        max_offset: QueueOffset(max),
    }
}

async fn run_maintenance(store: Weak<Store>) {
    loop {
        let stop = {
            let Some(s) = store.upgrade() else { return };
            let sleep = glommio::timer::sleep(Duration::from_millis(MAINTENANCE_INTERVAL_MS));
            let stop_wait = async {
                s.maintenance_stop.wait().await;
                true
            };
            let tick = async {
                sleep.await;
                false
            };
            future::or(stop_wait, tick).await
        };
        let Some(s) = store.upgrade() else { return };
        if stop || s.is_shutting_down.get() {
            s.is_maintenance_running.set(false);
            s.maintenance_stopped.notify();
            return;
        }
        if s.log.is_poisoned() {
            continue;
        }
        let durable = s.log.durable_offset();
        let last = s
            .persister
            .last_checkpoint()
            .map_or(0, |c| c.commit_log_offset);
        if durable > last {
            if let Err(e) = s.persist(false).await {
                log::warn!("checkpoint pass failed: {e}");
            }
        }
        if let Err(e) = retention::run(&s).await {
            log::warn!("retention pass failed: {e}");
        }
    }
}
