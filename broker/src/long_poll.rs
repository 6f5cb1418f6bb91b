//! Held pulls (RocketMQ's long polling, REMOTING.md §7.1). A PULL that finds nothing new and
//! carries the SUSPEND flag waits here, keyed by (topic, queue_id), until an append to that
//! queue moves its max offset past the pull's offset, or until its suspend timeout. Then the
//! pull runs once more and answers whatever it finds.
//!
//! Owned by one shard. Bounded: at most `held_max` pulls wait at once; beyond that `hold`
//! refuses and the caller answers at once. Each waiter is a oneshot channel; the table never
//! holds a borrow across an await (the waiter awaits its own receiver, outside the table).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use futures::channel::oneshot;

/// Why a held pull stopped waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// An append moved the queue's max offset past the held offset.
    Appended,
    /// The suspend timeout passed.
    TimedOut,
    /// The shard is shutting down (every waiter is released).
    Released,
}

/// The table is full; answer the pull now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many held pulls ({held_max})")]
pub struct HoldTableFull {
    pub held_max: usize,
}

struct HeldPull {
    id: u64,
    offset: u64,
    wake: oneshot::Sender<()>,
}

/// One waiting pull's handle; `wait` consumes it.
pub struct Hold {
    id: u64,
    topic: String,
    queue_id: u32,
    woken: oneshot::Receiver<()>,
}

/// Held pulls of one shard.
pub struct LongPollTable {
    held: RefCell<HashMap<String, HashMap<u32, Vec<HeldPull>>>>,
    held_count: Cell<usize>,
    next_id: Cell<u64>,
    held_max: usize,
}

impl LongPollTable {
    pub fn new(held_max: usize) -> Self {
        LongPollTable {
            held: RefCell::new(HashMap::new()),
            held_count: Cell::new(0),
            next_id: Cell::new(1),
            held_max,
        }
    }

    /// Number of pulls waiting now.
    pub fn held_count(&self) -> usize {
        self.held_count.get()
    }

    /// Registers a pull waiting for an append to (topic, queue_id) beyond `offset`.
    pub fn hold(&self, topic: &str, queue_id: u32, offset: u64) -> Result<Hold, HoldTableFull> {
        if self.held_count.get() >= self.held_max {
            return Err(HoldTableFull {
                held_max: self.held_max,
            });
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (wake, woken) = oneshot::channel();
        {
            let mut held = self.held.borrow_mut();
            let queues = match held.get_mut(topic) {
                Some(q) => q,
                None => held.entry(topic.to_string()).or_default(),
            };
            queues
                .entry(queue_id)
                .or_default()
                .push(HeldPull { id, offset, wake });
        }
        self.held_count.set(self.held_count.get() + 1);
        Ok(Hold {
            id,
            topic: topic.to_string(),
            queue_id,
            woken,
        })
    }

    /// Waits until the hold is woken or `timeout` passes, then removes it from the table.
    pub async fn wait(&self, hold: Hold, timeout: Duration) -> Wake {
        let Hold {
            id,
            topic,
            queue_id,
            woken,
        } = hold;
        let woken = async move {
            match woken.await {
                Ok(()) => Wake::Appended,
                Err(oneshot::Canceled) => Wake::Released,
            }
        };
        let timed_out = async {
            glommio::timer::sleep(timeout).await;
            Wake::TimedOut
        };
        let wake = futures_lite::future::or(woken, timed_out).await;
        if wake == Wake::TimedOut {
            self.remove(&topic, queue_id, id);
        }
        wake
    }

    fn remove(&self, topic: &str, queue_id: u32, id: u64) {
        let removed = {
            let mut held = self.held.borrow_mut();
            let mut removed = false;
            let mut topic_empty = false;
            if let Some(queues) = held.get_mut(topic) {
                if let Some(waiters) = queues.get_mut(&queue_id) {
                    let before = waiters.len();
                    waiters.retain(|w| w.id != id);
                    removed = waiters.len() < before;
                    if waiters.is_empty() {
                        queues.remove(&queue_id);
                    }
                }
                topic_empty = queues.is_empty();
            }
            if topic_empty {
                held.remove(topic);
            }
            removed
        };
        if removed {
            self.held_count.set(self.held_count.get().saturating_sub(1));
        }
    }

    /// An append made (topic, queue_id)'s max offset `max_offset`: wake every pull held at an
    /// offset below it.
    pub fn notify_append(&self, topic: &str, queue_id: u32, max_offset: u64) {
        let woken: Vec<HeldPull> = {
            let mut held = self.held.borrow_mut();
            let Some(queues) = held.get_mut(topic) else {
                return;
            };
            let Some(waiters) = queues.get_mut(&queue_id) else {
                return;
            };
            let (ready, waiting): (Vec<HeldPull>, Vec<HeldPull>) = std::mem::take(waiters)
                .into_iter()
                .partition(|w| w.offset < max_offset);
            *waiters = waiting;
            if waiters.is_empty() {
                queues.remove(&queue_id);
                if queues.is_empty() {
                    held.remove(topic);
                }
            }
            ready
        };
        self.held_count
            .set(self.held_count.get().saturating_sub(woken.len()));
        for w in woken {
            // The waiter may have timed out at the same moment; then nobody listens.
            let _ = w.wake.send(());
        }
    }

    /// Releases every held pull (shutdown, topic deleted): each answers at once.
    pub fn release_all(&self) {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        self.held_count.set(0);
        drop(held);
    }

    /// Releases the pulls held on one topic.
    pub fn release_topic(&self, topic: &str) {
        let removed = self.held.borrow_mut().remove(topic);
        if let Some(queues) = removed {
            let count: usize = queues.values().map(Vec::len).sum();
            self.held_count
                .set(self.held_count.get().saturating_sub(count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<G, F>(make: G)
    where
        G: FnOnce() -> F + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(make)
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn append_past_the_held_offset_wakes_the_pull() {
        run(|| async {
            let table = std::rc::Rc::new(LongPollTable::new(4));
            let hold = table.hold("T", 1, 5).expect("room");
            assert_eq!(table.held_count(), 1);
            table.notify_append("T", 1, 5); // not past offset 5
            table.notify_append("T", 2, 9); // other queue
            assert_eq!(table.held_count(), 1);
            table.notify_append("T", 1, 6);
            assert_eq!(table.held_count(), 0);
            let wake = table.wait(hold, Duration::from_secs(5)).await;
            assert_eq!(wake, Wake::Appended);
        });
    }

    #[test]
    fn a_held_pull_times_out_and_leaves_the_table() {
        run(|| async {
            let table = LongPollTable::new(4);
            let hold = table.hold("T", 0, 0).expect("room");
            let wake = table.wait(hold, Duration::from_millis(20)).await;
            assert_eq!(wake, Wake::TimedOut);
            assert_eq!(table.held_count(), 0);
        });
    }

    #[test]
    fn the_table_is_bounded() {
        run(|| async {
            let table = LongPollTable::new(2);
            let _a = table.hold("T", 0, 0).expect("room");
            let _b = table.hold("T", 0, 0).expect("room");
            assert!(table.hold("T", 0, 0).is_err());
            table.release_all();
            assert_eq!(table.held_count(), 0);
            assert!(table.hold("T", 0, 0).is_ok());
        });
    }
}
