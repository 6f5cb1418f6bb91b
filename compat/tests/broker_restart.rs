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
        acked.extend(send_retrying(&p, &topic, "TagRestart", &b).await?);
        let acked_bodies: Vec<String> = acked.iter().map(|(b, ..)| b.clone()).collect();

        let (mut c1, in1) =
            start_push_consumer(&rt, &ns, PushOpts::clustering(&group, &topic)).await?;
        let waited = async {
            in1.wait_until(
                Duration::from_secs(60),
                "every acknowledged message after the crash",
                |got| {
                    let cnt = body_counts(got);
                    acked_bodies.iter().all(|x| cnt.contains_key(x))
                },
            )
            .await?;
            // Duplicates of anything acknowledged would arrive before these.
            let s = send_sentinels(&mut p, &topic, "TagRestart").await?;
            wait_for_sentinels(&in1, &s, Duration::from_secs(30), "consumer 1").await?;
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        c1.shutdown().await; // persists the group's offsets (UPDATE_CONSUMER_OFFSET)
        let sentinels1 = waited?;
        assert_same_bodies(&without(in1.snapshot(), &sentinels1), &acked_bodies, false)
            .map_err(|e| anyhow!("after the crash: {e}"))?;

        // The committed offsets must reach the broker: per queue, the next offset to consume.
        // (The sentinels are the last message of each queue.)
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (_, bn, q, off) in &acked {
            let e = next.entry((bn.clone(), *q)).or_insert(0);
            *e = (*e).max(*off as i64 + 1);
        }
        for s in &sentinels1 {
            let q = sentinel_queue(s)?;
            let e = next.entry(q.clone()).or_insert(0);
            let max = queue_max_offset(&shard_addrs, &topic, &q)?;
            *e = (*e).max(max);
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
            // Sent at once: wherever the consumer is in its start-up, it must begin at the
            // group's committed offsets, so these are all it gets.
            send_retrying(&p, &topic, "TagRestart", &c).await?;
            in2.wait_until(
                Duration::from_secs(60),
                "messages sent after the clean restart",
                |got| {
                    let cnt = body_counts(got);
                    c.iter().all(|x| cnt.contains_key(x))
                },
            )
            .await?;
            // Anything redelivered from before the committed offsets, or twice, arrives
            // before these.
            let s = send_sentinels(&mut p, &topic, "TagRestart").await?;
            wait_for_sentinels(&in2, &s, Duration::from_secs(30), "consumer 2").await?;
            assert_same_bodies(&without(in2.snapshot(), &s), &c, false)
                .map_err(|e| anyhow!("the group must resume at its committed offsets: {e}"))
        }
        .await;
        c2.shutdown().await;
        p.shutdown().await;
        r
    });
    finish(&broker, r)
}
