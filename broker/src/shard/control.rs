//! Cross-shard control: topic changes broadcast to the other shards, and "register now"
//! requests to this shard's nameserver-registration task. Control plane only: never a message
//! body. Every queue is bounded.
//!
//! Wiring (done by `runtime`): each shard owns a [`ControlHandle`] (in its `ShardContext`) and
//! the receiving ends in [`ControlEndpoints`]. `broadcast` puts the message in a local bounded
//! outbox; a forwarder task sends it to every other shard's bounded inbox (waiting while an
//! inbox is full, so nothing is dropped while the outbox has room); a receiver task drains the
//! shard's inbox at every keepalive tick from `crate::waker` (every 10 ms) and calls
//! `shard.apply_control(msg)`.
//!
//! The inboxes are `std::sync::mpsc::sync_channel`s polled on those ticks, not glommio's
//! `channel_mesh`: in glommio 0.9.0 the mesh's `join` sometimes never returns on one executor
//! (seen here about once in ten starts with 2 shards) and its builder clones an `Rc` from
//! several threads. Control messages are rare, so a 10 ms poll costs nothing that matters,
//! and the ticks are needed anyway (see `crate::waker`).

use std::rc::Rc;

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedReceiver;

use crate::topic::TopicConfig;

/// Messages between shards (they must be `Send`: they cross threads).
#[derive(Clone, Debug)]
pub enum ControlMessage {
    /// A topic was created or changed on the sending shard.
    TopicUpserted(TopicConfig),
    /// A topic was deleted on the sending shard.
    TopicDeleted(String),
}

/// Messages waiting in a shard's outbox before the forwarder sends them.
pub const CONTROL_OUTBOX_MAX: usize = 4096;
/// Capacity of each shard's inbox.
pub const CONTROL_INBOX_MAX: usize = 1024;
/// How often a shard looks at its inbox (and a forwarder retries a full inbox).
pub const CONTROL_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// One bounded inbox per shard: the senders (clone one per other shard) and the receivers.
pub fn inboxes(
    shard_count: usize,
) -> (
    Vec<SyncSender<ControlMessage>>,
    Vec<Receiver<ControlMessage>>,
) {
    (0..shard_count)
        .map(|_| mpsc::sync_channel(CONTROL_INBOX_MAX))
        .unzip()
}

/// A shard's door to the control plane. Cheap to clone; lives on one shard only.
#[derive(Clone)]
pub struct ControlHandle {
    inner: Rc<Inner>,
}

struct Inner {
    shard_id: u16,
    shard_count: u16,
    outbox: LocalSender<ControlMessage>,
    register_now: LocalSender<()>,
}

/// The receiving ends of one shard's local queues (consumed by the runtime's tasks).
pub struct ControlEndpoints {
    /// Broadcasts waiting for the forwarder.
    pub outbox: LocalReceiver<ControlMessage>,
    /// "Register now" signals (capacity 1: requests coalesce).
    pub register_now: LocalReceiver<()>,
}

impl ControlHandle {
    /// A handle and its endpoints for shard `shard_id` of `shard_count`.
    pub fn new(shard_id: u16, shard_count: u16) -> (ControlHandle, ControlEndpoints) {
        let (outbox_tx, outbox_rx) = local_channel::new_bounded(CONTROL_OUTBOX_MAX);
        let (reg_tx, reg_rx) = local_channel::new_bounded(1);
        let handle = ControlHandle {
            inner: Rc::new(Inner {
                shard_id,
                shard_count,
                outbox: outbox_tx,
                register_now: reg_tx,
            }),
        };
        (
            handle,
            ControlEndpoints {
                outbox: outbox_rx,
                register_now: reg_rx,
            },
        )
    }

    pub fn shard_id(&self) -> u16 {
        self.inner.shard_id
    }

    pub fn shard_count(&self) -> u16 {
        self.inner.shard_count
    }

    /// Send `msg` to every OTHER shard. Non-blocking; if the outbox is full (4096 pending
    /// messages) the message is dropped with an error log.
    pub fn broadcast(&self, msg: ControlMessage) {
        if self.inner.shard_count <= 1 {
            return;
        }
        if let Err(e) = self.inner.outbox.try_send(msg) {
            log::error!(
                "shard {}: control outbox full, dropped a control message: {e}",
                self.inner.shard_id
            );
        }
    }

    /// Ask this shard's registration task to send REGISTER_BROKER now (coalesced).
    pub fn request_register(&self) {
        // Full means a registration is already pending: nothing to add.
        let _ = self.inner.register_now.try_send(());
    }
}

/// Forward the outbox to every other shard's inbox until the outbox closes.
pub async fn run_forwarder(
    outbox: LocalReceiver<ControlMessage>,
    peers: Vec<(u16, SyncSender<ControlMessage>)>,
) {
    while let Some(msg) = outbox.recv().await {
        for (peer, inbox) in &peers {
            let mut pending = msg.clone();
            loop {
                match inbox.try_send(pending) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        pending = back;
                        glommio::timer::sleep(CONTROL_POLL_INTERVAL).await;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        log::debug!("control message to shard {peer} not delivered: it stopped");
                        break;
                    }
                }
            }
        }
    }
}

/// Drain this shard's inbox at every keepalive tick (`crate::waker`, every 10 ms), handing
/// messages to `apply`, until every sender is gone or `is_stopped()` says so. Once the ticks
/// stop (the waker ends at shutdown) it polls every [`CONTROL_POLL_INTERVAL`] instead. Draining
/// on the ticks keeps the shard at one periodic wake-up source instead of two.
pub async fn run_receiver<F, S>(
    inbox: Receiver<ControlMessage>,
    ticks: ConnectedReceiver<()>,
    apply: F,
    is_stopped: S,
) where
    F: Fn(ControlMessage),
    S: Fn() -> bool,
{
    let mut is_ticking = true;
    loop {
        loop {
            match inbox.try_recv() {
                Ok(msg) => apply(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if is_stopped() {
            return;
        }
        if is_ticking {
            is_ticking = ticks.recv().await.is_some();
        } else {
            glommio::timer::sleep(CONTROL_POLL_INTERVAL).await;
        }
    }
}
