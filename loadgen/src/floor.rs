//! The physical floors a broker's figures are compared with, measured in the same run:
//! - disk: one 4 KiB O_DIRECT `pwrite` + `fdatasync` rewriting one page in place of a file
//!   that was fully written and synced beforehand, on the filesystem of a given directory:
//!   the pattern of Petrel's flusher, which rewrites its partial tail page in place (so the
//!   least a SYNC_FLUSH broker with pre-written segments pays per flush);
//! - loopback: a 64-byte TCP ping-pong between two std threads (TCP_NODELAY), the least any
//!   request/response over loopback can take.
//!
//! The suite measures them in windows between its runs ([`FloorResult::merged`] joins two
//! windows), so the floors' own drift shows and each run is compared with its neighbours.
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
    /// Size of the pre-written file (its first page is rewritten).
    pub file_size_bytes: u64,
    pub loopback_samples: usize,
}

impl FloorConfig {
    pub fn new(dir: &Path) -> FloorConfig {
        FloorConfig {
            dir: dir.to_path_buf(),
            disk_samples: 2000,
            file_size_bytes: 1 << 20,
            loopback_samples: 20_000,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FloorResult {
    pub dir: String,
    /// 4 KiB O_DIRECT write + fdatasync rewriting one page in place of a pre-written file;
    /// None if it could not run.
    pub disk: Option<LatencySummary>,
    pub disk_error: Option<String>,
    /// 64 B loopback TCP round trip, std threads.
    pub loopback: LatencySummary,
    #[serde(skip)]
    disk_recorder: Option<LatencyRecorder>,
    #[serde(skip)]
    loopback_recorder: Option<LatencyRecorder>,
}

impl FloorResult {
    /// Both windows' samples together (for the run between them); `self` alone if either
    /// lacks its samples (a deserialized result).
    pub fn merged(&self, other: &FloorResult) -> FloorResult {
        let mut out = self.clone();
        if let (Some(a), Some(b)) = (&self.disk_recorder, &other.disk_recorder) {
            let mut m = a.clone();
            m.merge(b);
            out.disk = Some(m.summary());
            out.disk_recorder = Some(m);
        }
        if let (Some(a), Some(b)) = (&self.loopback_recorder, &other.loopback_recorder) {
            let mut m = a.clone();
            m.merge(b);
            out.loopback = m.summary();
            out.loopback_recorder = Some(m);
        }
        out
    }
}

/// A result with only a loopback floor made of `samples_us` (for tests of the windows).
#[cfg(test)]
pub(crate) fn loopback_only(samples_us: &[u64]) -> FloorResult {
    let mut r = LatencyRecorder::new(Duration::from_millis(10));
    for &us in samples_us {
        r.record(Duration::from_micros(us));
    }
    FloorResult {
        dir: String::new(),
        disk: None,
        disk_error: None,
        loopback: r.summary(),
        disk_recorder: None,
        loopback_recorder: Some(r),
    }
}

/// Runs both floors.
pub fn run(cfg: &FloorConfig) -> Result<FloorResult> {
    let (disk_recorder, disk_error) =
        match disk_floor_recorder(&cfg.dir, cfg.disk_samples, cfg.file_size_bytes) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
    let loopback = loopback_recorder(cfg.loopback_samples)?;
    Ok(FloorResult {
        dir: cfg.dir.display().to_string(),
        disk: disk_recorder.as_ref().map(LatencyRecorder::summary),
        disk_error,
        loopback: loopback.summary(),
        disk_recorder,
        loopback_recorder: Some(loopback),
    })
}

/// A `len`-byte 4 KiB-aligned window into `storage`.
fn aligned(storage: &mut Vec<u8>, len: usize) -> &mut [u8] {
    storage.clear();
    storage.resize(len + PAGE_BYTES, 0);
    let off = storage.as_ptr().align_offset(PAGE_BYTES);
    &mut storage[off..off + len]
}

/// 4 KiB O_DIRECT write + fdatasync latency, one page rewritten in place of a pre-written
/// file under `dir`.
pub fn disk_floor(dir: &Path, samples: usize, file_size_bytes: u64) -> Result<LatencySummary> {
    disk_floor_recorder(dir, samples, file_size_bytes).map(|r| r.summary())
}

fn disk_floor_recorder(
    dir: &Path,
    samples: usize,
    file_size_bytes: u64,
) -> Result<LatencyRecorder> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("loadgen-floor-{}.tmp", std::process::id()));
    let result = disk_floor_at(&path, samples, file_size_bytes);
    let _ = std::fs::remove_file(&path);
    result
}

fn disk_floor_at(path: &Path, samples: usize, file_size_bytes: u64) -> Result<LatencyRecorder> {
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
    let page = aligned(&mut storage, PAGE_BYTES);
    let mut rec = LatencyRecorder::new(Duration::from_millis(10));
    for i in 0..samples as u64 {
        page.fill((i % 251) as u8);
        let pos = 0;
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
    Ok(rec)
}

/// 64-byte ping-pong round trips over loopback between two std threads.
pub fn loopback_floor(samples: usize) -> Result<LatencySummary> {
    loopback_recorder(samples).map(|r| r.summary())
}

fn loopback_recorder(samples: usize) -> Result<LatencyRecorder> {
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
    Ok(rec)
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
    fn merged_windows_hold_both_windows_samples() {
        let a = loopback_only(&[100; 100]);
        let b = loopback_only(&[300; 300]);
        let m = a.merged(&b);
        assert_eq!(m.loopback.count, 400);
        assert!((m.loopback.p50_us - 300.0).abs() < 3.0);
        assert_eq!(a.loopback.count, 100, "the inputs are left alone");
    }

    #[test]
    fn aligned_window_is_page_aligned() {
        let mut v = Vec::new();
        let w = aligned(&mut v, PAGE_BYTES);
        assert_eq!(w.len(), PAGE_BYTES);
        assert_eq!(w.as_ptr() as usize % PAGE_BYTES, 0);
    }
}
