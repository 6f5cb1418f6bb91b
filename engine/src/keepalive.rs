//! A guard that keeps the current glommio executor from sleeping for ever.
//!
//! glommio 0.9.0 can park an executor that still has runnable tasks: when the preempt timer has
//! fired before a task queue ran, `run_task_queues` reports that nothing ran and the executor
//! sleeps in `io_uring_enter` with no timeout until some I/O completes (fixed in the
//! glommio/glommio fork, PR #53; not in a published release). A timer of our own cannot bound
//! that sleep, because the task that would re-arm it is one of the runnable tasks that never
//! runs (measured here: the crash harness parked for minutes with a 2 ms timer task alive and
//! 0 CPU ticks; the bench once stalled 200 s). A shared channel's eventfd is re-armed by the
//! reactor itself, so a message from a second executor wakes this one in most cases.
//!
//! Not a complete fix: the SIGKILL test once parked with the ticker still sending (the receiving
//! task itself was among the runnable tasks that never ran, so nothing was waiting on the
//! channel). The tests also use glommio's default 100 ms preempt timer, which makes the
//! triggering expiry rare. The real fix is glommio's (the fork's PR #53) or a patched copy.
//!
//! Used by executors that may have no I/O in flight: the engine's tests on the simulated disk
//! and the engine bench. The broker has its own multi-shard waker (`broker::waker`).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the current executor is woken at the latest while the guard is `true`.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(2);

/// Starts a tiny helper executor that wakes the current one every [`KEEPALIVE_INTERVAL`]
/// while the returned guard holds `true`; set it to `false` to stop (the helper ends at the
/// next tick). Must be called inside a glommio executor.
///
/// # Panics
/// If the helper executor cannot be created (no thread or no locked memory): a test or bench
/// set-up failure, never reached from the data path.
#[allow(clippy::expect_used)]
pub fn keep_executor_awake() -> Rc<Cell<bool>> {
    let alive = Rc::new(Cell::new(true));
    let (tx, rx) = glommio::channels::shared_channel::new_bounded::<()>(4);
    let stop = Arc::new(AtomicBool::new(false));
    let ticker_stop = stop.clone();
    let ticker = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("keepalive")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let tx = tx.connect().await;
            while !ticker_stop.load(Ordering::Relaxed) {
                let _ = tx.try_send(());
                glommio::timer::sleep(KEEPALIVE_INTERVAL).await;
            }
        })
        .expect("spawn keepalive executor");
    drop(ticker); // detached: it ends once `stop` is set
    let a = alive.clone();
    glommio::spawn_local(async move {
        // Stops the ticker however this task ends, including when its executor is dropped.
        let _stop_ticker = StopOnDrop(stop);
        let rx = rx.connect().await;
        while a.get() {
            if rx.recv().await.is_none() {
                break;
            }
        }
    })
    .detach();
    alive
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
