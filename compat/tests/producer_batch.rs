//! Batch send (SEND_BATCH_MESSAGE, 320): one request carries several messages for one queue;
//! the broker stores them at consecutive queue offsets, and a consumer reads each one back
//! with its own body and tag, in order.
mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::*;
use rocketmq_client_rust::SendStatus;

#[test]
fn producer_batch_send_stores_each_message() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatBatch");
    let r = ClientEnv::new("batch")?.run(Duration::from_secs(120), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatBatchProducer").await?;
        let mut all = Vec::new();
        let mut results = Vec::new();
        for round in 0..3 {
            let batch = bodies(&format!("batch{round}"), 0..10);
            let msgs: Vec<_> = batch
                .iter()
                .map(|b| message(&topic, "TagBatch", b))
                .collect();
            let r = p
                .send_batch(msgs)
                .await
                .map_err(|e| anyhow!("send_batch round {round}: {e}"))?;
            ensure!(
                r.send_status == SendStatus::SendOk,
                "batch {round}: status {:?}",
                r.send_status
            );
            let mq = r
                .message_queue
                .clone()
                .ok_or_else(|| anyhow!("batch result without queue"))?;
            let ids = r.msg_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
            ensure!(
                ids.split(',').filter(|s| !s.is_empty()).count() == batch.len(),
                "batch {round}: msgId should list {} unique ids, got {ids:?}",
                batch.len()
            );
            results.push((
                batch.clone(),
                mq.broker_name().to_string(),
                mq.queue_id(),
                r.queue_offset,
            ));
            all.extend(batch);
        }
        let sentinels = send_sentinels(&mut p, &topic, "TagBatch").await;
        p.shutdown().await;
        let sentinels = sentinels?;

        let got = read_back(&rt, &ns, &topic, "*", &all, &sentinels, Duration::from_secs(60)).await?;
        assert_same_bodies(&got, &all, false)?;
        for (batch, broker_name, queue, first_offset) in &results {
            for (i, b) in batch.iter().enumerate() {
                let r = got
                    .iter()
                    .find(|r| &r.body == b)
                    .ok_or_else(|| anyhow!("{b} missing"))?;
                ensure!(
                    r.tags.as_deref() == Some("TagBatch"),
                    "{b}: tag {:?}",
                    r.tags
                );
                // A redelivery (reconsume_times > 0, the client sent it back) comes from %RETRY%.
                if r.reconsume_times == 0
                    && (r.queue_id != *queue || r.queue_offset != (*first_offset + i as u64) as i64)
                {
                    let detail: Vec<String> = got
                        .iter()
                        .filter(|x| batch.contains(&x.body))
                        .map(|x| {
                            format!(
                                "{} {}/{}@{} msgId {} reconsumed {}",
                                x.body,
                                x.broker_name,
                                x.queue_id,
                                x.queue_offset,
                                x.msg_id,
                                x.reconsume_times
                            )
                        })
                        .collect();
                    anyhow::bail!(
                        "{b}: consumed at {}/{} offset {}, expected {broker_name}/{queue} offset {}; \
                         this batch as consumed: {detail:#?}",
                        r.broker_name,
                        r.queue_id,
                        r.queue_offset,
                        first_offset + i as u64
                    );
                }
            }
        }
        Ok(())
    });
    finish(&broker, r)
}
