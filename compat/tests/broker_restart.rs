//! Broker restarts with the clients kept running:
//! 1. SIGKILL (a crash) after SYNC_FLUSH sends: every acknowledged message survives and is
//!    consumed; the producer reconnects by itself.
//! 2. SIGTERM (clean stop) after the group consumed and committed everything: the group's
//!    offsets survive, so a new consumer of the group gets only the messages sent afterwards.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use common::*;
use rocketmq_client_rust::{DefaultMQProducer, SendStatus};

/// Sends each body, retrying for up to 30 s while the client reconnects; only SEND_OK counts.
async fn send_retrying(
    p: &DefaultMQProducer,
    topic: &str,
    bodies: &[String],
) -> Result<Vec<(String, String, i32, u64)>> {
    let mut out = Vec::new();
    for b in bodies {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match p
                .send_with_timeout(message(topic, "TagRestart", b), 3_000)
                .await
            {
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

#[test]
fn acknowledged_messages_and_offsets_survive_broker_restarts() -> Result<()> {
    let mut broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let shard_addrs: Vec<String> = (0..SHARDS).map(|i| broker.shard_addr(i)).collect();
    let topic = unique("CompatRestart");
    let group = unique("CompatRestartGroup");
    let a = bodies("before-crash", 0..20);
    let b = bodies("after-crash", 0..10);
    let c = bodies("after-clean-restart", 0..6);
    let env = ClientEnv::new("restart")?;
    let broker_ref = &mut broker;
    let r = env.run(Duration::from_secs(300), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatRestartProducer").await?;
        let mut acked = send_sync_all(&p, &topic, "TagRestart", &a).await?;

        // 1. crash and restart; the clients stay up.
        broker_ref.kill_hard()?;
        broker_ref.restart()?;
        acked.extend(send_retrying(&p, &topic, &b).await?);
        let acked_bodies: Vec<String> = acked.iter().map(|(b, ..)| b.clone()).collect();

        let (mut c1, in1) =
            start_push_consumer(&rt, &ns, PushOpts::clustering(&group, &topic)).await?;
        let waited = in1
            .wait_until(
                Duration::from_secs(60),
                "every acknowledged message after the crash",
                |got| {
                    let cnt = body_counts(got);
                    acked_bodies.iter().all(|x| cnt.contains_key(x))
                },
            )
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        c1.shutdown().await; // persists the group's offsets (UPDATE_CONSUMER_OFFSET)
        waited?;
        assert_same_bodies(&in1.snapshot(), &acked_bodies, false)
            .map_err(|e| anyhow!("after the crash: {e}"))?;

        // The committed offsets must reach the broker: per queue, the next offset to consume.
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (_, bn, q, off) in &acked {
            let e = next.entry((bn.clone(), *q)).or_insert(0);
            *e = (*e).max(*off as i64 + 1);
        }
        let check_offsets = |what: &str| -> Result<Vec<String>> {
            let mut wrong = Vec::new();
            for ((bn, q), want) in &next {
                let shard = shard_of(bn).ok_or_else(|| anyhow!("unexpected broker name {bn}"))?;
                let have = committed_offset(&shard_addrs[usize::from(shard)], &group, &topic, *q)?;
                if have != Some(*want) {
                    wrong.push(format!("{what}: {bn}/{q} has {have:?}, want {want}"));
                }
            }
            Ok(wrong)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let wrong = check_offsets("before the clean restart")?;
            if wrong.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("consumer offsets never reached the broker: {wrong:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // 2. clean stop and restart: offsets persist.
        let status = broker_ref.stop_graceful(Duration::from_secs(20))?;
        if !status.contains("exit status: 0") {
            bail!("petrel did not exit cleanly on SIGTERM: {status}");
        }
        broker_ref.restart()?;
        let wrong = check_offsets("after the clean restart")?;
        if !wrong.is_empty() {
            bail!("consumer offsets lost across a clean restart: {wrong:?}");
        }

        let (mut c2, in2) =
            start_push_consumer(&rt, &ns, PushOpts::clustering(&group, &topic)).await?;
        let r = async {
            // Give the consumer time to be assigned its queues before sending.
            tokio::time::sleep(Duration::from_secs(2)).await;
            send_retrying(&p, &topic, &c).await?;
            in2.wait_until(
                Duration::from_secs(60),
                "messages sent after the clean restart",
                |got| {
                    let cnt = body_counts(got);
                    c.iter().all(|x| cnt.contains_key(x))
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_same_bodies(&in2.snapshot(), &c, false)
                .map_err(|e| anyhow!("the group must resume at its committed offsets: {e}"))
        }
        .await;
        c2.shutdown().await;
        p.shutdown().await;
        r
    });
    finish(&broker, r)
}
