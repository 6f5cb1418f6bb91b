//! CommitLog: the shard's ordered segments plus the aligned append buffer.
//!
//! Owned by one shard (`Rc`, never crosses cores). `append` is synchronous: it encodes records
//! into the pending buffer and returns their offsets; the records are readable at once and
//! durable when the flusher (`group_commit.rs`) has written and fdatasynced them.
//!
//! Invariants:
//! - `durable <= written <= write_offset`; all three only grow (until recovery truncates).
//! - Pending bytes + bytes in flight never exceed `append_buffer_bytes_max`.
//! - Every record lies whole inside one segment, and after it at least 8 bytes remain for the
//!   blank marker.
//! - The active pending buffer starts on a 4 KiB boundary of its segment; its first `carried`
//!   bytes are already written (the partial page, rewritten on the next flush).
//!
//! Out of space: when a segment cannot be created for lack of space (ENOSPC while
//! preallocating), nothing has been written to it, so the log is not poisoned.
//! - The next segment is normally prepared in the background long before it is needed. If
//!   that runs out of space, an append that would cross into it is refused as disk full
//!   (nothing appended), and the preparation is retried (a refused put, at most every
//!   `PREPARE_RETRY_MS`; a retention pass).
//! - If records were appended for a segment before its creation failed, the flusher keeps the
//!   batches it could not write (in order, still readable from the tail cache, their tickets
//!   unresolved) and `is_out_of_space` is set: the store refuses puts as disk full until the
//!   flusher has created the segment and written them. It retries when woken (a refused put,
//!   a retention pass). At shutdown a last failed retry poisons the log (those records cannot
//!   be made durable).

mod group_commit;
pub(crate) mod segment;
mod tail_cache;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Waker;

use bytes::{BufMut, Bytes, BytesMut};

pub use group_commit::DurabilityTicket;
pub(crate) use group_commit::{retry_next_segment, run_flusher, segment_file};
pub(crate) use segment::Segment;
use tail_cache::TailCache;

use crate::config::PAGE_SIZE_BYTES;
use crate::disk::Disk;
use crate::error::{GetError, PutError};
use crate::record::{self, peek_header, Peek, BLANK_SIZE_BYTES, MAGIC_BLANK};
use crate::signal::Signal;
use crate::FlushMode;

/// Capacity reserved for a fresh pending buffer (grows up to the append bound).
const PENDING_CAPACITY_BYTES: usize = 256 << 10;

/// What the commitlog needs from StoreConfig.
#[derive(Clone)]
pub(crate) struct CommitLogConfig {
    pub(crate) dir: PathBuf,
    pub(crate) segment_size_bytes: u64,
    pub(crate) flush_mode: FlushMode,
    pub(crate) flush_interval_ms: u64,
    pub(crate) sync_flush_timeout_ms: u64,
    pub(crate) append_buffer_bytes_max: usize,
    pub(crate) tail_cache_bytes_max: usize,
    pub(crate) clock: Rc<dyn crate::clock::Clock>,
    pub(crate) background: crate::store::Background,
}

/// Appended bytes not yet taken by the flusher, for one segment.
#[derive(Debug)]
pub(crate) struct PendingBuf {
    seg_base: u64,
    /// Position in the segment of `buf[0]`; 4 KiB aligned.
    file_pos: u64,
    /// Leading bytes already written (the partial page carried over).
    carried: usize,
    buf: BytesMut,
}

impl PendingBuf {
    fn new(seg_base: u64, file_pos: u64, carried: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(PENDING_CAPACITY_BYTES.max(carried.len()));
        buf.put_slice(carried);
        Self {
            seg_base,
            file_pos,
            carried: carried.len(),
            buf,
        }
    }
    fn start(&self) -> u64 {
        self.seg_base + self.file_pos
    }
    fn end(&self) -> u64 {
        self.start() + self.buf.len() as u64
    }
    fn has_new_bytes(&self) -> bool {
        self.buf.len() > self.carried
    }
}

/// One write the flusher performs: `bytes` at `file_pos` of segment `seg_base`.
#[derive(Debug)]
pub(crate) struct FlushBatch {
    pub(crate) seg_base: u64,
    pub(crate) file_pos: u64,
    pub(crate) bytes: Bytes,
    /// Bytes in this batch that were new (not carried), released from the bound once written.
    pub(crate) new_bytes: usize,
    /// Commitlog offset reached once this batch is written (next segment base after a blank).
    pub(crate) end_offset: u64,
}

