//! `loadgen idle`: what an idle broker costs. Starts `petrel` (no client traffic), lets it
//! settle, then reads the CPU time of each of its threads from
//! `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on CPU) at the start and the end of the
//! window. The figure is the process's CPU time over the window as a share of one core, with
//! the per-thread breakdown, so a periodic wake-up anywhere in the process shows up by name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::petrel::{FlushDiskType, PetrelOptions, PetrelProcess};

/// What `loadgen idle` measured.
#[derive(Debug)]
pub struct IdleReport {
    pub window: Duration,
    /// CPU time of the whole process over the window.
    pub cpu: Duration,
    /// CPU time per thread name over the window.
    pub per_thread: BTreeMap<String, Duration>,
    /// The broker's own stall summary at stop.
    pub stop: String,
}

impl IdleReport {
    /// CPU time as a percentage of one core.
    pub fn percent_of_one_core(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }

    pub fn to_markdown(&self, command: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "- window: {:.1} s\n- CPU time: {:.1} ms = **{:.3}% of one core**\n- stop: {}\n\n\
             | thread | CPU ms | % of one core |\n|---|---:|---:|",
            self.window.as_secs_f64(),
            self.cpu.as_secs_f64() * 1e3,
            self.percent_of_one_core(),
            self.stop
        );
        for (name, t) in &self.per_thread {
            let _ = writeln!(
                out,
                "| {name} | {:.2} | {:.4} |",
                t.as_secs_f64() * 1e3,
                100.0 * t.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
            );
        }
        let _ = writeln!(out, "\nCommand: `{command}`");
        out
    }
}

/// Start petrel with `extra_args`, wait `settle`, measure over `window`, stop it.
pub fn measure(
    binary: &Path,
    store_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    settle: Duration,
    window: Duration,
) -> Result<IdleReport> {
    let opts = PetrelOptions {
        binary: binary.to_path_buf(),
        store_dir,
        flush: FlushDiskType::SyncFlush,
        extra_args,
        log_path,
    };
    let petrel = PetrelProcess::start(&opts)?;
    let pid = petrel.pid().context("petrel has no pid")?;
    std::thread::sleep(settle);
    let before = thread_cpu(pid)?;
    let started = Instant::now();
    std::thread::sleep(window);
    let after = thread_cpu(pid)?;
    let window = started.elapsed();
    let stop = petrel.stop()?;
    let mut per_thread: BTreeMap<String, Duration> = BTreeMap::new();
    let mut cpu = Duration::ZERO;
    for (tid, (name, end)) in &after {
        let start = before.get(tid).map_or(0, |(_, ns)| *ns);
        let used = Duration::from_nanos(end.saturating_sub(start));
        cpu += used;
        *per_thread.entry(name.clone()).or_default() += used;
    }
    Ok(IdleReport {
        window,
        cpu,
        per_thread,
        stop,
    })
}

/// Thread id → (name, nanoseconds on CPU so far) for every thread of `pid`.
fn thread_cpu(pid: u32) -> Result<BTreeMap<u32, (String, u64)>> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread may end between the listing and the reads: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        out.insert(tid, (name, ns));
    }
    Ok(out)
}
