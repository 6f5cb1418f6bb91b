//! What consumers received: one [`Received`] per delivery, collected in an [`Inbox`] (by the
//! [`Recorder`] listener), with bounded waits on its contents.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;

/// One received message, as the listener saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub body: String,
    pub tags: Option<String>,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub msg_id: String,
    pub reconsume_times: i32,
    /// Set by the client from the queue it pulled from (may be empty).
    pub broker_name: String,
}

impl Received {
    pub fn from_ext(m: &MessageExt) -> Received {
        Received {
            topic: m.topic().to_string(),
            body: m
                .body()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            tags: m.get_tags().map(|t| t.to_string()),
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
            msg_id: m.msg_id().to_string(),
            reconsume_times: m.reconsume_times(),
            broker_name: m.broker_name().to_string(),
        }
    }
}

/// Thread-safe list of everything a consumer received.
#[derive(Clone, Default)]
pub struct Inbox(pub Arc<Mutex<Vec<Received>>>);

impl Inbox {
    pub fn snapshot(&self) -> Vec<Received> {
        self.0.lock().expect("inbox").clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().expect("inbox").len()
    }
    pub fn bodies(&self) -> Vec<String> {
        self.snapshot().into_iter().map(|r| r.body).collect()
    }
    pub fn push(&self, r: Received) {
        self.0.lock().expect("inbox").push(r);
    }

    /// Waits until `pred(received)` holds, polling every 50 ms, at most `limit`.
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let snap = self.snapshot();
            if pred(&snap) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let mut bodies: Vec<&str> = snap.iter().map(|r| r.body.as_str()).collect();
                bodies.sort_unstable();
                bail!("timed out after {limit:?} waiting for {what}; received {} messages: {bodies:?}", snap.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A concurrently-consuming listener that records every message and acks it.
pub struct Recorder(pub Inbox);

impl MessageListenerConcurrently for Recorder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            self.0.push(Received::from_ext(m));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}
