//! Recovery: from the checkpoint, scan the commitlog, validate every record, truncate at the
//! first torn or invalid one, and rebuild consume-queue and index entries past their
//! checkpoint.
//!
//! Steps, in order:
//! 1. Read the checkpoint (newest valid slot). Without one, scan from the first segment.
//! 2. Load consume queues and index entries from their files, keeping only entries for records
//!    before the dispatch checkpoint `D` (the ones the checkpoint says are durable), and cut
//!    their files after the last kept entry (stale entries never come back).
//! 3. Scan the commitlog from `D`; each position is classified (`Found`) and the table in
//!    [`decide`] says what to do. Every kept record is dispatched again (idempotent). The
//!    scanned segments are then synced: a killed process may have left what the scan kept in
//!    a volatile cache, and a checkpoint is about to call it durable.
//! 4. Unless the last shutdown was clean at exactly this end, zero the rest of the last
//!    segment and delete later segments, so no stale record past the end can ever be read
//!    (e.g. sectors kept after a dropped one), then sync.
//!
//! Invariants checked by the tests: recovering twice gives the same state; every kept record
//! decodes and sits at its own PHYSICALOFFSET; the end never moves before the checkpoint's
//! commitlog offset unless the durable data itself is damaged (reported as truncation).

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::checkpoint::{Checkpoint, CheckpointFile};
use crate::commitlog::segment::{self, parse_name, Segment};
use crate::config::{StoreConfig, PAGE_SIZE_BYTES};
use crate::consume_queue::{
    CqEntry, QueueTable, CQ_ENTRY_SIZE_BYTES, ENTRIES_PER_FILE, FILE_SIZE_BYTES,
};
use crate::disk::{create_dir_all_durable, numbered_path, Disk};
use crate::dispatch::{dispatch, DispatchRecord};
use crate::error::{IoError, OpenError};
use crate::index::{Index, IndexEntry, INDEX_ENTRY_SIZE_BYTES};
use crate::record::{self, peek_header, Peek, BLANK_SIZE_BYTES};

/// Bytes read per scan step.
const SCAN_WINDOW_BYTES: usize = 1 << 20;

/// What the scanner found at a commitlog position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Eight zero bytes: never written.
    Zero,
    /// An end-of-segment blank.
    Blank {
        /// Its size equals the bytes left in the segment.
        is_size_right: bool,
    },
    /// A record magic.
    Record {
        /// Sizes and CRC check out.
        is_valid: bool,
        /// PHYSICALOFFSET equals the position.
        is_at_own_offset: bool,
        /// The record plus an 8-byte blank fits in the segment.
        fits_segment: bool,
    },
    /// Anything else.
    Garbage,
}

/// What recovery does at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanDecision {
    /// Valid record: keep it and go on after it.
    Keep,
    /// Valid blank: the log continues at the next segment.
    NextSegment,
    /// Nothing was ever written here: the log ends.
    EndOfLog,
    /// Torn or invalid: the log ends here and everything after is discarded.
    Truncate,
}

/// The recovery table. Rust's exhaustive `match` proves every case has an answer.
pub fn decide(found: Found) -> ScanDecision {
    match found {
        Found::Zero => ScanDecision::EndOfLog,
        Found::Blank {
            is_size_right: true,
        } => ScanDecision::NextSegment,
        Found::Blank {
            is_size_right: false,
        } => ScanDecision::Truncate,
        Found::Record {
            is_valid: true,
            is_at_own_offset: true,
            fits_segment: true,
        } => ScanDecision::Keep,
        Found::Record {
            is_valid: false, ..
        }
        | Found::Record {
            is_at_own_offset: false,
            ..
        }
        | Found::Record {
            fits_segment: false,
            ..
        } => ScanDecision::Truncate,
        Found::Garbage => ScanDecision::Truncate,
    }
}

