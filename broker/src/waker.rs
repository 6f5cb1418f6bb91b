//! Keepalive ticks from a small helper executor to every shard.
//!
//! Why it exists: glommio 0.9.0 can park an executor that still has runnable tasks. When the
//! preempt timer has fired before a task queue ran, `run_task_queues` reports that nothing ran
//! and the executor sleeps in `io_uring_enter` with no timeout until some I/O completes (fixed in
//! the glommio/glommio fork, PR #53; not in any published release). A timer of the shard's own
//! cannot bound that sleep, because the task that would re-arm it is one of the tasks that never
//! runs: the engine's crash harness parked for minutes that way with a 2 ms timer task alive.
//! A busy shard is woken by its next socket or disk completion; an idle one (held pulls waiting
//! for their timeout, an ASYNC_FLUSH flusher waiting for its interval) could sleep until a
//! client happens to write.
//!
//! A shared channel's eventfd is armed by the receiving reactor itself, so a message sent from
//! another executor wakes the shard in most cases. Not in all: when the receiving task is itself
//! among the runnable tasks that never ran, nothing waits on the channel (seen once in the
//! engine's SIGKILL test; `engine::keepalive`). The real fix is glommio's (the fork's PR #53). The waker executor sends each shard one tick every
//! [`WAKE_INTERVAL`]; each shard's control receiver waits on its ticks (and drains the
//! cross-shard control inbox at each one). Control plane only: the channel
//! holds at most one tick and a full channel drops the new one.

use std::sync::Arc;
use std::time::Duration;

use glommio::channels::shared_channel::{self, SharedReceiver};
use glommio::{LocalExecutorBuilder, Placement};

use crate::runtime::ShutdownFlag;

/// How often every shard is woken at the latest, whatever glommio's parking decided.
pub const WAKE_INTERVAL: Duration = Duration::from_millis(10);
/// Registered I/O memory of the waker executor (glommio's minimum; it does no I/O).
pub const WAKER_IO_MEMORY_BYTES: usize = 512 << 10;

/// Start the waker executor on its own thread and return one tick receiver per shard (hand
/// receiver `i` to shard `i`, whose control receiver waits on it: `shard::control::run_receiver`). The waker stops once `flag` is
/// triggered; the receivers then see their channel close.
pub fn start(
    shard_count: usize,
    flag: Arc<ShutdownFlag>,
) -> std::io::Result<Vec<SharedReceiver<()>>> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| shared_channel::new_bounded::<()>(1))
        .unzip();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("waker")
        .io_memory(WAKER_IO_MEMORY_BYTES)
        .spawn(move || async move {
            let mut connected = Vec::with_capacity(senders.len());
            for s in senders {
                connected.push(s.connect().await);
            }
            while !flag.is_triggered() {
                for s in &connected {
                    // Full: the shard has not drained the last tick yet, so it is awake.
                    let _ = s.try_send(());
                }
                glommio::timer::sleep(WAKE_INTERVAL).await;
            }
        })
        .map_err(|e| std::io::Error::other(format!("waker executor: {e}")))?;
    // Detached: the thread ends by itself after shutdown (or with the process).
    drop(handle);
    Ok(receivers)
}
