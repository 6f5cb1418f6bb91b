//! glommio must keep running a runnable task: an executor may not park while one of its task
//! queues is active.
//!
//! **The bug (stock glommio 0.9.0).** Every pass of `LocalExecutor::run` first polls I/O, which
//! wakes the tasks whose timers expired and arms the 1 ms preempt timer, and then calls
//! `run_task_queues`. That function checked `need_preempt()` before it had run anything: if the
//! preempt timer's completion landed in between (the thread was descheduled for more than 1 ms
//! right there), it reported "nothing ran" although the woken tasks were runnable. `run` then
//! took the executor for idle and parked it in `io_uring_enter` with no timeout: only a pending
//! timer arms one, and a task that is already runnable has left the timer wheel. The executor
//! sleeps until some unrelated completion arrives, here never. Our vendored copy
//! (`vendor/glommio/PATCHES.md`) honours preemption only after a task has run.
//!
//! **The scenario.** On every CPU this process may use (`Cpus_allowed_list`), four executors
//! pinned with `Placement::Fixed(cpu)` and a 1 ms preempt timer, plus two threads that spin on
//! that CPU (spawned from the CPU's first executor thread, so they inherit its pinning): the
//! spinners make the kernel deschedule the executors for whole time slices, often in the
//! window. Each executor's task sleeps 1 µs in a loop (`glommio::timer::sleep`), so every pass
//! of the run loop wakes a task and opens the window, and bumps a progress counter per turn.
//! One task per executor: when it is runnable no other timer is pending, so a park is for ever.
//! (The earlier repro, one executor per CPU whose task sleeps 50 µs, parked in only 11 of 20
//! runs of 25 s, some after 15 s; 1 µs sleeps and four executors per CPU park within a second.)
//!
//! **The watchdog.** The test thread samples every counter for [`RUN_FOR`]. A counter that has
//! not moved for [`STALL_LIMIT`] while its executor thread sleeps (not runnable, per
//! `/proc/self/task/<tid>/stat`) means the executor parked with a runnable task: the test fails
//! and says so, with the stall, the counter, and the thread's state, syscall and wait channel
//! (stock 0.9.0: syscall 426, `io_uring_enter`, in `io_cqring_wait`). A thread that stays
//! runnable without progress (starved by the machine, not parked) fails only after
//! [`STARVED_LIMIT`]. A parked executor thread cannot be joined, so a failing test panics
//! without joining it (the test process exits). On success every thread the test started has
//! stopped: the spinners watch a stop flag, each task ends, each executor is joined.
//!
//! **Shown to fail on stock 0.9.0** (2 CPUs, `Cpus_allowed_list` 0-1, kernel 6.18). This file
//! was the `tests/executor_progress.rs` of a scratch crate depending only on crates.io
//! `glommio = "0.9.0"`, run with `cargo test --test executor_progress` (test profile) and with
//! `--release`, 30 times each: it failed 30 of 30 times in each, every time with the message
//! above, within 2.6 s of starting (the parked executor's last progress came 50-350 ms into
//! the run, then the 2 s stall limit). It also failed under `cargo nextest run` and, 5 of 5,
//! under `taskset -c 1`. The same crate with `[patch.crates-io] glommio = { path =
//! ".../vendor/glommio" }` passed 10 of 10 runs in the test profile and 5 of 5 with
//! `--release`, 10 s each. The window is now [`RUN_FOR`] = 5 s (every stock park came within
//! 350 ms), so the test loads the CPUs for half as long; nextest runs it alone among the
//! CPU-loading tests (`.config/nextest.toml`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::shard::health::{current_thread_id, ThreadState};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// How long the executors run under watch.
const RUN_FOR: Duration = Duration::from_secs(5);
/// No progress for this long, with the executor thread asleep: parked.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// No progress for this long, whatever the thread's state.
const STARVED_LIMIT: Duration = Duration::from_secs(10);
/// How long the executors get to finish once told to stop.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
const EXECUTORS_PER_CPU: usize = 4;
const SPINNERS_PER_CPU: usize = 2;
/// Production's preempt timer (`broker::runtime::PREEMPT_TIMER`).
const PREEMPT_TIMER: Duration = Duration::from_millis(1);
/// The task's sleep: each expiry wakes the task in a new pass of the run loop.
const TASK_SLEEP: Duration = Duration::from_micros(1);
/// glommio's minimum; the test does no I/O (keeps the locked memory small).
const IO_MEMORY: usize = 64 << 10;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One executor under watch.
struct Watched {
    cpu: usize,
    index: usize,
    /// Turns of the task's loop.
    progress: Arc<AtomicU64>,
    /// The executor thread's kernel thread id (0 until it has started).
    tid: Arc<AtomicU64>,
    /// Set by the executor's future as its last act.
    finished: Arc<AtomicBool>,
    handle: Option<ExecutorJoinHandle<()>>,
    /// The counter's last value and when it changed.
    last: (u64, Instant),
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`, e.g.
/// `0-3,8`).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status");
    let mut cpus = Vec::new();
    for range in list.trim().split(',').filter(|r| !r.is_empty()) {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first: usize = first.parse().expect("CPU number");
        let last: usize = last.parse().expect("CPU number");
        cpus.extend(first..=last);
    }
    assert!(!cpus.is_empty(), "no allowed CPU in {list:?}");
    cpus
}

/// Starts executor `index` on `cpu`; the first one on each CPU also starts that CPU's spinners.
fn start(cpu: usize, index: usize, stop: &Arc<AtomicBool>) -> Watched {
    let progress = Arc::new(AtomicU64::new(0));
    let tid = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (task_progress, task_tid, task_finished) =
        (progress.clone(), tid.clone(), finished.clone());
    let stop = stop.clone();
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("progress-{cpu}-{index}"))
        .preempt_timer(PREEMPT_TIMER)
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            task_tid.store(current_thread_id(), Ordering::SeqCst);
            // Spawned from this (pinned) thread, the spinners inherit its CPU affinity.
            let spinners: Vec<_> = (0..if index == 0 { SPINNERS_PER_CPU } else { 0 })
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                glommio::timer::sleep(TASK_SLEEP).await;
                task_progress.fetch_add(1, Ordering::Relaxed);
            }
            for spinner in spinners {
                spinner.join().expect("spinner thread");
            }
            task_finished.store(true, Ordering::SeqCst);
        })
        .unwrap_or_else(|e| panic!("cannot start an executor on CPU {cpu}: {e}"));
    Watched {
        cpu,
        index,
        progress,
        tid,
        finished,
        handle: Some(handle),
        last: (0, Instant::now()),
    }
}

/// Fails the test (without joining anything: a parked executor never returns) when an executor
/// has stopped making progress.
fn check(w: &mut Watched, now: Instant, stop: &AtomicBool, started: Instant) {
    let value = w.progress.load(Ordering::Relaxed);
    if value != w.last.0 {
        w.last = (value, now);
        return;
    }
    let stalled = now.duration_since(w.last.1);
    if stalled < STALL_LIMIT {
        return;
    }
    let tid = w.tid.load(Ordering::SeqCst);
    let thread = ThreadState::read(tid);
    let asleep = tid != 0 && thread.is_asleep();
    if !asleep && stalled < STARVED_LIMIT {
        return;
    }
    stop.store(true, Ordering::Relaxed);
    let what = if asleep {
        "the executor parked with a runnable task (its only task sleeps 1 µs per turn, so it is \
         always runnable or about to be; glommio's forward-progress patch is missing?)"
    } else {
        "the executor thread is not asleep but made no progress (starved by the machine?)"
    };
    panic!(
        "executor {} on CPU {}: its task made no progress for {stalled:.1?} (counter stuck at \
         {value}; last progress {:.1?} into the run): {what}; executor thread {tid}: {thread}",
        w.index,
        w.cpu,
        w.last.1.duration_since(started),
    );
}

#[test]
fn executor_keeps_running_a_runnable_task_under_preemption() {
    let stop = Arc::new(AtomicBool::new(false));
    let mut watched: Vec<Watched> = allowed_cpus()
        .into_iter()
        .flat_map(|cpu| (0..EXECUTORS_PER_CPU).map(move |index| (cpu, index)))
        .map(|(cpu, index)| start(cpu, index, &stop))
        .collect();

    let started = Instant::now();
    for w in &mut watched {
        w.last.1 = started;
    }
    while started.elapsed() < RUN_FOR {
        std::thread::sleep(SAMPLE_EVERY);
        let now = Instant::now();
        for w in &mut watched {
            check(w, now, &stop, started);
        }
    }

    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + STOP_DEADLINE;
    for w in &mut watched {
        while !w.finished.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                let tid = w.tid.load(Ordering::SeqCst);
                let thread = ThreadState::read(tid);
                panic!(
                    "executor {} on CPU {} did not finish within {STOP_DEADLINE:?} of being told \
                     to stop (counter {}): parked with a runnable task? thread {tid}: {thread}",
                    w.index,
                    w.cpu,
                    w.progress.load(Ordering::Relaxed),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Its future has returned, so `run` returns at once: joining cannot hang.
        if let Some(handle) = w.handle.take() {
            handle.join().expect("executor thread");
        }
        assert!(
            w.progress.load(Ordering::Relaxed) > 0,
            "executor {} on CPU {} never ran its task",
            w.index,
            w.cpu
        );
    }
}
