//! `Disk`: the only door to files. The engine never touches `std::fs` or glommio files
//! directly, so tests swap in `SimDisk` (lost, torn and failing writes) and production uses
//! `GlommioDisk` (O_DIRECT DmaFile).
//!
//! Contract for every implementation:
//! - `write_at` positions are 4 KiB aligned; the data is padded with zeros to a 4 KiB multiple.
//! - A write is durable only after `sync` on the same file returns Ok.
//! - Files and directories created or removed are durable at once (metadata is not simulated).
//! - Objects are owned by one shard's thread (`Rc`, not `Send`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use crate::error::IoError;

pub mod glommio;
pub mod sim;

/// A boxed future that stays on its thread.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Space on the filesystem holding the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// Total bytes.
    pub total_bytes: u64,
    /// Free bytes, including blocks reserved for root.
    pub free_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

impl DiskSpace {
    /// Used share, 0.0..=1.0, as RocketMQ computes it (`UtilAll.getDiskPartitionSpaceUsedPercent`):
    /// (total - free) / total, where free includes blocks reserved for privileged users (the
    /// broker runs as root here, and this host reserves most of its disk for another uid).
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        self.total_bytes.saturating_sub(self.free_bytes) as f64 / self.total_bytes as f64
    }
}

/// How a segment file is preallocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocation {
    /// fallocate, then write zeros over the whole file (fastest fdatasync later on ext4).
    ZeroFill,
    /// fallocate only (unwritten extents).
    Fallocate,
}

/// An open file. Every method keeps op, path and offset in its error.
pub trait DiskFile {
    /// The file's path.
    fn path(&self) -> &Path;
    /// Writes `data` at `pos` (4 KiB aligned), zero-padded to a 4 KiB multiple.
    fn write_at<'a>(&'a self, pos: u64, data: &'a [u8]) -> LocalBoxFuture<'a, Result<(), IoError>>;
    /// Reads up to `len` bytes at `pos` (any alignment); shorter at end of file.
    fn read_at(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, Result<Vec<u8>, IoError>>;
    /// fdatasync: everything written before is durable when this returns Ok.
    fn sync(&self) -> LocalBoxFuture<'_, Result<(), IoError>>;
    /// Current size.
    fn size(&self) -> LocalBoxFuture<'_, Result<u64, IoError>>;
    /// Grows the file to `size` (durably) the given way.
    fn preallocate(&self, size: u64, how: Preallocation)
        -> LocalBoxFuture<'_, Result<(), IoError>>;
    /// Cuts or extends the file to `size`.
    fn truncate(&self, size: u64) -> LocalBoxFuture<'_, Result<(), IoError>>;
}

/// A filesystem.
pub trait Disk {
    /// Opens `path` read+write, creating it empty if missing.
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, Result<Rc<dyn DiskFile>, IoError>>;
    /// Removes a file (open handles keep working until dropped).
    fn remove(&self, path: &Path) -> Result<(), IoError>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> Result<(), IoError>;
    /// Names of the entries of a directory (empty if it does not exist).
    fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError>;
    /// Removes a directory and everything under it (no error if missing).
    fn remove_dir_all(&self, path: &Path) -> Result<(), IoError>;
    /// Space on the filesystem holding `path`.
    fn space(&self, path: &Path) -> Result<DiskSpace, IoError>;
    /// Last modification time of a file, ms since the epoch.
    fn modified_ms(&self, path: &Path) -> Result<i64, IoError>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool;
}

/// `dir/name` for a 20-digit zero-padded number.
pub fn numbered_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}"))
}
