//! A pull consumer (DefaultLitePullConsumer, assign mode, manual commit) commits offsets to
//! the broker (UPDATE_CONSUMER_OFFSET), and a new consumer of the group resumes exactly at
//! the committed offsets (QUERY_CONSUMER_OFFSET): the uncommitted messages of each queue come
//! again, committed ones never do, new ones arrive. Three cases:
//! - the consumer restarts, the broker keeps running;
//! - the consumer stops, the broker stops cleanly (SIGTERM) and starts again on the same store,
//!   then a new consumer starts;
//! - the consumer stops, the broker's offsets reach its disk, and the broker is killed
//!   (SIGKILL) at a random moment while a producer sends, counted from the first send it
//!   acknowledged; it starts again on the same store. Every acknowledged message is consumed,
//!   and nothing from before the committed offsets. The kill time and its seed are printed
//!   and recorded under /var/tmp/petrel-test-seeds/ (replay with PETREL_TEST_SEED).
mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use rocketmq_client_rust::{ClientRuntime, DefaultLitePullConsumer, DefaultMQProducer, SendStatus};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_queue::MessageQueue;

/// Upper end of the random kill delay after the first acknowledged send.
const KILL_WINDOW_MS: u64 = 1_500;
/// Bound on the sends while waiting for the kill.
const SEND_MAX: usize = 20_000;
const TAG: &str = "TagPull";

/// What happens to the broker between the two consumer lives.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Broker {
    KeepsRunning,
    Sigterm,
    Sigkill,
}

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

/// Polls into `got` until every body in `want` was received (bounded).
async fn poll_until(
    c: &DefaultLitePullConsumer,
    got: &mut Vec<Received>,
    want: &[String],
    limit: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let counts = body_counts(got);
        if want.iter().all(|b| counts.contains_key(b)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<&String> = want.iter().filter(|b| !counts.contains_key(*b)).collect();
            bail!(
                "poll: after {limit:?} still missing {missing:?} (got {} messages)",
                got.len()
            );
        }
        for m in c.poll_with_timeout(500).await {
            got.push(Received::from_ext(&m));
        }
    }
}

/// The committed offsets of `group` on `topic`, per (broker name, queue), as the broker
/// reports them (QUERY_CONSUMER_OFFSET).
fn broker_offsets(
    shard_addrs: &[String],
    group: &str,
    topic: &str,
    queues: &BTreeMap<(String, i32), i64>,
) -> Result<Vec<String>> {
    let mut wrong = Vec::new();
    for ((b, q), want) in queues {
        let shard = shard_of(b).ok_or_else(|| anyhow!("unexpected broker name {b}"))?;
        let have = committed_offset(&shard_addrs[usize::from(shard)], group, topic, *q)?;
        if have != Some(*want) {
            wrong.push(format!("{b}/{q}: broker has {have:?}, committed {want}"));
        }
    }
    Ok(wrong)
}

