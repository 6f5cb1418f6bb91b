//! Retention: expire commitlog segments by age and disk usage, and refuse writes when the
//! disk is nearly full.
//!
//! Rules (RocketMQ's): at the `delete_when_hour`, segments whose last write is older than
//! `file_reserved_time_hours` are deleted, oldest first. Above `disk_clean_ratio` this happens
//! at any hour, and if usage stays above it the oldest segments go even before they expire.
//! Above `disk_max_used_ratio` puts fail with `DiskFull`; reads go on, and puts resume by
//! themselves once a later pass sees space again. The segment being written (and anything
//! after it) is never deleted. A reader already holding a segment keeps its open handle, so a
//! deletion never breaks a read under way.
//!
//! Usage-driven deletion stops as soon as enough is gone. A removed segment's blocks come
//! back only when its last handle closes (a reader still holding it, or glommio's asynchronous
//! close), so the space measured right after a removal still counts it. Each decision uses the
//! usage expected once those handles close: `min(measured now, measured at the start - bytes
//! removed this pass) - bytes of segments removed by earlier passes and still held`, which is
//! never below the truth when the filesystem did free the blocks at once (at worst a pass
//! deletes too little, and the next one, a second later, goes on). RocketMQ's forcible clean
//! removes up to 10 files per pass without measuring again; this deletes only what is needed.

use crate::disk::DiskSpace;
use crate::error::IoError;
use crate::store::Store;

/// Segments deleted per pass at most (spreads the I/O).
pub(crate) const SEGMENTS_DELETED_PER_PASS_MAX: usize = 10;

const HOUR_MS: i64 = 3_600_000;

/// What one retention pass saw and did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RetentionReport {
    /// Disk usage ratio at the start (not counting segments removed earlier and still held
    /// open).
    pub used_ratio: f64,
    /// Whether writes are refused after this pass.
    pub is_disk_full: bool,
    /// Segments deleted.
    pub segments_deleted: usize,
}

/// Why a segment may be deleted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Keep,
    Delete,
}

/// The retention table for one segment (oldest first; the first `Keep` stops the pass).
pub(crate) fn expiry(
    is_expired: bool,
    is_delete_hour: bool,
    is_above_clean: bool,
    is_above_clean_now: bool,
) -> Expiry {
    match (
        is_expired,
        is_delete_hour || is_above_clean,
        is_above_clean_now,
    ) {
        (true, true, _) => Expiry::Delete,
        (_, _, true) => Expiry::Delete,
        (true, false, false) | (false, _, false) => Expiry::Keep,
    }
}

/// Usage ratio expected once the removed segments' handles are closed. `start` was measured
/// before this pass removed anything, `now` after; `removed_bytes` were removed this pass,
/// `held_bytes` by earlier passes and are still held open.
pub(crate) fn expected_used_ratio(
    start: &DiskSpace,
    now: &DiskSpace,
    removed_bytes: u64,
    held_bytes: u64,
) -> f64 {
    if now.total_bytes == 0 {
        return 1.0;
    }
    let used_start = start.total_bytes.saturating_sub(start.free_bytes);
    let used_now = now.total_bytes.saturating_sub(now.free_bytes);
    let used = used_now
        .min(used_start.saturating_sub(removed_bytes))
        .saturating_sub(held_bytes);
    used as f64 / now.total_bytes as f64
}

