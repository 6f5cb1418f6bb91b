//! `GlommioDisk`: files opened with O_DIRECT through glommio's `DmaFile` (io_uring).
//! Writes are copied once into a DMA-aligned buffer, padded with zeros to 4 KiB.
//! Must be used from inside a glommio executor; `GlommioDisk::new` does the iopoll probe
//! (GLOMMIO.md pitfall 2) before any other file is opened on this thread.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::{Disk, DiskFile, DiskSpace, LocalBoxFuture, Preallocation};
use crate::config::PAGE_SIZE_BYTES;
use crate::error::IoError;

/// Largest single write when zero-filling (keeps DMA buffers modest).
const ZERO_FILL_CHUNK_BYTES: u64 = 4 << 20;

/// The production disk: glommio DmaFile (O_DIRECT).
#[derive(Debug, Default)]
pub struct GlommioDisk;

impl GlommioDisk {
    /// Prepares the current executor thread for DMA reads: opens a non-empty file in `dir`
    /// first, so glommio's iopoll probe sees a real read (GLOMMIO.md pitfall 2).
    pub async fn new(dir: &Path) -> Result<Self, IoError> {
        std::fs::create_dir_all(dir).map_err(|e| IoError::new("create_dir", dir, 0, e))?;
        let probe = dir.join(".iopoll-probe");
        std::fs::write(&probe, vec![0u8; PAGE_SIZE_BYTES as usize])
            .map_err(|e| IoError::new("write_probe", &probe, 0, e))?;
        let f = DmaFile::open(&probe)
            .await
            .map_err(|e| IoError::new("open_probe", &probe, 0, e.into()))?;
        let _ = f.read_at(0, 512).await;
        f.close()
            .await
            .map_err(|e| IoError::new("close_probe", &probe, 0, e.into()))?;
        Ok(Self)
    }
}

struct GlommioFile {
    file: DmaFile,
    path: PathBuf,
}

fn aligned_len(len: usize) -> usize {
    len.div_ceil(PAGE_SIZE_BYTES as usize) * PAGE_SIZE_BYTES as usize
}

impl GlommioFile {
    async fn write_padded(&self, pos: u64, data: &[u8]) -> Result<(), IoError> {
        debug_assert_eq!(pos % PAGE_SIZE_BYTES, 0);
        let len = aligned_len(data.len());
        if len == 0 {
            return Ok(());
        }
        let mut buf = self.file.alloc_dma_buffer(len);
        let bytes = buf.as_bytes_mut();
        let (head, tail) = bytes.split_at_mut(data.len());
        head.copy_from_slice(data);
        tail.fill(0);
        let n = self
            .file
            .write_at(buf, pos)
            .await
            .map_err(|e| IoError::new("write", &self.path, pos, e.into()))?;
        if n != len {
            let e = io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write {n} of {len}"),
            );
            return Err(IoError::new("write", &self.path, pos, e));
        }
        Ok(())
    }
}

impl DiskFile for GlommioFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at<'a>(&'a self, pos: u64, data: &'a [u8]) -> LocalBoxFuture<'a, Result<(), IoError>> {
        Box::pin(self.write_padded(pos, data))
    }

    fn read_at(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, Result<Vec<u8>, IoError>> {
        Box::pin(async move {
            let r = self
                .file
                .read_at(pos, len)
                .await
                .map_err(|e| IoError::new("read", &self.path, pos, e.into()))?;
            Ok(r.to_vec())
        })
    }

    fn sync(&self) -> LocalBoxFuture<'_, Result<(), IoError>> {
        Box::pin(async move {
            self.file
                .fdatasync()
                .await
                .map_err(|e| IoError::new("fdatasync", &self.path, 0, e.into()))
        })
    }

    fn size(&self) -> LocalBoxFuture<'_, Result<u64, IoError>> {
        Box::pin(async move {
            self.file
                .file_size()
                .await
                .map_err(|e| IoError::new("stat", &self.path, 0, e.into()))
        })
    }

    fn preallocate(
        &self,
        size: u64,
        how: Preallocation,
    ) -> LocalBoxFuture<'_, Result<(), IoError>> {
        Box::pin(async move {
            self.file
                .pre_allocate(size, false)
                .await
                .map_err(|e| IoError::new("fallocate", &self.path, 0, e.into()))?;
            if how == Preallocation::ZeroFill {
                let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES as usize];
                let mut pos = 0;
                while pos < size {
                    let n = (size - pos).min(ZERO_FILL_CHUNK_BYTES) as usize;
                    self.write_padded(pos, zeros.get(..n).unwrap_or_default())
                        .await?;
                    pos += n as u64;
                }
            }
            self.file
                .fdatasync()
                .await
                .map_err(|e| IoError::new("fdatasync", &self.path, 0, e.into()))
        })
    }

    fn truncate(&self, size: u64) -> LocalBoxFuture<'_, Result<(), IoError>> {
        Box::pin(async move {
            self.file
                .truncate(size)
                .await
                .map_err(|e| IoError::new("truncate", &self.path, size, e.into()))
        })
    }
}

impl Disk for GlommioDisk {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, Result<Rc<dyn DiskFile>, IoError>> {
        Box::pin(async move {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .dma_open(path)
                .await
                .map_err(|e| IoError::new("open", path, 0, e.into()))?;
            Ok(Rc::new(GlommioFile {
                file,
                path: path.to_path_buf(),
            }) as Rc<dyn DiskFile>)
        })
    }

    fn remove(&self, path: &Path) -> Result<(), IoError> {
        std::fs::remove_file(path).map_err(|e| IoError::new("remove", path, 0, e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<(), IoError> {
        std::fs::create_dir_all(path).map_err(|e| IoError::new("create_dir", path, 0, e))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IoError::new("read_dir", path, 0, e)),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| IoError::new("read_dir", path, 0, e))?;
            if let Some(n) = entry.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_dir_all(&self, path: &Path) -> Result<(), IoError> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(IoError::new("remove_dir", path, 0, e))
            }
            _ => Ok(()),
        }
    }

    fn space(&self, path: &Path) -> Result<DiskSpace, IoError> {
        let s = nix::sys::statvfs::statvfs(path)
            .map_err(|e| IoError::new("statvfs", path, 0, io::Error::from(e)))?;
        let frag = s.fragment_size() as u64;
        Ok(DiskSpace {
            total_bytes: s.blocks() as u64 * frag,
            free_bytes: s.blocks_free() as u64 * frag,
            available_bytes: s.blocks_available() as u64 * frag,
        })
    }

    fn modified_ms(&self, path: &Path) -> Result<i64, IoError> {
        let m = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| IoError::new("stat", path, 0, e))?;
        Ok(m.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> LocalBoxFuture<'a, Result<(), IoError>> {
        // A blocking fsync(2) of the directory, on purpose: it runs once per new file (a
        // segment, a consume-queue or index file, the checkpoint), so it is rare, and fsync
        // rather than the fdatasync that glommio's `Directory::sync` issues leaves no doubt
        // that the filesystem commits the new entries.
        Box::pin(async move {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| IoError::new("fsync_dir", dir, 0, e))
        })
    }
}
