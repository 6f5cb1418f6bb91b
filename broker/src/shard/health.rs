//! Shard health: when a shard's executor last ran, and how often it stalled.
//!
//! Each shard runs a heartbeat task that stamps [`ShardHealth::beat`] every
//! [`HEARTBEAT_INTERVAL`], in a latency-sensitive task queue of its own (`runtime`), so that a
//! backlog of requests in the default queue (overload) is not taken for a stall. The heartbeat's timer is work the shard always has: if the stamp is
//! older than the interval plus [`STALL_THRESHOLD`], the executor has had a due task for longer
//! than the threshold without running it. That is a stall (a parked executor, a task that does
//! not yield, a blocking call), and the supervisor (`runtime::supervisor`, on the main thread)
//! counts it once per episode in `stalls_total`, shown as `petrel_shard_stalls_total{shard}`.
//!
//! Shared between the shard's thread (writes the stamp) and the supervisor and metrics readers,
//! so the two fields are atomics: control plane only, touched four times a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a shard stamps its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// A due heartbeat later than this is a stall.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(100);

/// `last_beat_ms` before the executor's first heartbeat: an executor that has not started yet
/// has not stalled (a shard that never starts fails the start-up deadline instead).
const NOT_STARTED: u64 = u64::MAX;

/// One shard's liveness record (see the module doc).
#[derive(Debug)]
pub struct ShardHealth {
    shard_id: u16,
    epoch: Instant,
    /// Milliseconds from `epoch` to the last heartbeat; [`NOT_STARTED`] before the first.
    last_beat_ms: AtomicU64,
    stalls_total: AtomicU64,
    /// The executor thread's kernel id (0 until its first heartbeat), so that a stall report
    /// can say what the thread is doing.
    thread_id: AtomicU64,
}

impl ShardHealth {
    /// A record whose heartbeats count from `epoch` (the supervisor's start).
    pub fn new(shard_id: u16, epoch: Instant) -> Self {
        Self {
            shard_id,
            epoch,
            last_beat_ms: AtomicU64::new(NOT_STARTED),
            stalls_total: AtomicU64::new(0),
            thread_id: AtomicU64::new(0),
        }
    }

    pub fn shard_id(&self) -> u16 {
        self.shard_id
    }

    /// The shard's executor is running now.
    pub fn beat(&self) {
        self.last_beat_ms
            .store(millis(self.epoch.elapsed()), Ordering::Relaxed);
    }

    /// How long the heartbeat has been due without running (zero when it is not late, or
    /// before the first heartbeat).
    pub fn overdue(&self) -> Duration {
        let last = self.last_beat_ms.load(Ordering::Relaxed);
        if last == NOT_STARTED {
            return Duration::ZERO;
        }
        let since = millis(self.epoch.elapsed()).saturating_sub(last);
        Duration::from_millis(since).saturating_sub(HEARTBEAT_INTERVAL)
    }

    /// What the executor thread is doing now (for a stall report).
    pub fn thread_state(&self) -> String {
        let tid = self.thread_id.load(Ordering::Relaxed);
        if tid == 0 {
            return "thread not started".into();
        }
        format!("thread {tid} {}", ThreadState::read(tid))
    }

    /// One more stall episode.
    pub fn count_stall(&self) {
        self.stalls_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Stall episodes since start.
    pub fn stalls_total(&self) -> u64 {
        self.stalls_total.load(Ordering::Relaxed)
    }
}

/// A thread of this process as `/proc/self/task/<tid>` shows it: its scheduler state (`R`
/// running, `S` sleeping, `D` in uninterruptible I/O), system call number and wait channel;
/// `?` where unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    pub state: char,
    pub syscall: String,
    pub wchan: String,
}

impl ThreadState {
    pub fn read(tid: u64) -> ThreadState {
        let task = format!("/proc/self/task/{tid}");
        let read = |f: &str| std::fs::read_to_string(format!("{task}/{f}")).unwrap_or_default();
        // The state follows the `(comm)` field, which may itself hold spaces or parentheses.
        let state = read("stat")
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .unwrap_or('?');
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "?".to_string()
            } else {
                s.to_string()
            }
        };
        let syscall = read("syscall");
        ThreadState {
            state,
            syscall: or_unknown(syscall.split_whitespace().next().unwrap_or("")),
            wchan: or_unknown(read("wchan").trim()),
        }
    }

    /// True while the thread sleeps in the kernel (`S` or `D`), as a parked executor does.
    pub fn is_asleep(&self) -> bool {
        matches!(self.state, 'S' | 'D')
    }
}

impl std::fmt::Display for ThreadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "state {}, syscall {}, wchan {}",
            self.state, self.syscall, self.wchan
        )
    }
}

/// The calling thread's kernel id (`/proc/thread-self` links to `<pid>/task/<tid>`); 0 if
/// unreadable.
pub fn current_thread_id() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<u64>().ok())
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Stamp `health` every [`HEARTBEAT_INTERVAL`] for as long as the current executor runs.
pub async fn run_heartbeat(health: std::sync::Arc<ShardHealth>) {
    health
        .thread_id
        .store(current_thread_id(), Ordering::Relaxed);
    loop {
        health.beat();
        glommio::timer::sleep(HEARTBEAT_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_overdue_only_after_its_interval() {
        let h = ShardHealth::new(0, Instant::now() - Duration::from_secs(2));
        assert_eq!(h.overdue(), Duration::ZERO, "not started yet");
        let old = ShardHealth::new(1, Instant::now() - Duration::from_secs(2));
        old.last_beat_ms.store(0, Ordering::Relaxed);
        assert!(old.overdue() >= Duration::from_millis(1_700));
        old.beat();
        assert_eq!(old.overdue(), Duration::ZERO);
        old.count_stall();
        assert_eq!(old.stalls_total(), 1);
    }
}