/// Classifies the bytes at segment position `pos` (`buf` starts there).
pub fn classify(buf: &[u8], seg_base: u64, pos: u64, segment_size: u64) -> Found {
    let remaining = segment_size - pos;
    match peek_header(buf) {
        Peek::Zero => Found::Zero,
        Peek::Blank { size } => Found::Blank {
            is_size_right: u64::from(size) == remaining,
        },
        Peek::Record { size } => {
            let fits_segment = u64::from(size) + BLANK_SIZE_BYTES <= remaining;
            match record::decode(buf) {
                Ok(v) => Found::Record {
                    is_valid: true,
                    is_at_own_offset: v.commit_log_offset().0 == seg_base + pos,
                    fits_segment,
                },
                Err(_) => Found::Record {
                    is_valid: false,
                    is_at_own_offset: false,
                    fits_segment,
                },
            }
        }
        Peek::Short | Peek::Garbage => Found::Garbage,
    }
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The checkpoint recovery started from.
    pub checkpoint: Option<Checkpoint>,
    /// Where the scan started.
    pub scan_start_offset: u64,
    /// End of the recovered commitlog (next write offset).
    pub end_offset: u64,
    /// Lowest retained commitlog offset.
    pub min_offset: u64,
    /// Records validated by the scan.
    pub records_scanned: u64,
    /// Where and why the log was cut, when it was (an unclean end).
    pub truncated_at: Option<(u64, Found)>,
    /// Segment files found.
    pub segment_count: usize,
    /// Consume-queue entries loaded from files / rebuilt from the commitlog.
    pub cq_entries_loaded: u64,
    /// Consume-queue entries added by the scan.
    pub cq_entries_rebuilt: u64,
    /// Index entries loaded from files.
    pub index_entries_loaded: u64,
    /// Index entries added by the scan.
    pub index_entries_rebuilt: u64,
    /// Whether the previous run ended with a clean shutdown at this end.
    pub was_clean: bool,
}

pub(crate) struct Recovered {
    pub(crate) segments: BTreeMap<u64, Rc<Segment>>,
    pub(crate) min_offset: u64,
    pub(crate) end: u64,
    pub(crate) carried: Vec<u8>,
    pub(crate) queues: QueueTable,
    pub(crate) index: Index,
    pub(crate) checkpoint_file: CheckpointFile,
    pub(crate) report: RecoveryReport,
}

fn corrupt(reason: String) -> OpenError {
    OpenError::Corrupt { reason }
}