pub(crate) struct LogState {
    pub(crate) segments: BTreeMap<u64, Rc<Segment>>,
    /// Base of a segment a background task is creating.
    pub(crate) preparing: Option<u64>,
    pub(crate) write_offset: u64,
    pending: VecDeque<PendingBuf>,
    tail: TailCache,
    pub(crate) min_offset: u64,
}

/// Whether appending records of `sizes` would start a segment whose file does not exist.
fn crosses_into_missing(st: &LogState, sizes: &[usize], seg_size: u64) -> bool {
    let mut offset = st.write_offset;
    for &size in sizes {
        let seg_base = offset - offset % seg_size;
        if size as u64 + BLANK_SIZE_BYTES > seg_base + seg_size - offset {
            offset = seg_base + seg_size;
            if !st.segments.contains_key(&offset) {
                return true;
            }
        }
        offset += size as u64;
    }
    false
}

/// The shard's commitlog.
pub(crate) struct CommitLog {
    pub(crate) cfg: CommitLogConfig,
    pub(crate) disk: Rc<dyn Disk>,
    pub(crate) state: RefCell<LogState>,
    durable: Cell<u64>,
    written: Cell<u64>,
    buffered_bytes: Cell<usize>,
    poisoned: Cell<bool>,
    /// The flusher holds batches for a segment it could not create (no space).
    out_of_space: Cell<bool>,
    /// No background segment preparation before this time (ms) after one ran out of space.
    pub(crate) prepare_not_before_ms: Cell<i64>,
    /// The last background preparation of the next segment ran out of space.
    pub(crate) is_next_segment_short_of_space: Cell<bool>,
    pub(crate) stop_requested: Cell<bool>,
    pub(crate) flusher_wake: Signal,
    pub(crate) prepared: Signal,
    pub(crate) flusher_stopped: Signal,
    pub(crate) is_flusher_running: Cell<bool>,
    waiters: RefCell<Vec<(u64, Waker)>>,
    pub(crate) flush_count: Cell<u64>,
}

impl CommitLog {
    /// A log whose data ends at `end` (everything before it durable), with these segments.
    pub(crate) fn new(
        cfg: CommitLogConfig,
        disk: Rc<dyn Disk>,
        segments: BTreeMap<u64, Rc<Segment>>,
        min_offset: u64,
        end: u64,
        carried: Vec<u8>,
    ) -> Self {
        let seg_base = end - end % cfg.segment_size_bytes;
        let file_pos = (end - seg_base) - (end - seg_base) % PAGE_SIZE_BYTES;
        debug_assert_eq!(carried.len() as u64, end - seg_base - file_pos);
        let mut pending = VecDeque::new();
        pending.push_back(PendingBuf::new(seg_base, file_pos, &carried));
        Self {
            cfg,
            disk,
            state: RefCell::new(LogState {
                segments,
                preparing: None,
                write_offset: end,
                pending,
                tail: TailCache::default(),
                min_offset,
            }),
            durable: Cell::new(end),
            written: Cell::new(end),
            buffered_bytes: Cell::new(0),
            poisoned: Cell::new(false),
            out_of_space: Cell::new(false),
            prepare_not_before_ms: Cell::new(i64::MIN),
            is_next_segment_short_of_space: Cell::new(false),
            stop_requested: Cell::new(false),
            flusher_wake: Signal::default(),
            prepared: Signal::default(),
            flusher_stopped: Signal::default(),
            is_flusher_running: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
            flush_count: Cell::new(0),
        }
    }

    pub(crate) fn segment_base_of(&self, offset: u64) -> u64 {
        offset - offset % self.cfg.segment_size_bytes
    }

    pub(crate) fn durable_offset(&self) -> u64 {
        self.durable.get()
    }

    pub(crate) fn written_offset(&self) -> u64 {
        self.written.get()
    }

    pub(crate) fn write_offset(&self) -> u64 {
        self.state.borrow().write_offset
    }

    pub(crate) fn min_offset(&self) -> u64 {
        self.state.borrow().min_offset
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.get()
    }

    /// Whether the flusher is waiting for space to create a segment (puts are refused).
    pub(crate) fn is_out_of_space(&self) -> bool {
        self.out_of_space.get()
    }

    /// Sets or clears the out-of-space state (logged on change).
    pub(crate) fn set_out_of_space(&self, is_out: bool, why: &dyn std::fmt::Display) {
        if self.out_of_space.replace(is_out) != is_out {
            if is_out {
                log::warn!("commitlog out of space, refusing writes until a retry succeeds: {why}");
            } else {
                log::info!(
                    "commitlog segment created after running out of space: accepting writes"
                );
            }
        }
    }

