//! Shared setup for engine integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use engine::{PutMessage, QueueId, StoreConfig};

/// A temp dir on the real filesystem (O_DIRECT does not work on tmpfs).
pub fn tempdir() -> tempfile::TempDir {
    let base = std::env::var("PETREL_TEST_DIRECT_IO_DIR").unwrap_or_else(|_| "/var/tmp".into());
    std::fs::create_dir_all(&base).expect("create test base dir");
    tempfile::Builder::new()
        .prefix("petrel-engine-")
        .tempdir_in(base)
        .expect("tempdir")
}

/// A small store config for tests.
pub fn config(root: PathBuf) -> StoreConfig {
    StoreConfig {
        root_dir: root,
        segment_size_bytes: 1 << 20,
        body_size_max: 64 << 10,
        append_buffer_bytes_max: 4 << 20,
        tail_cache_bytes_max: 1 << 20,
        // The shared development disk may be fuller than the defaults allow; these tests are
        // about durability, not retention (store_faults.rs covers that on the simulated disk).
        disk_clean_ratio: 1.0,
        disk_max_used_ratio: 1.0,
        ..Default::default()
    }
}

/// A message to topic/queue with body and properties.
pub fn msg<'a>(topic: &'a str, queue: u32, body: &'a [u8], props: &'a str) -> PutMessage<'a> {
    PutMessage {
        topic,
        queue_id: QueueId(queue),
        flag: 0,
        body,
        properties: props,
        sys_flag: 0,
        born_timestamp_ms: 1,
        born_host: SocketAddr::from(([127, 0, 0, 1], 40000)),
        store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// Wakes this executor from another thread every 2 ms while the returned guard is `true`.
///
/// glommio 0.9.0 can park an executor with runnable tasks: when the preempt timer has fired
/// before a task queue ran, `run_task_queues` reports "nothing ran" and the executor sleeps in
/// `io_uring_enter` with no timeout (fixed upstream in the glommio/glommio fork, PR #53). A timer
/// of our own does not help, because the task that would re-arm it is one of the runnable tasks
/// that never runs (measured here: a crash-harness run parked for minutes with a 2 ms timer task
/// alive and 0 CPU ticks). A shared channel's eventfd is re-armed by the reactor itself, so a
/// message from a second executor always wakes this one. Tests with no real I/O wait (the
/// simulated disk) would otherwise hang.
pub fn keep_executor_awake() -> std::rc::Rc<std::cell::Cell<bool>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let alive = std::rc::Rc::new(std::cell::Cell::new(true));
    let (tx, rx) = glommio::channels::shared_channel::new_bounded::<()>(4);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let ticker_stop = stop.clone();
    let ticker = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("keepalive")
        .io_memory(1 << 20)
        .spawn(move || async move {
            let tx = tx.connect().await;
            while !ticker_stop.load(Ordering::Relaxed) {
                let _ = tx.try_send(());
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
        .expect("spawn keepalive executor");
    drop(ticker); // detached: it ends once `stop` is set
    let a = alive.clone();
    glommio::spawn_local(async move {
        let rx = rx.connect().await;
        while a.get() {
            if rx.recv().await.is_none() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    })
    .detach();
    alive
}

/// Runs `f` in a fresh glommio executor on its own thread.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(4 << 20)
        .preempt_timer(std::time::Duration::from_millis(1))
        .spin_before_park(std::time::Duration::from_micros(20))
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}
