//! Producer sync sends (SEND_MESSAGE_V2) through an unchanged rocketmq-client-rust 1.0.0:
//! every send is SEND_OK with a msgId, queue offsets are consecutive per queue from 0, the
//! auto-created topic spans every shard, and a consumer reads back exactly what was sent,
//! with topic, tag, queue id and queue offset matching the send results.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use common::*;

#[test]
fn producer_sync_send_is_acknowledged_and_readable() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatSync");
    let sent = bodies("sync", 0..24);
    let r = ClientEnv::new("sync")?.run(Duration::from_secs(120), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatSyncProducer").await?;
        let results = send_sync_all(&p, &topic, "TagSync", &sent).await;
        let sentinels = match &results {
            Ok(_) => send_sentinels(&mut p, &topic, "TagSync").await,
            Err(_) => Ok(Vec::new()),
        };
        p.shutdown().await;
        let results = results?;
        let sentinels = sentinels?;

        // Offsets: per (broker, queue) they are 0, 1, 2, ... in send order.
        let mut per_queue: BTreeMap<(String, i32), Vec<u64>> = BTreeMap::new();
        for (_, b, q, off) in &results {
            per_queue.entry((b.clone(), *q)).or_default().push(*off);
        }
        for (q, offs) in &per_queue {
            let expect: Vec<u64> = (0..offs.len() as u64).collect();
            ensure!(
                offs == &expect,
                "queue {q:?}: offsets {offs:?}, expected {expect:?}"
            );
        }
        // The auto-created topic is spread over every shard, and the nameserver's route listed
        // them all before the first send was answered.
        check_route_all_shards(&ns, &topic).map_err(|e| {
            anyhow::anyhow!("an auto-created topic must be spread over every shard: {e}")
        })?;
        let brokers: BTreeSet<&String> = per_queue.keys().map(|(b, _)| b).collect();
        eprintln!("the sends went to {brokers:?}");

        let got = read_back(
            &rt,
            &ns,
            &topic,
            "*",
            &sent,
            &sentinels,
            Duration::from_secs(60),
        )
        .await?;
        assert_same_bodies(&got, &sent, false)?;
        for r in &got {
            ensure!(r.topic == topic, "topic {} != {topic}", r.topic);
            ensure!(
                r.tags.as_deref() == Some("TagSync"),
                "tag {:?} on {}",
                r.tags,
                r.body
            );
            ensure!(!r.msg_id.is_empty(), "empty msgId on {}", r.body);
            let Some((_, _, q, off)) = results.iter().find(|(b, ..)| *b == r.body) else {
                bail!("no send result for {}", r.body)
            };
            // A redelivery (reconsume_times > 0, the client sent it back) comes from %RETRY%.
            ensure!(
                r.reconsume_times > 0 || (r.queue_id == *q && r.queue_offset == *off as i64),
                "{}: consumed at queue {} offset {}, but the send said queue {q} offset {off}",
                r.body,
                r.queue_id,
                r.queue_offset
            );
        }
        Ok(())
    });
    finish(&broker, r)
}
