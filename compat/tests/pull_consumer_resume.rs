//! A pull consumer (DefaultLitePullConsumer, assign mode, manual commit) commits offsets to
//! the broker (UPDATE_CONSUMER_OFFSET), and after the consumer restarts it resumes exactly
//! at the committed offsets (QUERY_CONSUMER_OFFSET): the uncommitted message of each queue
//! comes again, committed ones never do, new ones arrive.
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Result};
use common::*;
use rocketmq_client_rust::{ClientRuntime, DefaultLitePullConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_queue::MessageQueue;

fn lite_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    group: &str,
) -> Result<DefaultLitePullConsumer> {
    DefaultLitePullConsumer::builder(rt.clone())
        .consumer_group(group.to_string())
        .name_server_addr(ns.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .auto_commit(false)
        .poll_timeout_millis(500)
        .broker_suspend_max_time_millis(1_000)
        .consumer_timeout_millis_when_suspend(3_000)
        .consumer_pull_timeout_millis(3_000)
        .build()
        .map_err(|e| anyhow!("lite pull consumer build: {e}"))
}

/// Polls until every body in `want` was received (bounded), then `settle` more.
async fn poll_until(
    c: &DefaultLitePullConsumer,
    want: &[String],
    limit: Duration,
    settle: Duration,
) -> Result<Vec<Received>> {
    let mut got: Vec<Received> = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        for m in c.poll_with_timeout(500).await {
            got.push(Received::from_ext(&m));
        }
        let counts = body_counts(&got);
        if want.iter().all(|b| counts.contains_key(b)) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<&String> = want.iter().filter(|b| !counts.contains_key(*b)).collect();
            bail!(
                "poll: after {limit:?} still missing {missing:?} (got {} messages)",
                got.len()
            );
        }
    }
    let end = tokio::time::Instant::now() + settle;
    while tokio::time::Instant::now() < end {
        for m in c.poll_with_timeout(300).await {
            got.push(Received::from_ext(&m));
        }
    }
    Ok(got)
}

#[test]
fn pull_consumer_commits_and_resumes_after_restart() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let shard_addrs: Vec<String> = (0..SHARDS).map(|i| broker.shard_addr(i)).collect();
    let topic = unique("CompatPull");
    let group = unique("CompatPullGroup");
    let phase1 = bodies("p1", 0..16);
    let phase2 = bodies("p2", 0..8);
    let r = ClientEnv::new("pull")?.run(Duration::from_secs(180), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatPullProducer").await?;
        let sent1 = send_sync_all(&p, &topic, "TagPull", &phase1).await?;

        // What to commit: per queue, the offset of its last phase-1 message, so exactly that
        // message stays unconsumed for the group.
        let mut last_per_queue: BTreeMap<(String, i32), (u64, String)> = BTreeMap::new();
        for (body, b, q, off) in &sent1 {
            let e = last_per_queue.entry((b.clone(), *q)).or_insert((*off, body.clone()));
            if *off >= e.0 {
                *e = (*off, body.clone());
            }
        }
        let uncommitted: Vec<String> = last_per_queue.values().map(|(_, b)| b.clone()).collect();

        // --- first consumer life ---
        let c1 = lite_consumer(&rt, &ns, &group)?;
        c1.start().await.map_err(|e| anyhow!("lite pull start: {e}"))?;
        let r = async {
            let mqs = c1.fetch_message_queues(&topic).await.map_err(|e| anyhow!("fetch queues: {e}"))?;
            ensure!(!mqs.is_empty(), "no queues for {topic}");
            c1.assign(mqs.clone()).await.map_err(|e| anyhow!("assign: {e}"))?;
            let got = poll_until(&c1, &phase1, Duration::from_secs(60), Duration::from_millis(500)).await?;
            assert_same_bodies(&got, &phase1, false).map_err(|e| anyhow!("first life: {e}"))?;

            let offsets: HashMap<MessageQueue, i64> = last_per_queue
                .iter()
                .map(|((b, q), (off, _))| (MessageQueue::from_parts(topic.as_str(), b.as_str(), *q), *off as i64))
                .collect();
            c1.commit_with_map(offsets, true).await;

            // The broker must now report those offsets (the client sends them oneway).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let mut wrong = Vec::new();
                for ((b, q), (off, _)) in &last_per_queue {
                    let shard = shard_of(b).ok_or_else(|| anyhow!("unexpected broker name {b}"))?;
                    let have = committed_offset(&shard_addrs[usize::from(shard)], &group, &topic, *q)?;
                    if have != Some(*off as i64) {
                        wrong.push(format!("{b}/{q}: broker has {have:?}, committed {off}"));
                    }
                }
                if wrong.is_empty() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("committed offsets not visible via QUERY_CONSUMER_OFFSET after 15 s: {wrong:?}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(mqs)
        }
        .await;
        c1.shutdown().await;
        let mqs = r?;

        // --- new messages while no consumer runs, then the second life ---
        send_sync_all(&p, &topic, "TagPull", &phase2).await?;
        let c2 = lite_consumer(&rt, &ns, &group)?;
        c2.start().await.map_err(|e| anyhow!("lite pull restart: {e}"))?;
        let r = async {
            c2.assign(mqs).await.map_err(|e| anyhow!("assign: {e}"))?;
            let mut expect = uncommitted.clone();
            expect.extend(phase2.iter().cloned());
            let got = poll_until(&c2, &expect, Duration::from_secs(60), Duration::from_secs(2)).await?;
            assert_same_bodies(&got, &expect, false).map_err(|e| {
                anyhow!("after restart the consumer must resume at the committed offsets: {e}")
            })?;
            Ok(())
        }
        .await;
        c2.shutdown().await;
        p.shutdown().await;
        r
    });
    finish(&broker, r)
}