/// Runs recovery for the store under `cfg.root_dir`.
pub(crate) async fn recover(
    cfg: &StoreConfig,
    disk: &Rc<dyn Disk>,
) -> Result<Recovered, OpenError> {
    let root = &cfg.root_dir;
    let log_dir = root.join("commitlog");
    let cq_dir = root.join("consumequeue");
    let index_dir = root.join("index");
    // The store's own directories: their entries in `root` are synced on every open (a killed
    // process may have created one and not synced `root`); `root` itself only when created.
    create_dir_all_durable(&**disk, root, root).await?;
    for d in [&log_dir, &cq_dir, &index_dir] {
        create_dir_all_durable(&**disk, d, root).await?;
    }
    let seg_size = cfg.segment_size_bytes;
    let record_size_max = u64::from(cfg.body_size_max) + crate::config::RECORD_OVERHEAD_MAX;
    let checkpoint_file = CheckpointFile::open(&**disk, &root.join("checkpoint")).await?;
    let ckpt = checkpoint_file.last();
    let mut report = RecoveryReport {
        checkpoint: ckpt,
        ..Default::default()
    };

    // Segments.
    let mut bases: Vec<u64> = disk
        .list_dir(&log_dir)?
        .iter()
        .filter_map(|n| parse_name(n))
        .collect();
    bases.sort_unstable();
    for (i, b) in bases.iter().enumerate() {
        if b % seg_size != 0 {
            return Err(corrupt(format!(
                "segment {b} is not a multiple of segment_size_bytes {seg_size}"
            )));
        }
        if let Some(prev) = i.checked_sub(1).and_then(|p| bases.get(p)) {
            if prev + seg_size != *b {
                return Err(corrupt(format!(
                    "commitlog segments {prev} and {b} are not contiguous"
                )));
            }
        }
    }
    // Segment entries left unsynced by a killed process become durable before any is used.
    disk.sync_dir(&log_dir).await?;
    report.segment_count = bases.len();
    let mut segments: BTreeMap<u64, Rc<Segment>> = BTreeMap::new();
    for b in &bases {
        let seg = segment::open(&**disk, &log_dir, *b).await?;
        let size = seg.file.size().await?;
        if size != seg_size {
            if *b == *bases.last().unwrap_or(&0) && size < seg_size {
                // A segment whose preparation was cut short: re-created by the flusher.
                disk.remove(&seg.path)?;
                continue;
            }
            return Err(corrupt(format!(
                "segment {b} has size {size}, expected {seg_size}"
            )));
        }
        segments.insert(*b, Rc::new(seg));
    }
    let ckpt_commit = ckpt.map_or(0, |c| c.commit_log_offset);
    let (first, last_end) = match (segments.keys().next(), segments.keys().next_back()) {
        (Some(f), Some(l)) => (*f, l + seg_size),
        _ => {
            // No segment: start at the checkpoint's next segment boundary (offsets never go back).
            let end = ckpt_commit.div_ceil(seg_size) * seg_size;
            (end, end)
        }
    };
    let min_offset = first;
    let scan_start = ckpt
        .map_or(first, |c| c.dispatch_offset)
        .clamp(first, last_end);
    report.scan_start_offset = scan_start;
    report.min_offset = min_offset;

    // Consume queues and index, up to the dispatch checkpoint.
    let mut queues = QueueTable::new();
    report.cq_entries_loaded =
        load_queues(&**disk, &cq_dir, &mut queues, scan_start, min_offset).await?;
    let mut index = Index::default();
    report.index_entries_loaded = load_index(
        &**disk, &index_dir, &mut index, &segments, scan_start, seg_size,
    )
    .await?;
    let cq_before = queues.total_entries() as u64;
    let index_before = index.total_entries() as u64;

    // Scan.
    let mut pos_abs = scan_start;
    let mut truncated = None;
    'segments: while pos_abs < last_end {
        let seg_base = pos_abs - pos_abs % seg_size;
        let Some(seg) = segments.get(&seg_base).cloned() else {
            break;
        };
        let mut window: Vec<u8> = Vec::new();
        let mut window_pos = pos_abs - seg_base;
        loop {
            let pos = pos_abs - seg_base;
            let need_header = pos + BLANK_SIZE_BYTES > window_pos + window.len() as u64;
            if need_header || pos < window_pos {
                let len = SCAN_WINDOW_BYTES.min((seg_size - pos) as usize);
                window = seg.file.read_at(pos, len).await?;
                window_pos = pos;
            }
            let at = (pos - window_pos) as usize;
            if let Peek::Record { size } = peek_header(window.get(at..).unwrap_or_default()) {
                let want = (size as u64).min(seg_size - pos).min(record_size_max) as usize;
                if at + want > window.len() {
                    window = seg
                        .file
                        .read_at(
                            pos,
                            want.max(SCAN_WINDOW_BYTES.min((seg_size - pos) as usize)),
                        )
                        .await?;
                    window_pos = pos;
                }
            }
            let at = (pos - window_pos) as usize;
            let here = window.get(at..).unwrap_or_default();
            let found = classify(here, seg_base, pos, seg_size);
            match decide(found) {
                ScanDecision::Keep => {
                    let v = record::decode(here)
                        .map_err(|e| corrupt(format!("kept record does not decode: {e:?}")))?;
                    let r = DispatchRecord {
                        topic: v.topic(),
                        queue_id: v.queue_id().0,
                        queue_offset: v.queue_offset().0,
                        commit_log_offset: pos_abs,
                        size: v.total_size(),
                        sys_flag: v.sys_flag(),
                        properties: v.properties(),
                        store_timestamp_ms: v.store_timestamp_ms(),
                    };
                    dispatch(&mut queues, &mut index, seg_base, &r);
                    report.records_scanned += 1;
                    pos_abs += u64::from(v.total_size());
                }
                ScanDecision::NextSegment => {
                    pos_abs = seg_base + seg_size;
                    continue 'segments;
                }
                ScanDecision::EndOfLog => break 'segments,
                ScanDecision::Truncate => {
                    truncated = Some((pos_abs, found));
                    break 'segments;
                }
            }
        }
    }
    let end = pos_abs;
    // What the scan kept past the checkpoint may be in a volatile cache only (written by a
    // process that was killed before its fdatasync): make it durable before a checkpoint or
    // an acknowledgement counts on it.
    let first_scanned = scan_start - scan_start % seg_size;
    for seg in segments.range(first_scanned..=end).map(|(_, s)| s) {
        seg.file.sync().await?;
    }
    report.truncated_at = truncated;
    report.end_offset = end;
    report.was_clean =
        ckpt.is_some_and(|c| c.is_clean && c.commit_log_offset == end) && truncated.is_none();
    if end < ckpt_commit {
        log::error!("recovery: commitlog ends at {end}, before the checkpoint's durable offset {ckpt_commit}");
    }
    queues
        .topics
        .values_mut()
        .flat_map(|t| t.values_mut())
        .for_each(|q| q.truncate_after(end));
    index.truncate_after(end);
    report.cq_entries_rebuilt = (queues.total_entries() as u64).saturating_sub(cq_before);
    report.index_entries_rebuilt = (index.total_entries() as u64).saturating_sub(index_before);

    // Cut the tail: nothing past `end` may survive.
    let end_base = end - end % seg_size;
    let later: Vec<u64> = segments.range(end_base + 1..).map(|(b, _)| *b).collect();
    for b in later {
        if let Some(s) = segments.remove(&b) {
            disk.remove(&s.path)?;
        }
    }
    let page_start = end - end % PAGE_SIZE_BYTES;
    let mut carried = Vec::new();
    if let Some(seg) = segments.get(&end_base).cloned() {
        let in_seg = page_start - end_base;
        carried = seg
            .file
            .read_at(in_seg, (end - page_start) as usize)
            .await?;
        if !report.was_clean {
            zero_after(&seg, in_seg, &carried, seg_size).await?;
        }
    }
    Ok(Recovered {
        segments,
        min_offset,
        end,
        carried,
        queues,
        index,
        checkpoint_file,
        report,
    })
}

