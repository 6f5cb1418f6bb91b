//! The flusher task and the DurabilityTicket (what SYNC_FLUSH waits on).
//!
//! One flusher per commitlog owns the files' write side. It takes everything appended so far,
//! writes it (4 KiB aligned, the partial last page rewritten next time), fdatasyncs, resolves
//! every ticket up to the synced offset, and starts again at once with whatever arrived in the
//! meantime: group commit with no timer and no sleep. Under ASYNC_FLUSH it writes just as
//! promptly but fdatasyncs only every `flush_interval_ms`. A failed write or fdatasync poisons
//! the log; the flusher then stops and every waiting ticket reports `Poisoned`.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;

use super::{segment, CommitLog, Segment};
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

/// Starts creating the segment after `base` in the background, if not there yet.
fn prepare_next(log: &Rc<CommitLog>, base: u64) {
    let next = base + log.cfg.segment_size_bytes;
    {
        let mut st = log.state.borrow_mut();
        if st.segments.contains_key(&next) || st.preparing.is_some() {
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

/// The flusher task: runs until `stop_requested` and nothing is left, or until poisoned.
pub(crate) async fn run_flusher(log: Rc<CommitLog>) {
    log.is_flusher_running.set(true);
    let interval_ms = log.cfg.flush_interval_ms as i64;
    let clock = log.cfg.clock.clone();
    let mut last_sync_ms = clock.now_ms();
    let mut unsynced: BTreeSet<u64> = BTreeSet::new();
    let mut written_end = log.written_offset();
    let mut active_base = log.segment_base_of(written_end);
    prepare_next(&log, active_base);
    while !log.is_poisoned() {
        let batches = log.take_batches();
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
        for b in &batches {
            let seg = match segment_file(&log, b.seg_base).await {
                Ok(s) => s,
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
            if b.seg_base != active_base {
                active_base = b.seg_base;
            }
        }
        if log.is_poisoned() {
            break;
        }
        log.written_up_to(written_end, new_bytes);
        let sync_now = log.cfg.flush_mode == FlushMode::Sync
            || log.stop_requested.get()
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
        prepare_next(&log, active_base);
    }
    log.is_flusher_running.set(false);
    log.flusher_stopped.notify();
}
