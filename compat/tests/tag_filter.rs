//! Tag filtering: a consumer subscribed to "TagA || TagC" gets exactly the TagA and TagC
//! messages; another group subscribed to "Aa" never sees "BB" (same Java hashCode, so the
//! tag-hash filter alone would let it through; the exact tag check must drop it).
mod common;

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use common::*;

#[test]
fn tag_expression_filters_messages() -> Result<()> {
    let broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let topic = unique("CompatTags");
    let r = ClientEnv::new("tags")?.run(Duration::from_secs(150), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatTagsProducer").await?;
        let tags = ["TagA", "TagB", "TagC", "Aa", "BB"];
        let mut by_tag: Vec<(String, String)> = Vec::new(); // (tag, body)
        for i in 0..40 {
            let tag = tags[i % tags.len()];
            let body = format!("{tag}-{i:04}");
            send_sync_all(&p, &topic, tag, std::slice::from_ref(&body)).await?;
            by_tag.push((tag.to_string(), body));
        }
        let want = |ts: &[&str]| -> Vec<String> {
            by_tag
                .iter()
                .filter(|(t, _)| ts.contains(&t.as_str()))
                .map(|(_, b)| b.clone())
                .collect()
        };

        // Each reader waits for sentinels with a tag it subscribes to, sent after everything
        // else: once they are in, whatever its filter let through is in too.
        let ac = want(&["TagA", "TagC"]);
        let sentinels_c = send_sentinels(&mut p, &topic, "TagC").await?;
        let got = read_back(
            &rt,
            &ns,
            &topic,
            "TagA || TagC",
            &ac,
            &sentinels_c,
            Duration::from_secs(60),
        )
        .await?;
        assert_same_bodies(&got, &ac, false).map_err(|e| anyhow!("\"TagA || TagC\": {e}"))?;
        for r in &got {
            ensure!(
                matches!(r.tags.as_deref(), Some("TagA") | Some("TagC")),
                "{} has tag {:?}",
                r.body,
                r.tags
            );
            ensure!(
                r.body.starts_with(r.tags.as_deref().unwrap_or("?")),
                "{} carries tag {:?}",
                r.body,
                r.tags
            );
        }

        let aa = want(&["Aa"]);
        ensure!("Aa".len() == 2 && aa.len() == 8, "test set-up");
        let sentinels_aa = send_sentinels(&mut p, &topic, "Aa").await?;
        let got = read_back(
            &rt,
            &ns,
            &topic,
            "Aa",
            &aa,
            &sentinels_aa,
            Duration::from_secs(60),
        )
        .await?;
        assert_same_bodies(&got, &aa, false)
            .map_err(|e| anyhow!("\"Aa\" (hash twin of \"BB\"): {e}"))?;

        // Everything is still there for a "*" subscriber (filtering never deletes).
        // (The earlier rounds' sentinels are messages of the topic too.)
        let mut all: Vec<String> = by_tag.iter().map(|(_, b)| b.clone()).collect();
        all.extend(sentinels_c.iter().cloned());
        all.extend(sentinels_aa.iter().cloned());
        let sentinels_all = send_sentinels(&mut p, &topic, "TagZ").await?;
        let got = read_back(
            &rt,
            &ns,
            &topic,
            "*",
            &all,
            &sentinels_all,
            Duration::from_secs(60),
        )
        .await?;
        assert_same_bodies(&got, &all, false).map_err(|e| anyhow!("\"*\": {e}"))?;
        p.shutdown().await;
        Ok(())
    });
    finish(&broker, r)
}
