//! A bounded mailbox that wakes a glommio executor from any thread: the only way messages
//! reach a shard from outside it (other shards' control messages, the supervisor's "stop").
//!
//! Why it exists: a shard must never poll for messages on a timer (an idle broker would burn
//! CPU, and a tick only makes a lost wake-up rarer). A mailbox is a bounded
//! `std::sync::mpsc::sync_channel` plus a doorbell: a Unix socket pair whose reading end the
//! receiving shard's reactor watches like any other socket. A sender pushes the message, then
//! writes one byte to the doorbell; the reactor's completion for that byte wakes the receiving
//! task. Senders may be plain threads (the supervisor, the signal thread) or other executors.
//!
//! Invariants:
//! - every message is pushed before its byte is written, and the receiver reads bytes before it
//!   drains the queue, so no message waits for a second ring;
//! - the queue holds at most the capacity given to [`mailbox`]; a full one refuses the message
//!   (`TrySendError::Full`) and never blocks the sender;
//! - a doorbell write that finds the socket buffer full is dropped: unread bytes are already
//!   waiting, so the receiver is awake or about to be.
//!
//! Owned by: the receiving end lives on one shard (after [`MailboxReceiver::bind`]); senders
//! are `Send + Clone` and live anywhere.

use std::io::{ErrorKind, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use futures::io::AsyncReadExt;

/// Bytes read from the doorbell per wake-up (each byte is one ring; any number coalesce).
const DOORBELL_READ_BYTES: usize = 64;

/// Why a mailbox could not be made.
#[derive(thiserror::Error, Debug)]
#[error("cannot create a mailbox doorbell (socketpair)")]
pub struct MailboxError(#[source] pub std::io::Error);

/// A bounded mailbox of `capacity` messages: the sending half (clone it freely) and the
/// receiving half (bind it inside the executor that reads it).
pub fn mailbox<T>(capacity: usize) -> Result<(MailboxSender<T>, MailboxReceiver<T>), MailboxError> {
    let (ring, bell) = UnixStream::pair().map_err(MailboxError)?;
    ring.set_nonblocking(true).map_err(MailboxError)?;
    let (queue_tx, queue_rx) = mpsc::sync_channel(capacity);
    Ok((
        MailboxSender {
            queue: queue_tx,
            ring: Arc::new(ring),
        },
        MailboxReceiver {
            queue: queue_rx,
            bell,
        },
    ))
}

/// The sending half: push a message and ring the receiver's doorbell.
pub struct MailboxSender<T> {
    queue: SyncSender<T>,
    ring: Arc<UnixStream>,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            ring: self.ring.clone(),
        }
    }
}

impl<T> MailboxSender<T> {
    /// Queue `msg` and wake the receiver. Never blocks: a full mailbox gives the message back
    /// (`Full`), a dropped receiver too (`Disconnected`).
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.queue.try_send(msg)?;
        self.ring();
        Ok(())
    }

    fn ring(&self) {
        match (&*self.ring).write(&[1]) {
            Ok(_) => {}
            // Full: unread rings are waiting, the receiver will drain the queue.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // The receiver is gone; the queue already told or will tell the sender.
            Err(e) => log::debug!("mailbox doorbell not rung: {e}"),
        }
    }
}

/// The receiving half before it is bound to an executor (it is `Send`).
pub struct MailboxReceiver<T> {
    queue: Receiver<T>,
    bell: UnixStream,
}

impl<T> MailboxReceiver<T> {
    /// Attach the doorbell to the current executor's reactor. Call inside a glommio executor.
    pub fn bind(self) -> BoundMailbox<T> {
        BoundMailbox {
            queue: self.queue,
            bell: doorbell::into_glommio(self.bell),
            is_bell_open: true,
        }
    }
}

/// The receiving half, bound to one shard.
pub struct BoundMailbox<T> {
    queue: Receiver<T>,
    bell: glommio::net::UnixStream,
    is_bell_open: bool,
}

impl<T> BoundMailbox<T> {
    /// The next message; `None` once every sender is gone and the queue is empty. Sleeps on the
    /// doorbell (no timer) while the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let mut rings = [0u8; DOORBELL_READ_BYTES];
        loop {
            match self.queue.try_recv() {
                Ok(msg) => return Some(msg),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if !self.is_bell_open {
                // Every sender's doorbell is closed, yet the queue still has a sender: it
                // cannot be rung any more, so it can never deliver. Treat as closed.
                return None;
            }
            match self.bell.read(&mut rings).await {
                Ok(0) => self.is_bell_open = false,
                Ok(_) => {}
                Err(e) => {
                    log::warn!("mailbox doorbell read failed: {e}");
                    self.is_bell_open = false;
                }
            }
        }
    }
}

/// The one `unsafe` block here: handing the doorbell socket to glommio.
#[allow(unsafe_code)]
mod doorbell {
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    pub(super) fn into_glommio(bell: UnixStream) -> glommio::net::UnixStream {
        let fd = bell.into_raw_fd();
        // SAFETY: `fd` is a connected Unix stream socket that we own (`into_raw_fd` gave up
        // ownership); glommio takes it over and closes it when the stream drops.
        unsafe { glommio::net::UnixStream::from_raw_fd(fd) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A plain thread wakes a parked executor through the doorbell, message after message
    /// (the executor sleeps between them: no timer would wake it).
    #[test]
    fn a_thread_wakes_an_idle_executor_for_every_message() {
        let (tx, rx) = mailbox::<u32>(4).expect("mailbox");
        let (seen_tx, seen_rx) = mpsc::channel();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut rx = rx.bind();
                while let Some(v) = rx.recv().await {
                    let _ = seen_tx.send(v);
                }
            })
            .expect("executor");
        for i in 0..10u32 {
            std::thread::sleep(Duration::from_millis(5));
            tx.try_send(i).expect("room in the mailbox");
            let seen = seen_rx.recv_timeout(Duration::from_secs(5));
            assert_eq!(seen, Ok(i), "message {i} did not wake the executor");
        }
        drop(tx);
        ex.join().expect("join");
    }

    #[test]
    fn a_full_mailbox_refuses_without_blocking() {
        let (tx, _rx) = mailbox::<u32>(2).expect("mailbox");
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    }
}
