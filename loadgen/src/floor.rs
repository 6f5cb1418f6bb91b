//! The physical floors a broker's figures are compared with, measured in the same run:
//! - disk: one 4 KiB O_DIRECT `pwrite` + `fdatasync` into a file that was fully written and
//!   synced beforehand (what a SYNC_FLUSH broker with preallocated, pre-written segments
//!   pays per flush at best), on the filesystem of a given directory;
//! - loopback: a 64-byte TCP ping-pong between two std threads (TCP_NODELAY), the least any
//!   request/response over loopback can take.
//!
//! O_DIRECT needs a 4 KiB-aligned buffer; it is carved out of a larger `Vec` with
//! `align_offset`, so no `unsafe` is needed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::stats::{LatencyRecorder, LatencySummary};

const PAGE_BYTES: usize = 4096;
const PING_BYTES: usize = 64;
/// Pre-write in chunks of this size.
const PREWRITE_CHUNK_BYTES: usize = 1 << 20;
/// Round trips done before recording starts.
const LOOPBACK_WARMUP_COUNT: usize = 500;

#[derive(Clone, Debug)]
pub struct FloorConfig {
    /// The directory whose filesystem is measured (the broker's store dir).
    pub dir: PathBuf,
    pub disk_samples: usize,
    /// Size of the pre-written file the 4 KiB writes cycle through.
    pub file_size_bytes: u64,
    pub loopback_samples: usize,
}

impl FloorConfig {
    pub fn new(dir: &Path) -> FloorConfig {
        FloorConfig {
            dir: dir.to_path_buf(),
            disk_samples: 2000,
            file_size_bytes: 64 << 20,
            loopback_samples: 20_000,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FloorResult {
    pub dir: String,
    /// 4 KiB O_DIRECT write + fdatasync, pre-written file; None if it could not run.
    pub disk: Option<LatencySummary>,
    pub disk_error: Option<String>,
    /// 64 B loopback TCP round trip, std threads.
    pub loopback: LatencySummary,
}

/// Runs both floors.
pub fn run(cfg: &FloorConfig) -> Result<FloorResult> {
    let (disk, disk_error) = match disk_floor(&cfg.dir, cfg.disk_samples, cfg.file_size_bytes) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let loopback = loopback_floor(cfg.loopback_samples)?;
    Ok(FloorResult {
        dir: cfg.dir.display().to_string(),
        disk,
        disk_error,
        loopback,
    })
}

/// A `len`-byte 4 KiB-aligned window into `storage`.
fn aligned(storage: &mut Vec<u8>, len: usize) -> &mut [u8] {
    storage.clear();
    storage.resize(len + PAGE_BYTES, 0);
    let off = storage.as_ptr().align_offset(PAGE_BYTES);
    &mut storage[off..off + len]
}

/// 4 KiB O_DIRECT write + fdatasync latency into a pre-written file under `dir`.
pub fn disk_floor(dir: &Path, samples: usize, file_size_bytes: u64) -> Result<LatencySummary> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("loadgen-floor-{}.tmp", std::process::id()));
    let result = disk_floor_at(&path, samples, file_size_bytes);
    let _ = std::fs::remove_file(&path);
    result
}

fn disk_floor_at(path: &Path, samples: usize, file_size_bytes: u64) -> Result<LatencySummary> {
    let file_size = file_size_bytes.max(PREWRITE_CHUNK_BYTES as u64) / PREWRITE_CHUNK_BYTES as u64
        * PREWRITE_CHUNK_BYTES as u64;
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("open {} with O_DIRECT", path.display()))?;
    let mut storage = Vec::new();
    {
        let chunk = aligned(&mut storage, PREWRITE_CHUNK_BYTES);
        let mut pos = 0u64;
        while pos < file_size {
            file.write_all_at(chunk, pos)
                .with_context(|| format!("pre-write {} at {pos}", path.display()))?;
            pos += PREWRITE_CHUNK_BYTES as u64;
        }
    }
    file.sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    let pages = file_size / PAGE_BYTES as u64;
    let page = aligned(&mut storage, PAGE_BYTES);
    let mut rec = LatencyRecorder::new(Duration::from_millis(10));
    for i in 0..samples as u64 {
        page.fill((i % 251) as u8);
        let pos = (i % pages) * PAGE_BYTES as u64;
        let t0 = Instant::now();
        let n = file
            .write_at(page, pos)
            .with_context(|| format!("write 4 KiB at {pos} in {}", path.display()))?;
        if n != PAGE_BYTES {
            bail!("short O_DIRECT write: {n} bytes");
        }
        file.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
        rec.record(t0.elapsed());
    }
    Ok(rec.summary())
}

/// 64-byte ping-pong round trips over loopback between two std threads.
pub fn loopback_floor(samples: usize) -> Result<LatencySummary> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind loopback listener")?;
    let addr = listener.local_addr().context("listener address")?;
    let total = samples + LOOPBACK_WARMUP_COUNT;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; PING_BYTES];
        for _ in 0..total {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut client = TcpStream::connect(addr).context("connect loopback")?;
    client.set_nodelay(true).context("set TCP_NODELAY")?;
    let mut rec = LatencyRecorder::new(Duration::from_millis(10));
    let mut buf = [7u8; PING_BYTES];
    for i in 0..total {
        let t0 = Instant::now();
        client.write_all(&buf).context("ping")?;
        client.read_exact(&mut buf).context("pong")?;
        if i >= LOOPBACK_WARMUP_COUNT {
            rec.record(t0.elapsed());
        }
    }
    server
        .join()
        .map_err(|_| anyhow::anyhow!("loopback server panicked"))?
        .context("loopback server")?;
    Ok(rec.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_floor_measures_every_sample() {
        let s = loopback_floor(200).expect("loopback");
        assert_eq!(s.count, 200);
        assert!(s.p50_us > 0.0);
    }

    #[test]
    fn aligned_window_is_page_aligned() {
        let mut v = Vec::new();
        let w = aligned(&mut v, PAGE_BYTES);
        assert_eq!(w.len(), PAGE_BYTES);
        assert_eq!(w.as_ptr() as usize % PAGE_BYTES, 0);
    }
}
