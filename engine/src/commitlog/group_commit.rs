//! The flusher task and the DurabilityTicket (what SYNC_FLUSH waits on).
//!
//! One flusher per commitlog owns the files' write side. It takes everything appended so far,
//! writes it (4 KiB aligned, the partial last page rewritten next time), fdatasyncs, resolves
//! every ticket up to the synced offset, and starts again at once with whatever arrived in the
//! meantime: group commit with no timer and no sleep. Under ASYNC_FLUSH it writes just as
//! promptly but fdatasyncs only every `flush_interval_ms`. A failed write or fdatasync poisons
//! the log; the flusher then stops and every waiting ticket reports `Poisoned`.
//!
//! No space to create a segment (ENOSPC) is not a failed write: the flusher syncs what it
//! wrote, keeps the batches it could not write (nothing taken after them is written before
//! them), marks the log out of space and retries when woken; see the commitlog module doc.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;

use super::segment::is_no_space;
use super::{segment, CommitLog, FlushBatch, Segment};
use crate::error::{FlushError, IoError};
use crate::store::Background;
use crate::FlushMode;

/// Resolves Ok once the record it was issued for is durable (written and fdatasynced),
/// `Err(Timeout)` after `sync_flush_timeout_ms`, or `Err(Poisoned)` if the store is poisoned.
/// Dropping it does not cancel anything.
pub struct DurabilityTicket {
    log: Rc<CommitLog>,
    target: u64,
    issued: Instant,
    timer: Option<glommio::timer::Timer>,
    is_registered: bool,
}

impl std::fmt::Debug for DurabilityTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurabilityTicket")
            .field("target", &self.target)
            .finish()
    }
}

impl DurabilityTicket {
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn new(log: Rc<CommitLog>, target: u64) -> Self {
        Self {
            log,
            target,
            issued: Instant::now(),
            timer: None,
            is_registered: false,
        }
    }

    /// The commitlog offset this ticket waits for (end of its record or batch).
    pub fn target_offset(&self) -> crate::CommitLogOffset {
        crate::CommitLogOffset(self.target)
    }

    /// Whether the covered records are durable already.
    pub fn is_durable(&self) -> bool {
        self.log.durable_offset() >= self.target
    }
}

impl Future for DurabilityTicket {
    type Output = Result<(), FlushError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.log.durable_offset() >= this.target {
            return Poll::Ready(Ok(()));
        }
        if this.log.is_poisoned() {
            return Poll::Ready(Err(FlushError::Poisoned));
        }
        if this.timer.is_none() {
            let timeout = Duration::from_millis(this.log.cfg.sync_flush_timeout_ms);
            let left = timeout.saturating_sub(this.issued.elapsed());
            if left.is_zero() {
                return Poll::Ready(Err(FlushError::Timeout));
            }
            this.timer = Some(glommio::timer::Timer::new(left));
        }
        if let Some(t) = this.timer.as_mut() {
            if Pin::new(t).poll(cx).is_ready() {
                return Poll::Ready(Err(FlushError::Timeout));
            }
        }
        if !this.is_registered {
            this.is_registered = true;
            this.log.register_waiter(this.target, cx.waker());
        } else {
            // Re-polled (possibly with a new waker): register again; stale entries are
            // dropped when the flusher passes the target.
            this.log.register_waiter(this.target, cx.waker());
        }
        Poll::Pending
    }
}

/// The segment file for `base`, creating it if no background task is doing so.
pub(crate) async fn segment_file(log: &Rc<CommitLog>, base: u64) -> Result<Rc<Segment>, IoError> {
    loop {
        let preparing = {
            let st = log.state.borrow();
            if let Some(s) = st.segments.get(&base) {
                return Ok(s.clone());
            }
            st.preparing
        };
        if preparing == Some(base) {
            log.prepared.wait().await;
            if log.is_poisoned() {
                let e = std::io::Error::other("poisoned while preparing segment");
                return Err(IoError::new("prepare_segment", &log.cfg.dir, base, e));
            }
            continue;
        }
        let seg =
            segment::create(&*log.disk, &log.cfg.dir, base, log.cfg.segment_size_bytes).await?;
        let seg = Rc::new(seg);
        log.state.borrow_mut().segments.insert(base, seg.clone());
        return Ok(seg);
    }
}

/// After a background preparation ran out of space, the next one waits this long (or for a
/// retention pass); the flusher still creates a segment itself when it needs it.
pub(crate) const PREPARE_RETRY_MS: i64 = 100;
/// While out of space, the flusher retries creating the segment at most this often (Timers).
const OUT_OF_SPACE_RETRY_MS: u64 = 100;

/// Starts creating the segment after `base` in the background, if not there yet.
fn prepare_next(log: &Rc<CommitLog>, base: u64) {
    let next = base + log.cfg.segment_size_bytes;
    {
        let mut st = log.state.borrow_mut();
        if st.segments.contains_key(&next) || st.preparing.is_some() {
            return;
        }
        if log.cfg.clock.now_ms() < log.prepare_not_before_ms.get() {
            return;
        }
        st.preparing = Some(next);
    }
    let log = log.clone();
    glommio::spawn_local(async move {
        let r = segment::create(&*log.disk, &log.cfg.dir, next, log.cfg.segment_size_bytes).await;
        match r {
            Ok(seg) => {
                let mut st = log.state.borrow_mut();
                st.segments.insert(next, Rc::new(seg));
                st.preparing = None;
                if log.is_next_segment_short_of_space.replace(false) {
                    log::info!("next commitlog segment prepared after running out of space");
                }
            }
            Err(e) if is_no_space(&e) => {
                // Nothing is appended for it yet: appends that would start it are refused
                // until a retry succeeds.
                log.state.borrow_mut().preparing = None;
                if !log.is_next_segment_short_of_space.replace(true) {
                    log::warn!("cannot prepare the next commitlog segment, refusing writes that need it: {e}");
                }
                let now = log.cfg.clock.now_ms();
                log.prepare_not_before_ms
                    .set(now.saturating_add(PREPARE_RETRY_MS));
            }
            Err(e) => {
                log.state.borrow_mut().preparing = None;
                log.poison(&e);
            }
        }
        log.prepared.notify();
    })
    .detach();
}

