//! The wait that closes the auto-create route race: a SEND that creates a topic is answered
//! only once every nameserver's route for the topic lists every shard.
//!
//! Why: a client fetches a new topic's route right after its first send. If some shard had not
//! re-registered yet, the client would see (and use) a subset of the shards until its next route
//! refresh, 30 s later; a consumer could miss the queue a message went to. The creating shard
//! broadcasts the topic, every shard re-registers at once (`shard::control`), and this module
//! polls each nameserver's route (backing off from [`ROUTE_POLL_FIRST`] to [`ROUTE_POLL_MAX`])
//! until it lists all shards, bounded by the caller's timeout (`syncFlushTimeout`).
//!
//! Owned by one shard. One route query at a time per shard (a one-permit semaphore); sends for
//! a topic whose wait is in progress wait too ([`RouteWait::is_pending`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures_lite::future;

use crate::namesrv::client::NamesrvClient;

/// First pause between two route queries.
pub const ROUTE_POLL_FIRST: Duration = Duration::from_millis(1);
/// Longest pause between two route queries.
pub const ROUTE_POLL_MAX: Duration = Duration::from_millis(50);
/// Topics whose route wait may be in progress at once on one shard; more answer SYSTEM_BUSY.
pub const ROUTE_WAITS_MAX: usize = 1024;

/// Route queries towards every nameserver, for one shard.
pub struct RouteWait {
    targets: Vec<String>,
    /// One client per target; `None` while a query has it (or after a cancelled one).
    clients: RefCell<Vec<Option<NamesrvClient>>>,
    gate: glommio::sync::Semaphore,
    /// Topics being waited for, with the number of waiting sends.
    pending: RefCell<HashMap<String, usize>>,
}

/// Why a route wait gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteWaitError {
    /// The route did not list every shard within the timeout.
    Timeout,
    /// Too many topics are being waited for.
    TooMany,
}

impl RouteWait {
    pub fn new(targets: Vec<String>) -> Self {
        Self {
            clients: RefCell::new(targets.iter().map(|_| None).collect()),
            targets,
            gate: glommio::sync::Semaphore::new(1),
            pending: RefCell::new(HashMap::new()),
        }
    }

    /// True while a send is waiting for `topic`'s route. Called on every send: with no wait
    /// in progress (the usual case) it does not hash the topic.
    pub fn is_pending(&self, topic: &str) -> bool {
        let pending = self.pending.borrow();
        !pending.is_empty() && pending.contains_key(topic)
    }

    /// Wait until every nameserver's route for `topic` lists all of `broker_names`.
    pub async fn wait(
        &self,
        topic: &str,
        broker_names: &[String],
        timeout: Duration,
    ) -> Result<(), RouteWaitError> {
        {
            let mut pending = self.pending.borrow_mut();
            if pending.len() >= ROUTE_WAITS_MAX && !pending.contains_key(topic) {
                return Err(RouteWaitError::TooMany);
            }
            *pending.entry(topic.to_owned()).or_insert(0) += 1;
        }
        let _done = PendingGuard { wait: self, topic };
        let poll = async {
            let mut pause = ROUTE_POLL_FIRST;
            while !self.is_routed_everywhere(topic, broker_names).await {
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(ROUTE_POLL_MAX);
            }
            Ok(())
        };
        future::or(poll, async {
            glommio::timer::sleep(timeout).await;
            Err(RouteWaitError::Timeout)
        })
        .await
    }

    async fn is_routed_everywhere(&self, topic: &str, broker_names: &[String]) -> bool {
        let Ok(_permit) = self.gate.acquire_permit(1).await else {
            return false;
        };
        for (i, addr) in self.targets.iter().enumerate() {
            let taken = self.clients.borrow_mut().get_mut(i).and_then(Option::take);
            let mut client = taken.unwrap_or_else(|| NamesrvClient::new(addr.clone()));
            let listed = client.route_broker_names(topic).await;
            if let Some(slot) = self.clients.borrow_mut().get_mut(i) {
                *slot = Some(client);
            }
            match listed {
                Ok(names) if broker_names.iter().all(|b| names.contains(b)) => {}
                Ok(_) => return false,
                Err(e) => {
                    log::debug!("route of {topic} from nameserver {addr}: {e}");
                    return false;
                }
            }
        }
        true
    }
}

/// Takes one waiting send off `pending` however the wait ends (including cancellation).
struct PendingGuard<'a> {
    wait: &'a RouteWait,
    topic: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.wait.pending.borrow_mut();
        if let Some(n) = pending.get_mut(self.topic) {
            *n -= 1;
            if *n == 0 {
                pending.remove(self.topic);
            }
        }
    }
}
