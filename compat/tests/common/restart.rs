//! Sends across a broker restart: the client reconnects by itself, so a send is retried
//! (bounded) until the broker answers SEND_OK.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};

use super::message;

/// Sends each body (tag `tag`), retrying each for up to 30 s while the client reconnects;
/// only SEND_OK counts. Returns (body, brokerName, queueId, queueOffset) per body.
pub async fn send_retrying(
    p: &DefaultMQProducer,
    topic: &str,
    tag: &str,
    bodies: &[String],
) -> Result<Vec<(String, String, i32, u64)>> {
    let mut out = Vec::new();
    for b in bodies {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match p.send_with_timeout(message(topic, tag, b), 3_000).await {
                Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                    let mq = r
                        .message_queue
                        .clone()
                        .ok_or_else(|| anyhow!("no queue in result"))?;
                    out.push((
                        b.clone(),
                        mq.broker_name().to_string(),
                        mq.queue_id(),
                        r.queue_offset,
                    ));
                    break;
                }
                other => {
                    if tokio::time::Instant::now() >= deadline {
                        bail!(
                            "send of {b} never succeeded after the restart; last outcome {other:?}"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
    Ok(out)
}
