//! Cross-shard control: topic changes broadcast to the other shards, and "register now"
//! requests to this shard's nameserver-registration task. Control plane only: never a message
//! body. Every queue is bounded.
//!
//! Wiring (done by `runtime`): each shard owns a [`ControlHandle`] (in its `ShardContext`) and
//! the receiving ends in [`ControlEndpoints`]. `broadcast` puts the message in a local bounded
//! outbox; a forwarder task sends it to every other shard over the glommio channel mesh
//! (awaiting when a peer's channel is full, so nothing is dropped while the outbox has room);
//! one receiver task per peer calls `shard.apply_control(msg)`.

use std::rc::Rc;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

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
/// Capacity of each shard-to-shard mesh channel.
pub const CONTROL_MESH_CHANNEL_MAX: usize = 1024;

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

/// Forward the outbox to every other peer of the mesh until the outbox closes.
pub async fn run_forwarder(
    outbox: LocalReceiver<ControlMessage>,
    senders: Senders<ControlMessage>,
) {
    let me = senders.peer_id();
    while let Some(msg) = outbox.recv().await {
        for peer in 0..senders.nr_consumers() {
            if peer == me {
                continue;
            }
            if let Err(e) = senders.send_to(peer, msg.clone()).await {
                log::warn!("control message to shard {peer} not delivered: {e}");
            }
        }
    }
    senders.close();
}

/// Spawn one task per peer that hands received messages to `apply`.
pub fn spawn_receivers<F>(mut receivers: Receivers<ControlMessage>, apply: F)
where
    F: Fn(ControlMessage) + Clone + 'static,
{
    use futures_lite::StreamExt;
    for (_peer, mut stream) in receivers.streams() {
        let apply = apply.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = stream.next().await {
                apply(msg);
            }
        })
        .detach();
    }
}