    /// Wakes the flusher to retry creating a segment, if it is waiting for space.
    /// Also lifts the pause of background segment preparation after a failed one.
    pub(crate) fn retry_when_out_of_space(&self) {
        self.prepare_not_before_ms.set(i64::MIN);
        if self.out_of_space.get() {
            self.flusher_wake.notify();
        }
    }

    /// Marks the log poisoned (once, logged) and fails every waiting ticket.
    pub(crate) fn poison(&self, why: &dyn std::fmt::Display) {
        if !self.poisoned.replace(true) {
            log::error!("commitlog poisoned, refusing further writes: {why}");
        }
        for (_, w) in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
        self.prepared.notify();
    }

    /// Appends `sizes.len()` records; `write(i, offset, buf)` must put exactly `sizes[i]` bytes.
    /// Returns each record's offset and the end offset of the last one.
    pub(crate) fn append(
        &self,
        sizes: &[usize],
        mut write: impl FnMut(usize, u64, &mut BytesMut),
    ) -> Result<(Vec<u64>, u64), PutError> {
        if self.poisoned.get() {
            return Err(PutError::Poisoned);
        }
        let total: usize = sizes.iter().sum::<usize>() + BLANK_SIZE_BYTES as usize;
        if self.buffered_bytes.get() + total > self.cfg.append_buffer_bytes_max {
            return Err(PutError::BufferFull);
        }
        let seg_size = self.cfg.segment_size_bytes;
        let mut st = self.state.borrow_mut();
        if self.is_next_segment_short_of_space.get() && crosses_into_missing(&st, sizes, seg_size) {
            return Err(PutError::DiskFull);
        }
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut added = 0usize;
        for (i, &size) in sizes.iter().enumerate() {
            let offset = st.write_offset;
            let seg_base = offset - offset % seg_size;
            let remaining = seg_base + seg_size - offset;
            let offset = if size as u64 + BLANK_SIZE_BYTES > remaining {
                // End of segment: blank marker, continue at the next segment.
                let Some(active) = st.pending.back_mut() else {
                    return Err(PutError::Poisoned);
                };
                debug_assert_eq!(active.end(), offset);
                active.buf.put_i32(remaining as i32);
                active.buf.put_i32(MAGIC_BLANK);
                added += BLANK_SIZE_BYTES as usize;
                let next = seg_base + seg_size;
                st.pending.push_back(PendingBuf::new(next, 0, &[]));
                st.write_offset = next;
                next
            } else {
                offset
            };
            let Some(active) = st.pending.back_mut() else {
                return Err(PutError::Poisoned);
            };
            let before = active.buf.len();
            write(i, offset, &mut active.buf);
            debug_assert_eq!(active.buf.len() - before, size);
            st.write_offset = offset + size as u64;
            added += size;
            offsets.push(offset);
        }
        let end = st.write_offset;
        drop(st);
        self.buffered_bytes.set(self.buffered_bytes.get() + added);
        self.flusher_wake.notify();
        Ok((offsets, end))
    }

    /// Takes everything appended so far as write batches (called by the flusher).
    pub(crate) fn take_batches(&self) -> Vec<FlushBatch> {
        let mut st = self.state.borrow_mut();
        let mut batches = Vec::new();
        while st.pending.len() > 1 {
            let Some(p) = st.pending.pop_front() else {
                break;
            };
            let new_bytes = p.buf.len() - p.carried;
            let end_offset = p.seg_base + self.cfg.segment_size_bytes;
            let start = p.start();
            let bytes = p.buf.freeze();
            st.tail.push(start, bytes.clone());
            batches.push(FlushBatch {
                seg_base: p.seg_base,
                file_pos: p.file_pos,
                bytes,
                new_bytes,
                end_offset,
            });
        }
        let Some(active) = st.pending.back_mut() else {
            return batches;
        };
        if !active.has_new_bytes() {
            return batches;
        }
        let new_bytes = active.buf.len() - active.carried;
        let seg_base = active.seg_base;
        let file_pos = active.file_pos;
        let bytes = active.buf.split().freeze();
        let end_pos = file_pos + bytes.len() as u64;
        let keep = (end_pos % PAGE_SIZE_BYTES) as usize;
        let carried = bytes.get(bytes.len() - keep..).unwrap_or_default();
        *active = PendingBuf::new(seg_base, end_pos - keep as u64, carried);
        let start = seg_base + file_pos;
        st.tail.push(start, bytes.clone());
        batches.push(FlushBatch {
            seg_base,
            file_pos,
            bytes,
            new_bytes,
            end_offset: start + end_pos - file_pos,
        });
        batches
    }

