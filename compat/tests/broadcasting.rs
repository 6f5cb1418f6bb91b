//! Broadcasting: two consumers of one group (in broadcasting mode, local offsets) each
//! receive every message, those stored before they started and those sent afterwards.
mod common;

use std::time::Duration;

use anyhow::{anyhow, Result};
use common::*;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;

#[test]
fn broadcasting_consumers_each_receive_every_message() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatBcast");
    let group = unique("CompatBcastGroup");
    let before = bodies("before", 0..10);
    let after = bodies("after", 0..10);
    let r = ClientEnv::new("bcast")?.run(Duration::from_secs(150), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatBcastProducer").await?;
        send_sync_all(&p, &topic, "TagB", &before).await?;

        let mk = |n: usize| PushOpts {
            model: MessageModel::Broadcasting,
            // Broadcasting keeps the client id "<ip>@DEFAULT"; two consumers of one group in
            // one process need distinct instance names (as in two processes).
            instance_name: Some(unique(&format!("bcast{n}"))),
            ..PushOpts::clustering(&group, &topic)
        };
        let (mut c1, in1) = start_push_consumer(&rt, &ns, mk(1)).await?;
        let (mut c2, in2) = start_push_consumer(&rt, &ns, mk(2)).await?;
        let mut all = before.clone();
        all.extend(after.iter().cloned());

        let result = async {
            for (n, inbox) in [(1, &in1), (2, &in2)] {
                inbox
                    .wait_until(
                        Duration::from_secs(60),
                        &format!("consumer {n}: stored messages"),
                        |got| {
                            let c = body_counts(got);
                            before.iter().all(|b| c.contains_key(b))
                        },
                    )
                    .await?;
            }
            send_sync_all(&p, &topic, "TagB", &after).await?;
            for (n, inbox) in [(1, &in1), (2, &in2)] {
                inbox
                    .wait_until(
                        Duration::from_secs(30),
                        &format!("consumer {n}: new messages"),
                        |got| {
                            let c = body_counts(got);
                            after.iter().all(|b| c.contains_key(b))
                        },
                    )
                    .await?;
            }
            // Duplicates of anything sent so far arrive before the sentinels sent after it.
            let sentinels = send_sentinels(&mut p, &topic, "TagB").await?;
            for (n, inbox) in [(1, &in1), (2, &in2)] {
                wait_for_sentinels(
                    inbox,
                    &sentinels,
                    Duration::from_secs(30),
                    &format!("consumer {n}"),
                )
                .await?;
            }
            assert_same_bodies(&without(in1.snapshot(), &sentinels), &all, false)
                .map_err(|e| anyhow!("consumer 1: {e}"))?;
            assert_same_bodies(&without(in2.snapshot(), &sentinels), &all, false)
                .map_err(|e| anyhow!("consumer 2: {e}"))?;
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
