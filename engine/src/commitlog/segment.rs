//! One commitlog segment: a preallocated, zero-filled file named by its 20-digit base offset.
//! Records never span two segments; the end of a segment holds the 8-byte blank
//! `[remaining i32][0xCBD43194]` (REMOTING.md §5.2).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::disk::{numbered_path, open_durable, Disk, DiskFile, Preallocation};
use crate::error::IoError;

/// An open segment file. Shared (`Rc`) by the log and any reader in progress, so deleting the
/// segment never breaks a read already under way (the open handle keeps the inode).
pub(crate) struct Segment {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Rc<dyn DiskFile>,
}

/// Parses a segment file name (20 decimal digits).
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// Opens an existing segment.
pub(crate) async fn open(disk: &dyn Disk, dir: &Path, base: u64) -> Result<Segment, IoError> {
    let path = numbered_path(dir, base);
    let file = disk.open(&path).await?;
    Ok(Segment { base, path, file })
}

/// Creates (or recreates) a segment: its directory entry made durable, preallocated and
/// zero-filled, then synced. ENOSPC up front when the filesystem's available space is short
/// of the whole segment; on any later failure the file is removed again.
pub(crate) async fn create(
    disk: &dyn Disk,
    dir: &Path,
    base: u64,
    size: u64,
) -> Result<Segment, IoError> {
    let path = numbered_path(dir, base);
    // A filesystem without room for the whole segment is ENOSPC before anything is allocated:
    // fallocate would take what is left before failing, and for that moment the disk reads as
    // full, which a retention pass would answer by deleting the oldest segments.
    if let (false, Ok(space)) = (disk.exists(&path), disk.space(dir)) {
        if space.available_bytes.min(space.free_bytes) < size {
            let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(IoError::new("fallocate", &path, 0, e));
        }
    }
    let file = open_durable(disk, &path).await?;
    let prepared = match file.preallocate(size, Preallocation::ZeroFill).await {
        Ok(()) => file.sync().await,
        Err(e) => Err(e),
    };
    if let Err(e) = prepared {
        // Nothing was written to it: remove it, so that blocks allocated before the failure
        // (ENOSPC part way) are given back. A crash before this leaves a short last segment,
        // which recovery removes.
        drop(file);
        if let Err(r) = disk.remove(&path) {
            log::warn!("removing unprepared segment: {r}");
        }
        return Err(e);
    }
    Ok(Segment { base, path, file })
}

/// Whether `e` says the filesystem is out of space (ENOSPC).
pub(crate) fn is_no_space(e: &IoError) -> bool {
    e.source.raw_os_error() == Some(libc::ENOSPC)
        || e.source.kind() == std::io::ErrorKind::StorageFull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digits() {
        assert_eq!(
            numbered_path(Path::new("d"), 1 << 30),
            Path::new("d/00000000001073741824")
        );
        assert_eq!(parse_name("00000000001073741824"), Some(1 << 30));
        assert_eq!(parse_name("0000000000107374182"), None);
        assert_eq!(parse_name("0000000000107374182x"), None);
    }
}
