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
        for b in &sent {
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
            .await
            .map_err(|e| anyhow!("send_with_callback({b}) refused: {e}"))?;
        }
        // Wait (bounded) for every callback.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while outcomes.lock().expect("outcomes").len() < sent.len() {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "only {} of {} async send callbacks fired within 30 s",
                    outcomes.lock().expect("outcomes").len(),
                    sent.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // a duplicate callback would show now
        p.shutdown().await;
        let outcomes = outcomes.lock().expect("outcomes").clone();
        ensure!(
            outcomes.len() == sent.len(),
            "{} callbacks for {} sends",
            outcomes.len(),
            sent.len()
        );
        let failed: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_err()).collect();
        ensure!(failed.is_empty(), "async sends failed: {failed:?}");
        let mut cb_bodies: Vec<String> = outcomes.iter().map(|(b, _)| b.clone()).collect();
        cb_bodies.sort();
        ensure!(
            cb_bodies == sent,
            "callbacks were not one per message: {cb_bodies:?}"
        );

        let got = read_back(
            &rt,
            &ns,
            &topic,
            "*",
            &sent,
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
        .await?;
        assert_same_bodies(&got, &sent, false)?;
        ensure!(
            got.iter().all(|r| r.tags.as_deref() == Some("TagAsync")),
            "wrong tags: {got:?}"
        );
        Ok(())
    });
    finish(&broker, r)
}
