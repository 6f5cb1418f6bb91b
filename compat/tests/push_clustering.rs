//! A push consumer in clustering mode: it gets the messages stored before it started
//! (CONSUME_FROM_FIRST_OFFSET) and, through long polling, those sent while it runs; each
//! exactly once, with body, tag and topic intact.
mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use common::*;

#[test]
fn push_consumer_clustering_receives_everything_once() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatPush");
    let group = unique("CompatPushGroup");
    let before = bodies("before", 0..16);
    let after = bodies("after", 0..16);
    let r = ClientEnv::new("push")?.run(Duration::from_secs(150), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatPushProducer").await?;
        send_sync_all(&p, &topic, "TagPush", &before).await?;

        let (mut consumer, inbox) =
            start_push_consumer(&rt, &ns, PushOpts::clustering(&group, &topic)).await?;
        let waited = inbox
            .wait_until(Duration::from_secs(60), "the messages sent before start", |got| {
                let c = body_counts(got);
                before.iter().all(|b| c.contains_key(b))
            })
            .await;
        if let Err(e) = waited {
            consumer.shutdown().await;
            p.shutdown().await;
            return Err(e);
        }

        // Now the consumer is polling (held pulls); new messages must arrive promptly.
        let t0 = Instant::now();
        let sent_after = send_sync_all(&p, &topic, "TagPush", &after).await;
        let waited = inbox
            .wait_until(Duration::from_secs(30), "the messages sent while consuming", |got| {
                let c = body_counts(got);
                after.iter().all(|b| c.contains_key(b))
            })
            .await;
        let latency = t0.elapsed();
        // A duplicate of anything sent so far would arrive before the sentinels sent after it.
        let sentinels = async {
            sent_after?;
            waited?;
            let s = send_sentinels(&mut p, &topic, "TagPush").await?;
            wait_for_sentinels(&inbox, &s, Duration::from_secs(30), "consumer").await?;
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        consumer.shutdown().await;
        p.shutdown().await;
        let sentinels = sentinels?;

        let mut all = before.clone();
        all.extend(after.iter().cloned());
        let got = without(inbox.snapshot(), &sentinels);
        assert_same_bodies(&got, &all, false)?;
        for r in &got {
            ensure!(r.topic == topic, "topic {} on {}", r.topic, r.body);
            ensure!(r.tags.as_deref() == Some("TagPush"), "tag {:?} on {}", r.tags, r.body);
            ensure!(r.reconsume_times == 0, "{} was redelivered ({} times)", r.body, r.reconsume_times);
        }
        // Long polling: far below the 15 s suspend timeout (and the client's pull interval).
        ensure!(
            latency < Duration::from_secs(10),
            "messages sent to a waiting consumer took {latency:?} to arrive (long polling not woken?)"
        );
        Ok(())
    });
    finish(&broker, r)
}
