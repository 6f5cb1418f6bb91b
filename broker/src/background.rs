//! A shard-local background task that can be started once, woken, and awaited at shutdown:
//! the shape shared by the delayed-delivery task (`schedule`) and the transaction check-back
//! task (`transaction`). Owned by one shard; never crosses cores.

use std::cell::RefCell;
use std::future::Future;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

/// Start once, wake any number of times (wake-ups coalesce: the channel holds one), then
/// `join` at shutdown.
pub struct WakeableTask {
    /// Capacity 1: a wake-up while one is pending is dropped (one is enough).
    wake_tx: LocalSender<()>,
    wake_rx: RefCell<Option<LocalReceiver<()>>>,
    task: RefCell<Option<glommio::Task<()>>>,
}

impl WakeableTask {
    /// A task not started yet.
    pub fn new() -> Self {
        let (wake_tx, wake_rx) = local_channel::new_bounded(1);
        WakeableTask {
            wake_tx,
            wake_rx: RefCell::new(Some(wake_rx)),
            task: RefCell::new(None),
        }
    }

    /// Spawns `body(wake_rx)` on the current executor (once; later calls do nothing).
    pub fn start<F, Fut>(&self, body: F)
    where
        F: FnOnce(LocalReceiver<()>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let Some(wake_rx) = self.wake_rx.borrow_mut().take() else {
            return;
        };
        let task = glommio::spawn_local(body(wake_rx));
        *self.task.borrow_mut() = Some(task);
    }

    /// Wakes the task now.
    pub fn wake(&self) {
        // Full means a wake-up is already pending; closed means the task is gone.
        let _ = self.wake_tx.try_send(());
    }

    /// Wakes the task and waits for it to finish (it must stop by itself once its shard is
    /// stopping).
    pub async fn join(&self) {
        self.wake();
        let task = self.task.borrow_mut().take();
        if let Some(task) = task {
            task.await;
        }
    }
}

impl Default for WakeableTask {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies a background task re-appended to the store and must see durable before it records
/// its progress (delay offsets, transaction scan offsets): the end of the last copy and its
/// ticket.
#[derive(Default)]
pub struct PendingCopies {
    /// End (commitlog offset) of the last copy written.
    pub end: Option<engine::CommitLogOffset>,
    /// The ticket of that copy.
    pub ticket: Option<engine::DurabilityTicket>,
}

/// What [`PendingCopies::settle`] found.
pub enum Settled {
    /// Every copy is durable (or there were none): progress may be written.
    Durable,
    /// Not durable yet and no ticket to wait on: try again later.
    NotYet,
    /// The flush covering the copies failed.
    Failed(engine::FlushError),
}

impl PendingCopies {
    /// Waits, if needed, until the copies are durable; clears them once they are.
    pub async fn settle(&mut self, store: &engine::Store) -> Settled {
        if let Some(end) = self.end {
            if store.durable_commit_log_offset() < end {
                let Some(ticket) = self.ticket.take() else {
                    return Settled::NotYet;
                };
                if let Err(e) = ticket.await {
                    return Settled::Failed(e);
                }
            }
        }
        self.end = None;
        self.ticket = None;
        Settled::Durable
    }
}
