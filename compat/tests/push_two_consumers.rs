//! Two push consumers in one clustering group share the topic's queues: both register with
//! every shard (HEART_BEAT, GET_CONSUMER_LIST_BY_GROUP), the queues are split between them
//! (rebalance, helped by NOTIFY_CONSUMER_IDS_CHANGED), nothing is lost, and once the split
//! is stable (two rounds of per-queue sentinels in a row land on the same consumer per queue)
//! each message goes to exactly one of them, at the queue and offset its send reported.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Result};
use common::*;

#[test]
fn two_consumers_in_one_group_share_the_queues() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let shard_addrs: Vec<String> = (0..SHARDS).map(|i| broker.shard_addr(i)).collect();
    let topic = unique("CompatShare");
    let group = unique("CompatShareGroup");
    let r = ClientEnv::new("share")?.run(Duration::from_secs(200), |rt| async move {
        // Create the topic, then start the producer used below. The broker answers the send
        // that creates a topic only once the route lists every shard, so the new producer's
        // first route is complete (a one-shard route would stick for 30 s, its refresh period,
        // and the consumer holding the other shard's queues would get nothing meanwhile).
        let mut p0 = producer(&rt, &ns, "CompatShareWarm").await?;
        let warm = bodies("warm", 0..8);
        let warmed = send_sync_all(&p0, &topic, "TagShare", &warm).await;
        p0.shutdown().await;
        warmed?;
        check_route_all_shards(&ns, &topic)?;
        let mut p = producer(&rt, &ns, "CompatShareProducer").await?;

        let (mut c1, in1) =
            start_push_consumer(&rt, &ns, PushOpts::clustering(&group, &topic)).await?;
        let (mut c2, in2) =
            start_push_consumer(&rt, &ns, PushOpts::clustering(&group, &topic)).await?;

        let t0 = tokio::time::Instant::now();
        let result = async {
            // Both consumers must be registered on every shard.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            loop {
                let mut counts = Vec::new();
                for a in &shard_addrs {
                    counts.push(
                        consumer_ids(a, &group)
                            .map(|v| v.len())
                            .map_err(|e| format!("{e:#}")),
                    );
                }
                if counts.iter().all(|c| matches!(c, Ok(2))) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "GET_CONSUMER_LIST_BY_GROUP per shard after 40 s: {counts:?} (want 2 each)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }

            eprintln!(
                "both consumers registered on every shard after {:?}",
                t0.elapsed()
            );
            // Trickle messages until both consumers receive some (the rebalance has split the
            // queues), bounded at 60 s (the client's own rebalance period is 20 s).
            let mut sent = warm.clone();
            let mut i = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let b = format!("trickle-{i:04}");
                i += 1;
                send_sync_all(&p, &topic, "TagShare", std::slice::from_ref(&b)).await?;
                sent.push(b);
                let got1 = in1.bodies().iter().any(|b| b.starts_with("trickle"));
                let got2 = in2.bodies().iter().any(|b| b.starts_with("trickle"));
                if got1 && got2 {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "after 60 s of sending, consumer 1 got {} and consumer 2 got {} messages: \
                         the group's queues were not shared",
                        in1.len(),
                        in2.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            eprintln!(
                "both consumers receiving after {:?} ({i} trickle messages)",
                t0.elapsed()
            );
            // The split is stable once two rounds of sentinels (one per queue) in a row are each
            // received exactly once, by the same consumer per queue, with both consumers holding
            // queues. Bounded at 60 s (a rebalance may still be moving queues).
            let mut all_sentinels: Vec<String> = Vec::new();
            let mut last: Option<BTreeMap<(String, i32), u8>> = None;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let split = loop {
                let round = send_sentinels(&mut p, &topic, "TagShare").await?;
                all_sentinels.extend(round.iter().cloned());
                let union = || {
                    let mut v = in1.snapshot();
                    v.extend(in2.snapshot());
                    v
                };
                while !{
                    let c = body_counts(&union());
                    round.iter().all(|b| c.contains_key(b))
                } {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("sentinels {round:?} were not all consumed by the group within 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let mut owner: BTreeMap<(String, i32), u8> = BTreeMap::new();
                let mut once = true;
                for (n, inbox) in [(1u8, &in1), (2u8, &in2)] {
                    for r in inbox.snapshot().iter().filter(|r| round.contains(&r.body)) {
                        let q = sentinel_queue(&r.body)?;
                        once &= owner.insert(q, n).is_none();
                    }
                }
                let holders: BTreeSet<u8> = owner.values().copied().collect();
                if once && holders.len() == 2 && last.as_ref() == Some(&owner) {
                    break owner;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("no stable split of the queues within 60 s; last round: {owner:?}");
                }
                last = Some(owner);
            };
            eprintln!("split stable after {:?}: {split:?}", t0.elapsed());
            sent.extend(all_sentinels.iter().cloned());

            let steady = bodies("steady", 0..32);
            let steady_sent = send_sync_all(&p, &topic, "TagShare", &steady).await?;
            sent.extend(steady.iter().cloned());
            // Duplicates of the steady messages would arrive before these sentinels.
            let final_sentinels = send_sentinels(&mut p, &topic, "TagShare").await?;
            sent.extend(final_sentinels.iter().cloned());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let c: BTreeSet<String> = in1.bodies().into_iter().chain(in2.bodies()).collect();
                if sent.iter().all(|b| c.contains(b)) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    let missing: Vec<&String> = sent.iter().filter(|b| !c.contains(*b)).collect();
                    bail!("messages never consumed by the group: {missing:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }

            let s1: Vec<Received> = in1
                .snapshot()
                .into_iter()
                .filter(|r| r.body.starts_with("steady"))
                .collect();
            let s2: Vec<Received> = in2
                .snapshot()
                .into_iter()
                .filter(|r| r.body.starts_with("steady"))
                .collect();
            ensure!(
                !s1.is_empty() && !s2.is_empty(),
                "steady state: consumer 1 got {}, consumer 2 got {}",
                s1.len(),
                s2.len()
            );
            let mut both: Vec<Received> = s1.clone();
            both.extend(s2.iter().cloned());
            assert_same_bodies(&both, &steady, false)
                .map_err(|e| anyhow!("steady state, the two consumers together: {e}"))?;
            // Each queue belongs to one consumer: the queue of each message is the one its send
            // result named (the broker name a received message carries may be empty), and the
            // consumer got it at the queue and offset the send reported.
            let sent_to: BTreeMap<&str, (&str, i32, u64)> = steady_sent
                .iter()
                .map(|(b, broker, q, off)| (b.as_str(), (broker.as_str(), *q, *off)))
                .collect();
            let mut queues: [BTreeSet<(String, i32)>; 2] = Default::default();
            for (n, got) in [(0usize, &s1), (1usize, &s2)] {
                for r in got {
                    let Some(&(broker, q, off)) = sent_to.get(r.body.as_str()) else {
                        bail!("no send result for {}", r.body);
                    };
                    ensure!(
                        r.queue_id == q && r.queue_offset == off as i64,
                        "{}: consumed at queue {} offset {}, sent to {broker}/{q} offset {off}",
                        r.body,
                        r.queue_id,
                        r.queue_offset
                    );
                    ensure!(
                        r.broker_name.is_empty() || r.broker_name == broker,
                        "{}: consumed from broker {:?}, sent to {broker}",
                        r.body,
                        r.broker_name
                    );
                    queues[n].insert((broker.to_string(), q));
                }
            }
            let shared: Vec<_> = queues[0].intersection(&queues[1]).collect();
            ensure!(
                shared.is_empty(),
                "queues consumed by both consumers: {shared:?}"
            );
            Ok(())
        }
        .await;
        c1.shutdown().await;
        c2.shutdown().await;
        p.shutdown().await;
        result
    });
    finish(&broker, r)
}
