//! `Disk`: the only door to files. The engine never touches `std::fs` or glommio files
//! directly, so tests swap in `SimDisk` (lost, torn and failing writes) and production uses
//! `GlommioDisk` (O_DIRECT DmaFile).
//!
//! Contract for every implementation:
//! - `write_at` positions are 4 KiB aligned; the data is padded with zeros to a 4 KiB multiple.
//! - A write is durable only after `sync` on the same file returns Ok.
//! - A new directory entry (a file made by `open`, a directory made by `create_dir_all`) is
//!   durable only after `sync_dir` on its parent directory returns Ok: until then a power loss
//!   may drop the entry and, with it, everything written to the file, synced or not. The engine
//!   calls `sync_dir` after creating every file and directory (`open_durable`,
//!   `create_dir_all_durable`), and again for files and directories that already exist when it
//!   starts using them in a process (a killed process may have left them unsynced). The engine
//!   never renames files, so the trait has no rename.
//! - Removals are not relied on for durability: the engine removes only files it no longer
//!   needs. (`SimDisk` applies removals at once; a real disk may bring a removed file back
//!   after a power loss, which recovery treats like any other leftover file.)
//! - Size changes by `preallocate` and `truncate` count as durable with the file's data
//!   (fdatasync covers the size a later read needs).
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
    /// Makes the entries of directory `dir` durable (fsync of the directory): files and
    /// directories created in it so far survive a power loss once this returns Ok.
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> LocalBoxFuture<'a, Result<(), IoError>>;
}

/// The directory holding `path` (`.` for a bare relative name), or `None` for a root.
fn parent_dir(path: &Path) -> Option<&Path> {
    let parent = path.parent()?;
    Some(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    })
}

/// Creates `dir` and its missing parents, then makes durable the entry of every directory on
/// the way from `base` (exclusive) down to `dir`, and of every directory it created above
/// `base`, by syncing the directory that holds each. Entries under `base` are synced even when
/// they already existed: a process killed between creating one and syncing its parent leaves
/// it there, not durable.
pub async fn create_dir_all_durable(
    disk: &dyn Disk,
    dir: &Path,
    base: &Path,
) -> Result<(), IoError> {
    let mut to_sync: Vec<PathBuf> = Vec::new();
    for a in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        let is_under_base = a != base && a.starts_with(base);
        if !is_under_base && disk.exists(a) {
            break;
        }
        if let Some(parent) = parent_dir(a) {
            to_sync.push(parent.to_path_buf());
        }
    }
    disk.create_dir_all(dir)?;
    for parent in &to_sync {
        disk.sync_dir(parent).await?;
    }
    Ok(())
}

/// Opens `path`, creating it if missing, and makes its directory entry durable.
pub async fn open_durable(disk: &dyn Disk, path: &Path) -> Result<Rc<dyn DiskFile>, IoError> {
    let file = disk.open(path).await?;
    if let Some(parent) = parent_dir(path) {
        disk.sync_dir(parent).await?;
    }
    Ok(file)
}

/// `dir/name` for a 20-digit zero-padded number.
pub fn numbered_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}"))
}
