//! Shared setup for engine integration tests.
#![allow(dead_code)]

pub mod seeds;

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

/// Runs `f` in a fresh glommio executor on its own thread (the broker's 1 ms preempt timer, so
/// the tests exercise the executor settings production uses).
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
        .spawn(move || async move { f().await })
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// Like `run`, but a panic inside `f` comes back as its message.
pub fn run_catching<F, Fut, T>(f: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(4 << 20)
        .preempt_timer(std::time::Duration::from_millis(1))
        .spin_before_park(std::time::Duration::from_micros(20))
        .spawn(move || async move { f().await })
        .expect("spawn executor")
        .join()
        .map_err(|e| match e {
            glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(p)) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string()),
            other => format!("{other}"),
        })
}