/// Rewrites the page holding the end (data, then zeros) and zeros the rest of the segment.
async fn zero_after(
    seg: &Segment,
    page_pos: u64,
    carried: &[u8],
    seg_size: u64,
) -> Result<(), IoError> {
    seg.file.write_at(page_pos, carried).await?;
    let zeros = vec![0u8; SCAN_WINDOW_BYTES];
    let mut pos = page_pos + PAGE_SIZE_BYTES;
    while pos < seg_size {
        let n = ((seg_size - pos) as usize).min(SCAN_WINDOW_BYTES);
        seg.file
            .write_at(pos, zeros.get(..n).unwrap_or_default())
            .await?;
        pos += n as u64;
    }
    seg.file.sync().await
}

/// Loads every consume queue's entries for records before `dispatch_offset`.
async fn load_queues(
    disk: &dyn Disk,
    cq_dir: &Path,
    queues: &mut QueueTable,
    dispatch_offset: u64,
    min_offset: u64,
) -> Result<u64, IoError> {
    let mut loaded = 0;
    for topic in disk.list_dir(cq_dir)? {
        let topic_dir = cq_dir.join(&topic);
        for qid_name in disk.list_dir(&topic_dir)? {
            let Ok(queue_id) = qid_name.parse::<u32>() else {
                continue;
            };
            let dir = topic_dir.join(&qid_name);
            let mut files: Vec<u64> = disk
                .list_dir(&dir)?
                .iter()
                .filter_map(|n| parse_name(n))
                .collect();
            files.sort_unstable();
            let q = queues.get_or_create(&topic, queue_id);
            let mut is_done = false;
            for byte_offset in files {
                let path = numbered_path(&dir, byte_offset);
                let f = disk.open(&path).await?;
                if is_done || byte_offset % FILE_SIZE_BYTES != 0 {
                    disk.remove(&path)?;
                    continue;
                }
                let bytes = f.read_at(0, FILE_SIZE_BYTES as usize).await?;
                let first = byte_offset / CQ_ENTRY_SIZE_BYTES as u64;
                let mut count_in_file = 0u64;
                for (i, chunk) in bytes.chunks_exact(CQ_ENTRY_SIZE_BYTES).enumerate() {
                    let Some(e) = CqEntry::decode(chunk) else {
                        break;
                    };
                    if e.size == 0 || e.commit_log_offset >= dispatch_offset {
                        is_done = true;
                        break;
                    }
                    count_in_file = i as u64 + 1;
                    if e == CqEntry::BLANK || e.commit_log_offset < min_offset {
                        continue;
                    }
                    q.push_at(first + i as u64, e);
                    loaded += 1;
                }
                if count_in_file < ENTRIES_PER_FILE {
                    is_done = true;
                }
                let keep = (count_in_file * CQ_ENTRY_SIZE_BYTES as u64).div_ceil(PAGE_SIZE_BYTES)
                    * PAGE_SIZE_BYTES;
                if (bytes.len() as u64) > keep {
                    // Zero the rest of the last page, then cut stale entries after it.
                    let page = keep.saturating_sub(PAGE_SIZE_BYTES);
                    let valid = (count_in_file * CQ_ENTRY_SIZE_BYTES as u64) as usize;
                    f.write_at(page, bytes.get(page as usize..valid).unwrap_or_default())
                        .await?;
                    f.truncate(keep).await?;
                    f.sync().await?;
                }
            }
            let max = q.max_offset();
            q.persisted = max;
            if q.entries.is_empty() && max == 0 {
                // Empty queue left by files with no valid entry: forget it.
                if let Some(t) = queues.topics.get_mut(&topic) {
                    t.remove(&queue_id);
                }
            }
        }
        if queues.topics.get(&topic).is_some_and(|t| t.is_empty()) {
            queues.topics.remove(&topic);
        }
    }
    Ok(loaded)
}

