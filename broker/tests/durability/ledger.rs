//! What a test sent and what the broker promised: every body sent (unique, pseudo-random so a
//! torn sector cannot pass for it), the acknowledged ones with the queue and offset the broker
//! answered, and the refused ones. `verify` reads the topic back after a crash and checks
//! every acknowledged message is there with its body, every record read back is one that was
//! sent, and nothing refused was stored.

use std::collections::{BTreeMap, HashSet};

use broker::remoting::{RemotingCommand, ResponseCode};
use engine::disk::sim::SimRng;

use super::client::{ext_i64, send_request, show, Client};

/// A message the broker answered SEND_OK for, under SYNC_FLUSH (or one an ASYNC_FLUSH test saw
/// become durable): it must survive any crash.
struct Acked {
    queue_id: u32,
    queue_offset: u64,
    body: Vec<u8>,
}

/// One send about to be made.
pub struct Pending {
    pub queue_id: u32,
    pub body: Vec<u8>,
    pub request: RemotingCommand,
}

/// What came back from a verification.
#[derive(Debug)]
pub struct Verified {
    pub acknowledged: usize,
    /// Records recovered that were sent but never acknowledged as durable.
    pub unacknowledged_recovered: usize,
}

pub struct Ledger {
    pub topic: String,
    pub queues: u32,
    label: String,
    next: u64,
    sent: HashSet<Vec<u8>>,
    acked: Vec<Acked>,
    refused: Vec<Vec<u8>>,
}

impl Ledger {
    pub fn new(topic: &str, queues: u32, label: &str) -> Ledger {
        Ledger {
            topic: topic.to_string(),
            queues,
            label: label.to_string(),
            next: 0,
            sent: HashSet::new(),
            acked: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// The next message: queues round-robin, a unique body of 600..1800 bytes, and the WAIT
    /// property left out on even messages (the broker's default) and `WAIT=true` on odd ones
    /// (what RocketMQ producers send).
    pub fn next_send(&mut self) -> Pending {
        let n = self.next;
        self.next += 1;
        let wait = if n.is_multiple_of(2) {
            None
        } else {
            Some(true)
        };
        let queue_id = u32::try_from(n % u64::from(self.queues)).unwrap_or(0);
        let mut rng = SimRng::new(n.wrapping_mul(0x9E37_79B9) ^ 0x5EED);
        let len = 600 + rng.below(1200) as usize;
        let mut body = format!("{}-{n}-", self.label).into_bytes();
        while body.len() < len {
            body.push(b'a' + rng.below(26) as u8);
        }
        self.sent.insert(body.clone());
        let request = send_request(&self.topic, queue_id, &body, wait);
        Pending {
            queue_id,
            body,
            request,
        }
    }

    /// Records a SEND_OK (panics on any other code): the message must survive crashes.
    pub fn acknowledged(&mut self, p: &Pending, r: &RemotingCommand) {
        assert_eq!(
            r.code,
            ResponseCode::SUCCESS,
            "expected SEND_OK: {}",
            show(r)
        );
        let queue_id = u32::try_from(ext_i64(r, "queueId")).expect("queueId");
        assert_eq!(
            queue_id,
            p.queue_id,
            "answered for another queue: {}",
            show(r)
        );
        let queue_offset = u64::try_from(ext_i64(r, "queueOffset")).expect("queueOffset");
        self.acked.push(Acked {
            queue_id,
            queue_offset,
            body: p.body.clone(),
        });
    }

    /// Records a send the broker refused: it must never be stored.
    pub fn refused(&mut self, p: &Pending) {
        self.refused.push(p.body.clone());
    }

    /// Reads every queue of the topic back over `c` and checks the promises (see the module doc).
    pub async fn verify(&self, c: &mut Client, seed: u64) -> Verified {
        let mut queues: Vec<BTreeMap<u64, Vec<u8>>> = Vec::new();
        for q in 0..self.queues {
            queues.push(c.read_queue(&self.topic, q).await);
        }
        for (i, a) in self.acked.iter().enumerate() {
            let got = queues
                .get(a.queue_id as usize)
                .and_then(|q| q.get(&a.queue_offset));
            match got {
                Some(body) if *body == a.body => {}
                Some(body) => panic!(
                    "seed {seed}: acknowledged message #{i} at {}/{}:{} came back with another \
                     body ({} bytes, starts {:?})",
                    self.topic,
                    a.queue_id,
                    a.queue_offset,
                    body.len(),
                    String::from_utf8_lossy(&body[..body.len().min(24)])
                ),
                None => panic!(
                    "seed {seed}: acknowledged message #{i} at {}/{}:{} was lost in the crash \
                     ({} acknowledged, queue holds offsets {:?})",
                    self.topic,
                    a.queue_id,
                    a.queue_offset,
                    self.acked.len(),
                    queues
                        .get(a.queue_id as usize)
                        .map(|q| q.keys().copied().collect::<Vec<_>>())
                ),
            }
        }
        let acked_bodies: HashSet<&[u8]> = self.acked.iter().map(|a| a.body.as_slice()).collect();
        let refused: HashSet<&[u8]> = self.refused.iter().map(Vec::as_slice).collect();
        let mut recovered = 0;
        let mut unacknowledged_recovered = 0;
        for (q, records) in queues.iter().enumerate() {
            for (offset, body) in records {
                recovered += 1;
                assert!(
                    self.sent.contains(body),
                    "seed {seed}: {}/{q}:{offset} holds a body that was never sent",
                    self.topic
                );
                assert!(
                    !refused.contains(body.as_slice()),
                    "seed {seed}: {}/{q}:{offset} holds a message the broker refused",
                    self.topic
                );
                if !acked_bodies.contains(body.as_slice()) {
                    unacknowledged_recovered += 1;
                }
            }
        }
        let v = Verified {
            acknowledged: self.acked.len(),
            unacknowledged_recovered,
        };
        println!("verified after the crash: {recovered} records read back, {v:?}");
        v
    }
}