    /// The flusher wrote batches up to `end` (and released `new_bytes` from the bound).
    pub(crate) fn written_up_to(&self, end: u64, new_bytes: usize) {
        self.written.set(end);
        self.buffered_bytes
            .set(self.buffered_bytes.get().saturating_sub(new_bytes));
        let mut st = self.state.borrow_mut();
        st.tail.evict(self.cfg.tail_cache_bytes_max, end);
    }

    /// The flusher synced everything up to `end`: resolve tickets.
    pub(crate) fn durable_up_to(&self, end: u64) {
        self.durable.set(end);
        self.flush_count.set(self.flush_count.get() + 1);
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|(target, w)| {
            if *target <= end {
                w.wake_by_ref();
                false
            } else {
                true
            }
        });
    }

    pub(crate) fn register_waiter(&self, target: u64, waker: &Waker) {
        self.waiters.borrow_mut().push((target, waker.clone()));
    }

    /// The segment holding `offset`, if retained and open.
    pub(crate) fn segment_for(&self, offset: u64) -> Option<Rc<Segment>> {
        let st = self.state.borrow();
        st.segments.get(&self.segment_base_of(offset)).cloned()
    }

    /// Reads the whole record at `offset`. `size` is known from a consume-queue entry, or
    /// read from the record header when None. Served from pending bytes, the tail cache, or
    /// an aligned DMA read of the segment file.
    pub(crate) async fn read_record(
        &self,
        offset: u64,
        size: Option<u32>,
    ) -> Result<Bytes, GetError> {
        let not_available = GetError::OffsetNotAvailable { offset };
        let segment = {
            let st = self.state.borrow();
            if offset < st.min_offset || offset >= st.write_offset {
                return Err(not_available);
            }
            for p in st.pending.iter().rev() {
                if offset >= p.start() + p.carried as u64 && offset < p.end() {
                    let at = (offset - p.start()) as usize;
                    let rest = p.buf.get(at..).unwrap_or_default();
                    let len = match size {
                        Some(s) => s as usize,
                        None => match peek_header(rest) {
                            Peek::Record { size } => size as usize,
                            _ => return Err(not_available),
                        },
                    };
                    let bytes = rest.get(..len).ok_or(not_available)?;
                    return Ok(Bytes::copy_from_slice(bytes));
                }
            }
            if let Some(b) = st.tail.get(offset, size) {
                return Ok(b);
            }
            if offset >= self.written.get() {
                return Err(not_available);
            }
            st.segments
                .get(&self.segment_base_of(offset))
                .cloned()
                .ok_or(not_available)?
        };
        let pos = offset - segment.base;
        let seg_left = (self.cfg.segment_size_bytes - pos) as usize;
        let first_len = match size {
            Some(s) => s as usize,
            None => ((PAGE_SIZE_BYTES - pos % PAGE_SIZE_BYTES) as usize)
                .max(512)
                .min(seg_left),
        };
        let mut buf = segment.file.read_at(pos, first_len).await?;
        if size.is_none() {
            let want = match peek_header(&buf) {
                Peek::Record { size } => size as usize,
                _ => {
                    return Err(GetError::InvalidRecord {
                        offset,
                        reason: record::DecodeError::BadMagic,
                    })
                }
            };
            if want > seg_left {
                return Err(GetError::InvalidRecord {
                    offset,
                    reason: record::DecodeError::SizeMismatch,
                });
            }
            if want > buf.len() {
                buf = segment.file.read_at(pos, want).await?;
            }
            buf.truncate(want);
        }
        if let Err(reason) = record::decode(&buf) {
            return Err(GetError::InvalidRecord { offset, reason });
        }
        Ok(Bytes::from(buf))
    }

    /// Drops a deleted segment's data from memory and moves the minimum offset on.
    pub(crate) fn forget_segment(&self, base: u64) -> Option<Rc<Segment>> {
        let mut st = self.state.borrow_mut();
        let seg = st.segments.remove(&base);
        let next_min = base + self.cfg.segment_size_bytes;
        if st.min_offset < next_min {
            st.min_offset = next_min.min(st.write_offset);
        }
        let min = st.min_offset;
        st.tail.drop_before(min);
        seg
    }

    /// Bytes held by the tail cache (for tests and metrics).
    pub(crate) fn tail_cache_size_bytes(&self) -> usize {
        self.state.borrow().tail.size_bytes()
    }
}
