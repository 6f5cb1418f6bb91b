//! Cross-shard control: topic changes broadcast to the other shards, "register now" requests
//! to this shard's nameserver-registration task, and the supervisor's "stop". Control plane
//! only: never a message body. Every queue is bounded.
//!
//! Wiring (done by `runtime`): each shard owns a [`ControlHandle`] (in its `ShardContext`) and
//! the receiving ends in [`ControlEndpoints`]. `broadcast` puts the message in a local bounded
//! outbox; a forwarder task sends it to every other shard's [`Mailbox`] (waiting while a
//! mailbox is full, so nothing is dropped while the outbox has room); the receiver task sleeps
//! on the shard's own mailbox, which wakes it as soon as a message lands (`crate::mailbox`: a
//! real wake-up, no polling tick), and awaits `shard.apply_control(msg)` for each one, in order.

use std::rc::Rc;
use std::sync::mpsc::TrySendError;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::mailbox::{BoundMailbox, MailboxSender};
use crate::topic::TopicConfig;

/// Messages between shards (they must be `Send`: they cross threads).
#[derive(Clone, Debug)]
pub enum ControlMessage {
    /// A topic was created or changed on the sending shard.
    TopicUpserted(TopicConfig),
    /// A topic was deleted on the sending shard.
    TopicDeleted(String),
}

/// What reaches a shard's mailbox from outside it.
#[derive(Debug)]
pub enum ShardCommand {
    /// A control message from another shard.
    Control(ControlMessage),
    /// The supervisor asks the shard to stop (SIGTERM, or another shard failed).
    Stop,
}

/// A shard's mailbox, as its senders see it.
pub type Mailbox = MailboxSender<ShardCommand>;

/// Messages waiting in a shard's outbox before the forwarder sends them.
pub const CONTROL_OUTBOX_MAX: usize = 4096;
/// Capacity of each shard's mailbox.
pub const CONTROL_INBOX_MAX: usize = 1024;
/// How long a forwarder waits before it retries a full mailbox (rare: only under a burst).
pub const CONTROL_RETRY_INTERVAL: Duration = Duration::from_millis(10);

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

/// Forward the outbox to every other shard's mailbox until the outbox closes.
pub async fn run_forwarder(outbox: LocalReceiver<ControlMessage>, peers: Vec<(u16, Mailbox)>) {
    while let Some(msg) = outbox.recv().await {
        for (peer, mailbox) in &peers {
            let mut pending = ShardCommand::Control(msg.clone());
            loop {
                match mailbox.try_send(pending) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        pending = back;
                        glommio::timer::sleep(CONTROL_RETRY_INTERVAL).await;
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

/// Apply every control message that reaches this shard's mailbox, sleeping on the mailbox in
/// between, until [`ShardCommand::Stop`] arrives (then `stop()` is called) or every sender is
/// gone.
pub async fn run_receiver<F, Fut, S>(mut mailbox: BoundMailbox<ShardCommand>, apply: F, stop: S)
where
    F: Fn(ControlMessage) -> Fut,
    Fut: std::future::Future<Output = ()>,
    S: Fn(),
{
    while let Some(cmd) = mailbox.recv().await {
        match cmd {
            ShardCommand::Control(msg) => apply(msg).await,
            ShardCommand::Stop => {
                stop();
                return;
            }
        }
    }
}
