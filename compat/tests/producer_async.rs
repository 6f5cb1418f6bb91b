//! Producer async sends (callback API): every callback fires exactly once with SEND_OK,
//! and a consumer reads back exactly the bodies sent.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Result};
use common::*;
use rocketmq_client_rust::{ClientError, SendResult, SendStatus};

/// (body, Ok(queue offset) | Err(error text)) per callback.
type Outcomes = Arc<Mutex<Vec<(String, Result<u64, String>)>>>;

#[test]
fn producer_async_send_calls_back_once_per_message() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatAsync");
    let sent = bodies("async", 0..20);
    let r = ClientEnv::new("async")?.run(Duration::from_secs(120), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatAsyncProducer").await?;
        let outcomes: Outcomes = Arc::default();
        let send_async = |b: &String| {
            let out = outcomes.clone();
            let body = b.clone();
            p.send_with_callback(
                message(&topic, "TagAsync", b),
                move |r: Option<&SendResult>, e: Option<&ClientError>| {
                    let v = match (r, e) {
                        (Some(r), _) if r.send_status == SendStatus::SendOk => Ok(r.queue_offset),
                        (Some(r), _) => Err(format!("status {:?}", r.send_status)),
                        (None, Some(e)) => Err(e.to_string()),
                        (None, None) => Err("callback with neither result nor error".into()),
                    };
                    out.lock().expect("outcomes").push((body.clone(), v));
                },
            )
        };
        for b in &sent {
            send_async(b)
                .await
                .map_err(|e| anyhow!("send_with_callback({b}) refused: {e}"))?;
        }
        // Wait (bounded) for the callbacks of `n` sends.
        let wait_callbacks = |n: usize| {
            let outcomes = outcomes.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while outcomes.lock().expect("outcomes").len() < n {
                    if tokio::time::Instant::now() >= deadline {
                        bail!(
                            "only {} of {n} async send callbacks fired within 30 s",
                            outcomes.lock().expect("outcomes").len(),
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(())
            }
        };
        wait_callbacks(sent.len()).await?;
        // A sentinel send through the same path: a duplicate callback of an earlier send
        // would come (from the same connection's answers) before the sentinel's own.
        let sentinel = "async-sentinel".to_string();
        send_async(&sentinel)
            .await
            .map_err(|e| anyhow!("send_with_callback({sentinel}) refused: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !outcomes
            .lock()
            .expect("outcomes")
            .iter()
            .any(|(b, _)| *b == sentinel)
        {
            if tokio::time::Instant::now() >= deadline {
                bail!("the sentinel's callback did not fire within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sentinels = send_sentinels(&mut p, &topic, "TagAsync").await;
        p.shutdown().await;
        let sentinels = sentinels?;
        let mut all = sent.clone();
        all.push(sentinel);
        all.sort();
        let outcomes = outcomes.lock().expect("outcomes").clone();
        ensure!(
            outcomes.len() == all.len(),
            "{} callbacks for {} sends",
            outcomes.len(),
            all.len()
        );
        let failed: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_err()).collect();
        ensure!(failed.is_empty(), "async sends failed: {failed:?}");
        let mut cb_bodies: Vec<String> = outcomes.iter().map(|(b, _)| b.clone()).collect();
        cb_bodies.sort();
        ensure!(
            cb_bodies == all,
            "callbacks were not one per message: {cb_bodies:?}"
        );

        let got = read_back(
            &rt,
            &ns,
            &topic,
            "*",
            &all,
            &sentinels,
            Duration::from_secs(60),
        )
        .await?;
        assert_same_bodies(&got, &all, false)?;
        ensure!(
            got.iter().all(|r| r.tags.as_deref() == Some("TagAsync")),
            "wrong tags: {got:?}"
        );
        Ok(())
    });
    finish(&broker, r)
}