/// Waits for a reason to retry creating a segment while out of space: a refused put, a
/// retention pass or shutdown wakes the flusher (at most one retry per
/// `OUT_OF_SPACE_RETRY_MS` under timers).
async fn wait_to_retry(log: &CommitLog) {
    log.flusher_wake.wait().await;
    if log.cfg.background == Background::Timers && !log.stop_requested.get() {
        glommio::timer::sleep(Duration::from_millis(OUT_OF_SPACE_RETRY_MS)).await;
    }
}

/// Retries preparing the next segment after its preparation ran out of space (called for a
/// refused put and by retention); at most once per `PREPARE_RETRY_MS` unless the pause was
/// lifted.
pub(crate) fn retry_next_segment(log: &Rc<CommitLog>) {
    if log.is_next_segment_short_of_space.get() && !log.is_out_of_space() {
        prepare_next(log, log.segment_base_of(log.write_offset()));
    }
}

/// The flusher task: runs until `stop_requested` and nothing is left, or until poisoned.
pub(crate) async fn run_flusher(log: Rc<CommitLog>) {
    log.is_flusher_running.set(true);
    let interval_ms = log.cfg.flush_interval_ms as i64;
    let clock = log.cfg.clock.clone();
    let mut last_sync_ms = clock.now_ms();
    let mut unsynced: BTreeSet<u64> = BTreeSet::new();
    let mut written_end = log.written_offset();
    let mut active_base = log.segment_base_of(written_end);
    // Batches that could not be written for lack of space, oldest first.
    let mut stalled: VecDeque<FlushBatch> = VecDeque::new();
    prepare_next(&log, active_base);
    while !log.is_poisoned() {
        let mut batches = if stalled.is_empty() {
            VecDeque::from(log.take_batches())
        } else {
            if !log.stop_requested.get() {
                wait_to_retry(&log).await;
            }
            std::mem::take(&mut stalled)
        };
        if batches.is_empty() {
            let must_sync = !unsynced.is_empty()
                && (log.cfg.flush_mode == FlushMode::Sync
                    || log.stop_requested.get()
                    || clock.now_ms() - last_sync_ms >= interval_ms);
            if !must_sync {
                if log.stop_requested.get() {
                    break;
                }
                if unsynced.is_empty() {
                    log.flusher_wake.wait().await;
                } else if log.cfg.background == Background::Timers {
                    let left = (interval_ms - (clock.now_ms() - last_sync_ms)).max(1) as u64;
                    let sleep = glommio::timer::sleep(Duration::from_millis(left));
                    future::or(log.flusher_wake.wait(), sleep).await;
                } else {
                    // Manual background (deterministic tests): re-check the clock next turn.
                    future::yield_now().await;
                }
                continue;
            }
        }
        let mut new_bytes = 0;
        let mut no_space = None;
        while let Some(b) = batches.front() {
            let seg = match segment_file(&log, b.seg_base).await {
                Ok(s) => s,
                Err(e) if is_no_space(&e) => {
                    // Nothing was written to that segment: keep this batch and the rest.
                    no_space = Some(e);
                    break;
                }
                Err(e) => {
                    log.poison(&e);
                    break;
                }
            };
            if let Err(e) = seg.file.write_at(b.file_pos, &b.bytes).await {
                log.poison(&e);
                break;
            }
            unsynced.insert(b.seg_base);
            new_bytes += b.new_bytes;
            written_end = b.end_offset;
            active_base = b.seg_base;
            batches.pop_front();
        }
        if log.is_poisoned() {
            break;
        }
        log.written_up_to(written_end, new_bytes);
        let sync_now = log.cfg.flush_mode == FlushMode::Sync
            || log.stop_requested.get()
            || no_space.is_some()
            || clock.now_ms() - last_sync_ms >= interval_ms;
        if sync_now && !unsynced.is_empty() {
            let bases: Vec<u64> = std::mem::take(&mut unsynced).into_iter().collect();
            for base in bases {
                let seg = log.state.borrow().segments.get(&base).cloned();
                if let Some(seg) = seg {
                    if let Err(e) = seg.file.sync().await {
                        log.poison(&e);
                        break;
                    }
                }
            }
            if log.is_poisoned() {
                break;
            }
            last_sync_ms = clock.now_ms();
            log.durable_up_to(written_end);
        }
        match no_space {
            Some(e) if log.stop_requested.get() => {
                // Stopping, and still no space: these records can never be made durable.
                log.poison(&e);
                break;
            }
            Some(e) => {
                log.set_out_of_space(true, &e);
                stalled = batches;
            }
            None => {
                log.set_out_of_space(false, &"");
                prepare_next(&log, active_base);
            }
        }
    }
    log.is_flusher_running.set(false);
    log.flusher_stopped.notify();
}
