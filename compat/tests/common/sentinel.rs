//! Absence shown with sentinels instead of sleeps.
//!
//! A consumer reads each queue in offset order, so once it has received a message sent to a
//! queue after everything under test, it has read that queue past everything sent before:
//! a duplicate, a message its filter should have dropped, or anything else unwanted that
//! the broker served from that queue would already be in its inbox. [`send_sentinels`] sends
//! one such message to every queue of a topic; [`read_back`] and [`wait_for_sentinels`] wait
//! (bounded) for them, and only then do the callers assert what must not have arrived.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Result};
use rocketmq_client_rust::{ClientRuntime, DefaultMQProducer, SendStatus};

use super::{body_counts, message, start_push_consumer, unique, Inbox, PushOpts, Received};
use super::{SEND_TIMEOUT_MS, SHARDS};

/// Prefix of every sentinel body.
pub const SENTINEL_PREFIX: &str = "sentinel-";

/// Sends one sentinel (tag `tag`) to every queue the nameserver lists for `topic`, with sync
/// sends that must be SEND_OK, and returns their bodies. Fails unless the route holds queues
/// on every shard, so no queue of the topic goes without its sentinel.
pub async fn send_sentinels(
    producer: &mut DefaultMQProducer,
    topic: &str,
    tag: &str,
) -> Result<Vec<String>> {
    let queues = producer
        .fetch_publish_message_queues(topic)
        .await
        .map_err(|e| anyhow!("publish queues of {topic}: {e}"))?;
    let mut per_broker: BTreeMap<String, usize> = BTreeMap::new();
    for mq in &queues {
        *per_broker.entry(mq.broker_name().to_string()).or_default() += 1;
    }
    ensure!(
        per_broker.len() == usize::from(SHARDS),
        "the route of {topic} has queues on {per_broker:?}, not on all {SHARDS} shards"
    );
    let round = unique("r");
    let mut out = Vec::with_capacity(queues.len());
    for mq in queues {
        let body = format!(
            "{SENTINEL_PREFIX}{round}-{}-{}",
            mq.broker_name(),
            mq.queue_id()
        );
        let r = producer
            .send_to_queue_with_timeout(message(topic, tag, &body), mq.clone(), SEND_TIMEOUT_MS)
            .await
            .map_err(|e| anyhow!("sentinel send to {mq:?} failed: {e}"))?
            .ok_or_else(|| anyhow!("sentinel send to {mq:?} returned no SendResult"))?;
        ensure!(
            r.send_status == SendStatus::SendOk,
            "sentinel send to {mq:?}: status {:?}",
            r.send_status
        );
        out.push(body);
    }
    Ok(out)
}

/// Waits (bounded) until `inbox` holds every sentinel, then checks each arrived exactly once.
pub async fn wait_for_sentinels(
    inbox: &Inbox,
    sentinels: &[String],
    limit: Duration,
    who: &str,
) -> Result<()> {
    inbox
        .wait_until(limit, &format!("{who}: the sentinels"), |got| {
            let c = body_counts(got);
            sentinels.iter().all(|s| c.contains_key(s))
        })
        .await?;
    let c = body_counts(&inbox.snapshot());
    let repeated: Vec<(&String, usize)> = sentinels
        .iter()
        .map(|s| (s, c.get(s).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    if !repeated.is_empty() {
        bail!("{who}: sentinels received more than once: {repeated:?}");
    }
    Ok(())
}

/// The messages of `got` that are not in `sentinels`.
pub fn without(got: Vec<Received>, sentinels: &[String]) -> Vec<Received> {
    got.into_iter()
        .filter(|r| !sentinels.contains(&r.body))
        .collect()
}

/// Reads a topic back with a fresh clustering push consumer (own group, from the first
/// offset) until every body in `expected` and every one of `sentinels` (sent after them, see
/// [`send_sentinels`]) has arrived, bounded by `limit`; shuts the consumer down and returns
/// everything received except `sentinels`. Anything the consumer should not have received
/// from before the sentinels is in the result.
pub async fn read_back(
    rt: &Arc<ClientRuntime>,
    namesrv: &str,
    topic: &str,
    expression: &str,
    expected: &[String],
    sentinels: &[String],
    limit: Duration,
) -> Result<Vec<Received>> {
    ensure!(!sentinels.is_empty(), "read_back needs sentinels");
    let group = unique("CompatReader");
    let opts = PushOpts {
        expression,
        ..PushOpts::clustering(&group, topic)
    };
    let (mut consumer, inbox) = start_push_consumer(rt, namesrv, opts).await?;
    let want: Vec<String> = expected.to_vec();
    let waited = async {
        inbox
            .wait_until(
                limit,
                &format!("{} messages on {topic}", want.len()),
                |got| {
                    let c = body_counts(got);
                    want.iter().all(|b| c.contains_key(b))
                },
            )
            .await?;
        wait_for_sentinels(&inbox, sentinels, limit, "reader").await
    }
    .await;
    consumer.shutdown().await;
    waited?;
    Ok(without(inbox.snapshot(), sentinels))
}

/// The (broker name, queue id) a sentinel body names (`sentinel-<round>-<broker>-<queue>`).
pub fn sentinel_queue(body: &str) -> Result<(String, i32)> {
    let rest = body
        .strip_prefix(SENTINEL_PREFIX)
        .ok_or_else(|| anyhow!("{body} is not a sentinel"))?;
    let (head, queue) = rest
        .rsplit_once('-')
        .ok_or_else(|| anyhow!("no queue in {body}"))?;
    let broker = head
        .rsplit_once('-')
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow!("no broker in {body}"))?;
    Ok((broker.to_string(), queue.parse()?))
}
