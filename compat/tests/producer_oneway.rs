//! Producer oneway sends (no reply expected, the request carries the oneway flag): the
//! broker must store each message and must not answer; a consumer reads them all back.
mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::*;

#[test]
fn producer_oneway_messages_are_stored() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatOneway");
    let sent = bodies("oneway", 0..20);
    let r = ClientEnv::new("oneway")?.run(Duration::from_secs(120), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatOnewayProducer").await?;
        // One sync send first creates the topic on every shard (a oneway send to an unknown
        // topic is fine too, but the first route lookup races with auto-creation).
        let first = vec![format!("oneway-first")];
        send_sync_all(&p, &topic, "TagOneway", &first).await?;
        for b in &sent {
            p.send_oneway(message(&topic, "TagOneway", b))
                .await
                .map_err(|e| anyhow!("send_oneway({b}): {e}"))?;
        }
        let mut all = first.clone();
        all.extend(sent.iter().cloned());
        let got = async {
            let sentinels = send_sentinels(&mut p, &topic, "TagOneway").await?;
            read_back(
                &rt,
                &ns,
                &topic,
                "*",
                &all,
                &sentinels,
                Duration::from_secs(60),
            )
            .await
        }
        .await;
        p.shutdown().await;
        let got = got?;
        assert_same_bodies(&got, &all, false)?;
        ensure!(
            got.iter().all(|r| r.tags.as_deref() == Some("TagOneway")),
            "wrong tags: {got:?}"
        );
        Ok(())
    });
    finish(&broker, r)
}