/// Whether shard `i`'s consumerOffset.json (`<store>/shard-<i>/…`) holds `want` for every
/// queue of `topic@group` that lives on that shard.
fn offsets_on_disk(
    store: &Path,
    group: &str,
    topic: &str,
    want: &BTreeMap<(String, i32), i64>,
) -> Result<bool> {
    for shard in 0..SHARDS {
        let wanted: Vec<(i32, i64)> = want
            .iter()
            .filter(|((b, _), _)| shard_of(b) == Some(shard))
            .map(|((_, q), off)| (*q, *off))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let path = find_file(&store.join(format!("shard-{shard}")), "consumerOffset.json")?;
        let Some(path) = path else { return Ok(false) };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return Ok(false), // being replaced right now
        };
        let table = &v["offsetTable"][format!("{topic}@{group}")];
        for (q, off) in wanted {
            if table[q.to_string()].as_i64() != Some(off) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn find_file(dir: &Path, name: &str) -> Result<Option<std::path::PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = find_file(&p, name)? {
                return Ok(Some(found));
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// What phase 2 (the sends while the broker is killed) left behind.
#[derive(Default)]
struct Phase2 {
    /// Acknowledged: (body, broker name, queue, offset).
    acked: Vec<(String, String, i32, u64)>,
    /// In flight when the broker died: it may or may not be stored; it is sent again.
    uncertain: Vec<String>,
}

/// Sends `p2-<n>` messages one by one until the broker is killed (at most `SEND_MAX`), so the
/// kill lands among sends; stops at the first failure after the kill.
async fn send_until_killed(
    p: &DefaultMQProducer,
    topic: &str,
    first_ack: &Cell<Option<Instant>>,
    killed: &Cell<bool>,
    out: &RefCell<Phase2>,
) -> Result<()> {
    for i in 0..SEND_MAX {
        let b = format!("p2-{i:04}");
        let r = p
            .send_with_timeout(message(topic, TAG, &b), SEND_TIMEOUT_MS)
            .await;
        match r {
            Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                let mq = r
                    .message_queue
                    .clone()
                    .ok_or_else(|| anyhow!("SendResult without message queue"))?;
                if first_ack.get().is_none() {
                    first_ack.set(Some(Instant::now()));
                }
                out.borrow_mut().acked.push((
                    b,
                    mq.broker_name().to_string(),
                    mq.queue_id(),
                    r.queue_offset,
                ));
            }
            other if killed.get() => {
                eprintln!("send of {b} failed after the kill: {other:?}");
                out.borrow_mut().uncertain.push(b);
                return Ok(());
            }
            other => bail!("send of {b} failed before the kill: {other:?}"),
        }
    }
    bail!("{SEND_MAX} sends acknowledged and the broker still not killed")
}

fn resume(case: Broker, test: &str) -> Result<()> {
    let mut broker = Petrel::start()?;
    let ns = broker.namesrv_addr();
    let shard_addrs: Vec<String> = (0..SHARDS).map(|i| broker.shard_addr(i)).collect();
    let store = broker.store_dir();
    let topic = unique("CompatPull");
    let group = unique("CompatPullGroup");
    let phase1 = bodies("p1", 0..16);
    let phase2 = bodies("p2", 0..40);
    let mut seeded = match case {
        Broker::Sigkill => Some(Seeded::new(test)?),
        _ => None,
    };
    let broker_ref = &mut broker;
    let r = ClientEnv::new("pull")?.run(Duration::from_secs(240), |rt| async move {
        let mut p = producer(&rt, &ns, "CompatPullProducer").await?;
        let sent1 = send_sync_all(&p, &topic, TAG, &phase1).await?;

        // What to commit: per queue, the offset of its last phase-1 message, so exactly that
        // message (and the sentinel after it) stays unconsumed for the group.
        let mut last_per_queue: BTreeMap<(String, i32), (u64, String)> = BTreeMap::new();
        for (body, b, q, off) in &sent1 {
            let e = last_per_queue.entry((b.clone(), *q)).or_insert((*off, body.clone()));
            if *off >= e.0 {
                *e = (*off, body.clone());
            }
        }
        let committed: BTreeMap<(String, i32), i64> =
            last_per_queue.iter().map(|(k, (off, _))| (k.clone(), *off as i64)).collect();
        let mut expect2: Vec<String> = last_per_queue.values().map(|(_, b)| b.clone()).collect();

        // --- first consumer life ---
        let c1 = lite_consumer(&rt, &ns, &group)?;
        c1.start().await.map_err(|e| anyhow!("lite pull start: {e}"))?;
        let r = async {
            let mqs = c1.fetch_message_queues(&topic).await.map_err(|e| anyhow!("fetch queues: {e}"))?;
            ensure!(!mqs.is_empty(), "no queues for {topic}");
            c1.assign(mqs.clone()).await.map_err(|e| anyhow!("assign: {e}"))?;
            let mut got = Vec::new();
            poll_until(&c1, &mut got, &phase1, Duration::from_secs(60)).await?;
            // A duplicate would arrive before the sentinels sent after phase 1.
            let sentinels = send_sentinels(&mut p, &topic, TAG).await?;
            poll_until(&c1, &mut got, &sentinels, Duration::from_secs(30)).await?;
            assert_same_bodies(&without(got, &sentinels), &phase1, false)
                .map_err(|e| anyhow!("first life: {e}"))?;

            let offsets: HashMap<MessageQueue, i64> = committed
                .iter()
                .map(|((b, q), off)| (MessageQueue::from_parts(topic.as_str(), b.as_str(), *q), *off))
                .collect();
            c1.commit_with_map(offsets, true).await;

            // The broker must now report those offsets (the client sends them oneway).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let wrong = broker_offsets(&shard_addrs, &group, &topic, &committed)?;
                if wrong.is_empty() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("committed offsets not visible via QUERY_CONSUMER_OFFSET after 15 s: {wrong:?}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok((mqs, sentinels))
        }
        .await;
        c1.shutdown().await;
        let (mqs, sentinels1) = r?;
        expect2.extend(sentinels1.iter().cloned());

        // --- the broker's turn, and new messages while no consumer runs ---
        let mut uncertain: Vec<String> = Vec::new();
        let mut acked2: Vec<(String, String, i32, u64)>;
        match case {
            Broker::KeepsRunning => {
                acked2 = send_sync_all(&p, &topic, TAG, &phase2).await?;
            }
            Broker::Sigterm => {
                let status = broker_ref.stop_graceful(Duration::from_secs(20))?;
                ensure!(status.contains("exit status: 0"), "petrel did not exit cleanly on SIGTERM: {status}");
                broker_ref.restart()?;
                acked2 = send_retrying(&p, &topic, TAG, &phase2).await?;
            }
            Broker::Sigkill => {
                // The offsets are persisted every few seconds; a crash before that would lose
                // the commits since (a redelivery, at-least-once). Wait until they are on disk,
                // so the resume point after the crash is exact.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while !offsets_on_disk(&store, &group, &topic, &committed)? {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("committed offsets not in consumerOffset.json after 20 s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let seeded = seeded.as_mut().ok_or_else(|| anyhow!("no seed"))?;
                let delay = Duration::from_millis(seeded.below(KILL_WINDOW_MS));
                seeded.record(&format!("kill {delay:?} after the first acknowledged send"))?;
                let first_ack: Cell<Option<Instant>> = Cell::new(None);
                let killed = Cell::new(false);
                let out = RefCell::new(Phase2::default());
                let sender = send_until_killed(&p, &topic, &first_ack, &killed, &out);
                let killer = async {
                    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
                    let since_first_ack = loop {
                        if let Some(t) = first_ack.get() {
                            break t;
                        }
                        ensure!(tokio::time::Instant::now() < give_up, "no send acknowledged within 30 s");
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    };
                    tokio::time::sleep_until((since_first_ack + delay).into()).await;
                    let acked_at_kill = out.borrow().acked.len();
                    // Set before the kill: the sender cannot run in between (one task).
                    killed.set(true);
                    broker_ref.kill_hard()?;
                    seeded.record(&format!(
                        "killed {:?} after the first ack, with {acked_at_kill} sends acknowledged",
                        since_first_ack.elapsed()
                    ))?;
                    Ok::<_, anyhow::Error>(())
                };
                let (sent, kill) = tokio::join!(sender, killer);
                kill?;
                sent?;
                broker_ref.restart()?;
                let out = out.into_inner();
                acked2 = out.acked;
                uncertain = out.uncertain;
                // The producer reconnects by itself: the body in flight again, and a few more.
                let mut again = uncertain.clone();
                again.extend(bodies("p3", 0..8));
                acked2.extend(send_retrying(&p, &topic, TAG, &again).await?);
            }
        }
        if case != Broker::KeepsRunning {
            let wrong = broker_offsets(&shard_addrs, &group, &topic, &committed)?;
            ensure!(wrong.is_empty(), "committed offsets after the broker's {case:?} restart: {wrong:?}");
        }
        expect2.extend(acked2.iter().map(|(b, ..)| b.clone()));

        // --- second consumer life ---
        let c2 = lite_consumer(&rt, &ns, &group)?;
        c2.start().await.map_err(|e| anyhow!("lite pull restart: {e}"))?;
        let r = async {
            c2.assign(mqs).await.map_err(|e| anyhow!("assign: {e}"))?;
            let mut got = Vec::new();
            poll_until(&c2, &mut got, &expect2, Duration::from_secs(60)).await?;
            // Anything from before the committed offsets, or twice, arrives before these.
            let sentinels2 = send_sentinels(&mut p, &topic, TAG).await?;
            poll_until(&c2, &mut got, &sentinels2, Duration::from_secs(30)).await?;
            let got = without(got, &sentinels2);
            check_second_life(&got, &expect2, &uncertain, &sent1, &acked2)
                .map_err(|e| anyhow!("after the restart the consumer must resume at the committed offsets: {e}"))
        }
        .await;
        c2.shutdown().await;
        p.shutdown().await;
        r
    });
    finish(&broker, r)
}

/// Every expected body once (a body in flight at the kill, sent again, at most twice); the
/// phase-1 and phase-2 bodies at the queue and offset their send reported.
fn check_second_life(
    got: &[Received],
    expect: &[String],
    uncertain: &[String],
    sent1: &[(String, String, i32, u64)],
    acked2: &[(String, String, i32, u64)],
) -> Result<()> {
    if uncertain.is_empty() {
        assert_same_bodies(got, expect, false)?;
    } else {
        assert_same_bodies(got, expect, true)?;
        let counts = body_counts(got);
        let bad: Vec<(&String, &usize)> = counts
            .iter()
            .filter(|(b, n)| **n > 1 && (!uncertain.contains(b) || **n > 2))
            .collect();
        ensure!(
            bad.is_empty(),
            "received more than once: {bad:?} (in flight at the kill: {uncertain:?})"
        );
    }
    let at: BTreeMap<&str, (&str, i32, u64)> = sent1
        .iter()
        .chain(acked2)
        .map(|(b, broker, q, off)| (b.as_str(), (broker.as_str(), *q, *off)))
        .collect();
    let mut seen_at: BTreeSet<&str> = BTreeSet::new();
    for r in got {
        let Some(&(broker, q, off)) = at.get(r.body.as_str()) else {
            continue; // a sentinel of the first life
        };
        if r.queue_id == q
            && r.queue_offset == off as i64
            && (r.broker_name.is_empty() || r.broker_name == broker)
        {
            seen_at.insert(r.body.as_str());
        } else if !uncertain.contains(&r.body) {
            bail!(
                "{} consumed at {:?}/{} offset {}, sent to {broker}/{q} offset {off}",
                r.body,
                r.broker_name,
                r.queue_id,
                r.queue_offset
            );
        }
    }
    let missing: Vec<&String> = expect
        .iter()
        .filter(|b| at.contains_key(b.as_str()) && !seen_at.contains(b.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "not consumed at the queue and offset their send reported: {missing:?}"
    );
    Ok(())
}

#[test]
fn pull_consumer_resumes_at_committed_offsets_after_a_consumer_restart() -> Result<()> {
    resume(
        Broker::KeepsRunning,
        "pull_consumer_resume_consumer_restart",
    )
}

#[test]
fn pull_consumer_resumes_at_committed_offsets_after_a_broker_sigterm() -> Result<()> {
    resume(Broker::Sigterm, "pull_consumer_resume_broker_sigterm")
}

#[test]
fn pull_consumer_resumes_at_committed_offsets_after_a_broker_sigkill_during_sends() -> Result<()> {
    resume(Broker::Sigkill, "pull_consumer_resume_broker_sigkill")
}
