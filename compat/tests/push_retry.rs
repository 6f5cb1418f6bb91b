//! Consumer retry: a listener that answers RECONSUME_LATER the first time makes the client
//! send the message back (CONSUMER_SEND_MSG_BACK, 36); the broker redelivers it through the
//! group's %RETRY% topic after the retry delay, with reconsumeTimes 1 and the original
//! topic, tag and body.
mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::*;
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;

/// Fails each message once, then accepts it.
struct FailOnce {
    inbox: Inbox,
    failed: Mutex<HashSet<String>>,
}

impl MessageListenerConcurrently for FailOnce {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut status = ConsumeConcurrentlyStatus::ConsumeSuccess;
        for m in msgs {
            let r = Received::from_ext(m);
            if self.failed.lock().expect("failed").insert(r.body.clone()) {
                status = ConsumeConcurrentlyStatus::ReconsumeLater;
            }
            self.inbox.push(r);
        }
        Ok(status)
    }
}

#[test]
fn reconsume_later_redelivers_through_the_retry_topic() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatRetry");
    let group = unique("CompatRetryGroup");
    let sent = bodies("retry", 0..4);
    let r = ClientEnv::new("retry")?.run(Duration::from_secs(240), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatRetryProducer").await?;
        send_sync_all(&p, &topic, "TagRetry", &sent).await?;

        let inbox = Inbox::default();
        let mut c = DefaultMQPushConsumer::builder(rt.clone())
            .client_config(ClientConfig::new())
            .name_server_addr(ns.clone())
            .consumer_group(group.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        c.subscribe(topic.as_str(), "*").await.map_err(|e| anyhow!("subscribe: {e}"))?;
        c.register_message_listener_concurrently(FailOnce {
            inbox: inbox.clone(),
            failed: Mutex::default(),
        });
        c.start().await.map_err(|e| anyhow!("consumer start: {e}"))?;
        // First delivery at once; the redelivery after the first retry delay (level 3: 10 s),
        // once the client knows the %RETRY% route: the broker creates it on the consumer's
        // first heartbeat, and the client only re-reads routes every 30 s and rebalances
        // every 20 s, so allow 10 + 30 + 20 s and some.
        let waited = inbox
            .wait_until(Duration::from_secs(100), "each message twice (delivery + retry)", |got| {
                let n = body_counts(got);
                sent.iter().all(|b| n.get(b).copied().unwrap_or(0) >= 2)
            })
            .await;
        // A third delivery of anything would come, from the topic's queues or through the
        // retry topic, before the sentinels sent after it: they too fail once, so wait for
        // both of their deliveries (the second one through the retry topic, 10 s later).
        let sentinels = async {
            waited?;
            let s = send_sentinels(&mut p, &topic, "TagRetry").await?;
            inbox
                .wait_until(Duration::from_secs(90), "each sentinel twice (delivery + retry)", |got| {
                    let n = body_counts(got);
                    s.iter().all(|b| n.get(b).copied().unwrap_or(0) >= 2)
                })
                .await?;
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        c.shutdown().await;
        p.shutdown().await;
        let sentinels = sentinels?;

        let got = inbox.snapshot();
        for s in &sentinels {
            let n = got.iter().filter(|r| &r.body == s).count();
            ensure!(n == 2, "sentinel {s} delivered {n} times");
        }
        for b in &sent {
            let deliveries: Vec<&Received> = got.iter().filter(|r| &r.body == b).collect();
            ensure!(deliveries.len() == 2, "{b} delivered {} times: {deliveries:#?}", deliveries.len());
            let (first, second) = (deliveries[0], deliveries[1]);
            ensure!(first.reconsume_times == 0, "{b}: first delivery has reconsumeTimes {}", first.reconsume_times);
            ensure!(second.reconsume_times == 1, "{b}: redelivery has reconsumeTimes {}", second.reconsume_times);
            ensure!(
                second.topic == topic && second.tags.as_deref() == Some("TagRetry"),
                "{b}: redelivered as topic {} tag {:?} (the client restores the topic from RETRY_TOPIC)",
                second.topic,
                second.tags
            );
        }
        Ok(())
    });
    finish(&broker, r)
}