/// Loads index entries for records before `dispatch_offset`; drops files of missing segments.
async fn load_index(
    disk: &dyn Disk,
    index_dir: &Path,
    index: &mut Index,
    segments: &BTreeMap<u64, Rc<Segment>>,
    dispatch_offset: u64,
    seg_size: u64,
) -> Result<u64, IoError> {
    let mut loaded = 0;
    for name in disk.list_dir(index_dir)? {
        let Some(base) = parse_name(&name) else {
            continue;
        };
        let path = numbered_path(index_dir, base);
        if !segments.contains_key(&base) {
            disk.remove(&path)?;
            continue;
        }
        let f = disk.open(&path).await?;
        let size = f.size().await?;
        let bytes = f.read_at(0, size as usize).await?;
        let mut count = 0usize;
        for chunk in bytes.chunks_exact(INDEX_ENTRY_SIZE_BYTES) {
            let Some(e) = IndexEntry::decode(chunk) else {
                break;
            };
            let is_blank = chunk.iter().all(|b| *b == 0);
            if is_blank
                || e.commit_log_offset >= dispatch_offset
                || e.commit_log_offset < base
                || e.commit_log_offset >= base + seg_size
            {
                break;
            }
            index.add(base, e);
            count += 1;
            loaded += 1;
        }
        if let Some(file) = index.files.get_mut(&base) {
            file.persisted = count;
        }
        let keep =
            ((count * INDEX_ENTRY_SIZE_BYTES) as u64).div_ceil(PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES;
        if size > keep {
            let page = keep.saturating_sub(PAGE_SIZE_BYTES);
            let valid = count * INDEX_ENTRY_SIZE_BYTES;
            f.write_at(page, bytes.get(page as usize..valid).unwrap_or_default())
                .await?;
            f.truncate(keep).await?;
            f.sync().await?;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_header_ends_the_log() {
        assert_eq!(decide(Found::Zero), ScanDecision::EndOfLog);
    }

    #[test]
    fn blank_of_the_right_size_moves_to_next_segment() {
        assert_eq!(
            decide(Found::Blank {
                is_size_right: true
            }),
            ScanDecision::NextSegment
        );
    }

    #[test]
    fn blank_of_the_wrong_size_truncates() {
        assert_eq!(
            decide(Found::Blank {
                is_size_right: false
            }),
            ScanDecision::Truncate
        );
    }

    #[test]
    fn valid_record_at_its_offset_is_kept() {
        let f = Found::Record {
            is_valid: true,
            is_at_own_offset: true,
            fits_segment: true,
        };
        assert_eq!(decide(f), ScanDecision::Keep);
    }

    #[test]
    fn record_failing_crc_or_size_truncates() {
        let f = Found::Record {
            is_valid: false,
            is_at_own_offset: false,
            fits_segment: true,
        };
        assert_eq!(decide(f), ScanDecision::Truncate);
    }

    #[test]
    fn stale_record_at_another_offset_truncates() {
        let f = Found::Record {
            is_valid: true,
            is_at_own_offset: false,
            fits_segment: true,
        };
        assert_eq!(decide(f), ScanDecision::Truncate);
    }

    #[test]
    fn record_overrunning_the_segment_truncates() {
        let f = Found::Record {
            is_valid: true,
            is_at_own_offset: true,
            fits_segment: false,
        };
        assert_eq!(decide(f), ScanDecision::Truncate);
    }

    #[test]
    fn garbage_truncates() {
        assert_eq!(decide(Found::Garbage), ScanDecision::Truncate);
    }

    #[test]
    fn classify_reads_real_bytes() {
        let seg = 1 << 20;
        assert_eq!(classify(&[0u8; 16], 0, 0, seg), Found::Zero);
        let mut blank = Vec::new();
        blank.extend_from_slice(&((seg - 100) as i32).to_be_bytes());
        blank.extend_from_slice(&record::MAGIC_BLANK.to_be_bytes());
        assert_eq!(
            classify(&blank, 0, 100, seg),
            Found::Blank {
                is_size_right: true
            }
        );
        assert_eq!(
            classify(&blank, 0, 104, seg),
            Found::Blank {
                is_size_right: false
            }
        );
        assert_eq!(
            classify(&[1, 2, 3, 4, 5, 6, 7, 8], 0, 0, seg),
            Found::Garbage
        );
        assert_eq!(classify(&[1, 2], 0, 0, seg), Found::Garbage);
    }
}