pub(crate) async fn run(store: &Store) -> Result<RetentionReport, IoError> {
    let cfg = store.config();
    // Space may be back: a flusher waiting to create a segment, or a failed preparation of
    // the next one, retries now.
    store.log.retry_when_out_of_space();
    crate::commitlog::retry_next_segment(&store.log);
    let space = store.disk.space(&cfg.root_dir)?;
    let held_bytes = store.removed_segments_held_bytes();
    let used_ratio = expected_used_ratio(&space, &space, 0, held_bytes);
    let mut report = RetentionReport {
        used_ratio,
        ..Default::default()
    };
    let now = store.clock.now_ms();
    let is_delete_hour = (now / HOUR_MS).rem_euclid(24) == i64::from(cfg.delete_when_hour);
    let is_above_clean = used_ratio >= cfg.disk_clean_ratio;
    let reserved_ms = i64::from(cfg.file_reserved_time_hours) * HOUR_MS;
    let active_base = store.log.segment_base_of(store.log.write_offset());
    let candidates: Vec<u64> = store
        .log
        .state
        .borrow()
        .segments
        .keys()
        .copied()
        .filter(|b| *b < active_base)
        .collect();
    let mut ratio_now = used_ratio;
    let mut removed_bytes = 0u64;
    for base in candidates.into_iter().take(SEGMENTS_DELETED_PER_PASS_MAX) {
        // Only the path: this pass holds no handle of a segment it removes.
        let Some(path) = store.log.segment_for(base).map(|s| s.path.clone()) else {
            continue;
        };
        let modified = store.disk.modified_ms(&path).unwrap_or(now);
        let is_expired = modified + reserved_ms <= now;
        let is_above_clean_now = ratio_now >= cfg.disk_clean_ratio;
        if expiry(
            is_expired,
            is_delete_hour,
            is_above_clean,
            is_above_clean_now,
        ) == Expiry::Keep
        {
            break;
        }
        store.delete_segment(base)?;
        report.segments_deleted += 1;
        removed_bytes += cfg.segment_size_bytes;
        let measured = store.disk.space(&cfg.root_dir)?;
        ratio_now = expected_used_ratio(&space, &measured, removed_bytes, held_bytes);
    }
    let is_full = ratio_now >= cfg.disk_max_used_ratio;
    if is_full != store.is_disk_full.get() {
        if is_full {
            log::warn!(
                "disk usage {ratio_now:.3} >= {}: refusing writes",
                cfg.disk_max_used_ratio
            );
        } else {
            log::info!("disk usage {ratio_now:.3}: accepting writes again");
        }
    }
    store.is_disk_full.set(is_full);
    report.is_disk_full = is_full;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_segment_is_deleted_at_the_delete_hour() {
        assert_eq!(expiry(true, true, false, false), Expiry::Delete);
    }

    #[test]
    fn expired_segment_waits_for_the_delete_hour() {
        assert_eq!(expiry(true, false, false, false), Expiry::Keep);
    }

    #[test]
    fn young_segment_is_kept_below_high_water() {
        assert_eq!(expiry(false, true, false, false), Expiry::Keep);
    }

    #[test]
    fn above_high_water_expired_goes_at_any_hour() {
        assert_eq!(expiry(true, false, true, false), Expiry::Delete);
    }

    #[test]
    fn above_high_water_even_young_segments_go() {
        assert_eq!(expiry(false, false, true, true), Expiry::Delete);
    }

    fn space(free_bytes: u64) -> DiskSpace {
        DiskSpace {
            total_bytes: 1000,
            free_bytes,
            available_bytes: free_bytes,
        }
    }

    #[test]
    fn removed_bytes_count_as_freed_while_still_open() {
        // Nothing freed yet (handles open): expected 800 - 100 used.
        assert_eq!(expected_used_ratio(&space(200), &space(200), 100, 0), 0.7);
    }

    #[test]
    fn space_freed_at_once_is_not_counted_twice() {
        assert_eq!(expected_used_ratio(&space(200), &space(300), 100, 0), 0.7);
    }

    #[test]
    fn more_measured_free_space_wins() {
        // Another writer freed space meanwhile.
        assert_eq!(expected_used_ratio(&space(200), &space(500), 100, 0), 0.5);
    }

    #[test]
    fn segments_removed_earlier_and_still_held_count_as_freed() {
        assert_eq!(expected_used_ratio(&space(200), &space(200), 0, 100), 0.7);
        assert_eq!(expected_used_ratio(&space(200), &space(200), 100, 100), 0.6);
    }
}
