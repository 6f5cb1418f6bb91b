//! StoreConfig: every limit of the engine, with its RocketMQ name and default.

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::types::FlushMode;

/// I/O alignment for every direct write: the physical block size of the target disks.
pub const PAGE_SIZE_BYTES: u64 = 4096;

/// Configuration of one shard's store. Validated by [`StoreConfig::validate`] at open.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// This shard's store directory (commitlog/, consumequeue/, index/, checkpoint).
    pub root_dir: PathBuf,
    /// mappedFileSizeCommitLog: size of one commitlog segment, default 1 GiB. Multiple of 4 KiB.
    pub segment_size_bytes: u64,
    /// flushDiskType, default Sync.
    pub flush_mode: FlushMode,
    /// flushIntervalCommitLog: fdatasync period under ASYNC_FLUSH, default 500 ms.
    pub flush_interval_ms: u64,
    /// syncFlushTimeout: a ticket not durable after this reports `FlushError::Timeout`.
    pub sync_flush_timeout_ms: u64,
    /// Bound of unflushed bytes (pending + in flight); beyond it put says `BufferFull`.
    pub append_buffer_bytes_max: usize,
    /// Recent commitlog bytes kept in memory for reads (no page cache under O_DIRECT).
    pub tail_cache_bytes_max: usize,
    /// maxMessageSize: RocketMQ's default is 4 MiB; larger bodies get MessageIllegal.
    pub body_size_max: u32,
    /// fileReservedTime: segments older than this are deleted at `delete_when_hour`.
    pub file_reserved_time_hours: u32,
    /// deleteWhen: the hour of day (0..=23, UTC) when expired segments are deleted.
    pub delete_when_hour: u8,
    /// High-water ratio of disk usage: above it old segments are deleted sooner.
    pub disk_clean_ratio: f64,
    /// Hard ratio (diskMaxUsedSpaceRatio): above it puts fail with `DiskFull`.
    pub disk_max_used_ratio: f64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from("store"),
            segment_size_bytes: 1 << 30,
            flush_mode: FlushMode::Sync,
            flush_interval_ms: 500,
            sync_flush_timeout_ms: 5000,
            append_buffer_bytes_max: 64 << 20,
            tail_cache_bytes_max: 256 << 20,
            body_size_max: 4 << 20,
            file_reserved_time_hours: 72,
            delete_when_hour: 4,
            disk_clean_ratio: 0.75,
            disk_max_used_ratio: 0.90,
        }
    }
}

/// Largest record overhead: header with two IPv6 hosts, 2-byte topic length, 2-byte properties
/// length, plus the longest topic and properties.
pub(crate) const RECORD_OVERHEAD_MAX: u64 = 115 + i16::MAX as u64 + i16::MAX as u64;

impl StoreConfig {
    /// Checks every limit against the others; the store refuses to open otherwise.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError { reason });
        if self.segment_size_bytes == 0 || !self.segment_size_bytes.is_multiple_of(PAGE_SIZE_BYTES)
        {
            return fail(format!(
                "segment_size_bytes {} must be a positive multiple of {PAGE_SIZE_BYTES}",
                self.segment_size_bytes
            ));
        }
        let record_max = u64::from(self.body_size_max) + RECORD_OVERHEAD_MAX;
        if self.segment_size_bytes < record_max + 8 {
            return fail(format!(
                "segment_size_bytes {} cannot hold a record of body_size_max {} (needs {})",
                self.segment_size_bytes,
                self.body_size_max,
                record_max + 8
            ));
        }
        if self.body_size_max == 0 || self.body_size_max > i32::MAX as u32 / 2 {
            return fail(format!("body_size_max {} out of range", self.body_size_max));
        }
        if (self.append_buffer_bytes_max as u64) < record_max + 2 * PAGE_SIZE_BYTES {
            return fail(format!(
                "append_buffer_bytes_max {} cannot hold one record of body_size_max {}",
                self.append_buffer_bytes_max, self.body_size_max
            ));
        }
        if self.flush_interval_ms == 0 || self.sync_flush_timeout_ms == 0 {
            return fail("flush_interval_ms and sync_flush_timeout_ms must be > 0".into());
        }
        if self.delete_when_hour > 23 {
            return fail(format!("delete_when_hour {} > 23", self.delete_when_hour));
        }
        let ratio_ok = |r: f64| r > 0.0 && r <= 1.0;
        if !ratio_ok(self.disk_clean_ratio)
            || !ratio_ok(self.disk_max_used_ratio)
            || self.disk_clean_ratio > self.disk_max_used_ratio
        {
            return fail(format!(
                "need 0 < disk_clean_ratio ({}) <= disk_max_used_ratio ({}) <= 1",
                self.disk_clean_ratio, self.disk_max_used_ratio
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert!(StoreConfig::default().validate().is_ok());
    }

    #[test]
    fn unaligned_segment_is_rejected() {
        let c = StoreConfig {
            segment_size_bytes: (8 << 20) + 1,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
