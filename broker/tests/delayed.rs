//! Delayed delivery over real sockets (REMOTING.md §7.5, §7.4): a message sent with `DELAY`
//! and a CONSUMER_SEND_MSG_BACK retry are parked in SCHEDULE_TOPIC_XXXX and reach their real
//! topic only once the level's delay has passed; parked messages and delivery offsets survive
//! a broker restart, and parked messages survive a crash.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use common::*;

/// Slack for timers, wake-ups and the 1 ms store-timestamp grain.
const EARLY_SLACK: Duration = Duration::from_millis(50);

/// Pulls (held, with short suspends) until `topic`/`queue_id` has records at `offset`;
/// returns them and the moment they were seen. Fails after `deadline`.
fn pull_until_found(
    c: &mut Client,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    deadline: Instant,
) -> Result<(Vec<Record>, Instant)> {
    let flags = PULL_FLAG_SUBSCRIPTION | PULL_FLAG_SUSPEND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("nothing arrived in {topic}/{queue_id} at offset {offset} before the deadline");
        }
        let suspend_ms = i64::try_from(left.as_millis().min(2_000))?.max(1);
        let r = c.pull(group, topic, queue_id, offset, flags, "*", suspend_ms)?;
        if r.code == ResponseCode::SUCCESS {
            return Ok((decode_records(&r.body)?, Instant::now()));
        }
        assert!(
            r.code == ResponseCode::PULL_NOT_FOUND
                || r.code == ResponseCode::PULL_RETRY_IMMEDIATELY,
            "unexpected pull answer: {}",
            code_of(&r)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pull without suspend that must find nothing.
fn assert_nothing_at(c: &mut Client, group: &str, topic: &str, queue_id: i32, offset: i64) {
    let r = c
        .pull(
            group,
            topic,
            queue_id,
            offset,
            PULL_FLAG_SUBSCRIPTION,
            "*",
            0,
        )
        .expect("pull");
    assert_ne!(
        r.code,
        ResponseCode::SUCCESS,
        "{topic}/{queue_id} at {offset} should be empty, got {:?}",
        decode_records(&r.body).map(|v| v.len())
    );
}

/// DELAY=1 (1 s): the send succeeds at once, the message is parked (not in its topic), and
/// shows up in its topic and queue after about a second, with DELAY gone and everything else
/// (body, tags, UNIQ_KEY, flag) kept.
#[test]
fn delay_level_1_message_arrives_after_about_one_second() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    // Create the topic first so the parked message is the only one in its queue.
    assert_success(&c.send_message("DelayTopic", 1, b"plain", "")?);

    let uniq = "0A0000010000000000000000000000D1";
    let sent_at = Instant::now();
    let r = c.send_message(
        "DelayTopic",
        0,
        b"later",
        &props(&[("DELAY", "1"), ("TAGS", "tagA"), ("UNIQ_KEY", uniq)]),
    )?;
    assert_success(&r);
    assert_eq!(r.ext("queueId"), Some("0"));
    assert_nothing_at(&mut c, "dg", "DelayTopic", 0, 0);

    let (records, seen_at) = pull_until_found(
        &mut c,
        "dg",
        "DelayTopic",
        0,
        0,
        sent_at + Duration::from_secs(6),
    )?;
    let waited = seen_at - sent_at;
    assert!(
        waited + EARLY_SLACK >= Duration::from_millis(1_000),
        "delivered after only {waited:?}"
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let m = &records[0];
    assert_eq!(m.topic, "DelayTopic");
    assert_eq!(m.queue_id, 0);
    assert_eq!(m.queue_offset, 0);
    assert_eq!(m.body, b"later");
    assert_eq!(m.property("DELAY"), None);
    assert_eq!(m.property("TAGS"), Some("tagA"));
    assert_eq!(m.property("UNIQ_KEY"), Some(uniq));
    assert_eq!(m.property("REAL_TOPIC"), Some("DelayTopic"));
    assert_eq!(m.property("REAL_QID"), Some("0"));

    // The tag filter still applies to the delivered copy (its tags code was recomputed).
    let r = c.pull("dg", "DelayTopic", 0, 0, PULL_FLAG_SUBSCRIPTION, "tagB", 0)?;
    assert_ne!(r.code, ResponseCode::SUCCESS, "{}", code_of(&r));
    let r = c.pull("dg", "DelayTopic", 0, 0, PULL_FLAG_SUBSCRIPTION, "tagA", 0)?;
    assert_success(&r);
    Ok(())
}

/// CONSUMER_SEND_MSG_BACK with delayLevel=1 parks the retry copy: it is not in
/// %RETRY%<group> at once, and appears there after about a second (reconsumeTimes + 1,
/// RETRY_TOPIC set, DELAY gone). Java's default level (0 -> 3 + reconsumeTimes) parks in
/// queue 2 of SCHEDULE_TOPIC_XXXX.
#[test]
fn send_back_with_delay_level_1_reappears_in_retry_topic_after_about_one_second() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.heartbeat("127.0.0.1@d", "dgrp", "BackDelay", "*")?);
    let uniq = "0A0000010000000000000000000000D2";
    let r = c.send_message("BackDelay", 0, b"again", &props(&[("UNIQ_KEY", uniq)]))?;
    assert_success(&r);
    let offset = i64::from_str_radix(&r.ext("msgId").expect("msgId")[16..], 16)?;
    let back = |level: i32| {
        RemotingCommand::request(RequestCode::CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", offset)
            .with_ext("group", "dgrp")
            .with_ext("delayLevel", level)
            .with_ext("originMsgId", uniq)
            .with_ext("originTopic", "BackDelay")
            .with_ext("unitMode", "false")
            .with_ext("maxReconsumeTimes", 16)
    };

    let sent_at = Instant::now();
    assert_success(&c.request(back(1))?);
    assert_nothing_at(&mut c, "dgrp", "%RETRY%dgrp", 0, 0);
    let (records, seen_at) = pull_until_found(
        &mut c,
        "dgrp",
        "%RETRY%dgrp",
        0,
        0,
        sent_at + Duration::from_secs(6),
    )?;
    let waited = seen_at - sent_at;
    assert!(
        waited + EARLY_SLACK >= Duration::from_millis(1_000),
        "retry delivered after only {waited:?}"
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let m = &records[0];
    assert_eq!(m.topic, "%RETRY%dgrp");
    assert_eq!(m.body, b"again");
    assert_eq!(m.reconsume_times, 1);
    assert_eq!(m.property("RETRY_TOPIC"), Some("BackDelay"));
    assert_eq!(m.property("UNIQ_KEY"), Some(uniq));
    assert_eq!(m.property("DELAY"), None);

    // delayLevel 0 means 3 + reconsumeTimes (10 s): parked in level 3's queue, not delivered.
    assert_success(&c.request(back(0))?);
    let r = c.pull(
        "dgrp",
        "SCHEDULE_TOPIC_XXXX",
        2,
        0,
        PULL_FLAG_SUBSCRIPTION,
        "*",
        0,
    )?;
    assert_success(&r);
    let parked = decode_records(&r.body)?.remove(0);
    assert_eq!(parked.property("DELAY"), Some("3"));
    assert_eq!(parked.property("REAL_TOPIC"), Some("%RETRY%dgrp"));
    assert_nothing_at(&mut c, "dgrp", "%RETRY%dgrp", 0, 1);
    Ok(())
}

/// A message parked for 5 s (DELAY=2) is still delivered after a restart that happens while
/// it waits; one delivered before the restart is not delivered again (the delivery offset was
/// written at shutdown).
#[test]
fn delayed_delivery_survives_a_broker_restart() -> Result<()> {
    let mut broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.send_message("DelayRestart", 0, b"seed", "")?);
    // One message delivered before the restart (level 1)...
    let sent_at = Instant::now();
    assert_success(&c.send_message("DelayRestart", 1, b"before", &props(&[("DELAY", "1")]))?);
    let (records, _) = pull_until_found(
        &mut c,
        "rg",
        "DelayRestart",
        1,
        0,
        sent_at + Duration::from_secs(6),
    )?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, b"before");
    // ...and one still parked when the broker stops (level 2, 5 s).
    let sent_at = Instant::now();
    assert_success(&c.send_message("DelayRestart", 2, b"across", &props(&[("DELAY", "2")]))?);
    drop(c);
    broker.restart()?;
    let mut c = broker.client()?;
    let (records, seen_at) = pull_until_found(
        &mut c,
        "rg",
        "DelayRestart",
        2,
        0,
        sent_at + Duration::from_secs(15),
    )?;
    let waited = seen_at - sent_at;
    assert!(
        waited + EARLY_SLACK >= Duration::from_millis(5_000),
        "delivered after only {waited:?}"
    );
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].body, b"across");
    assert_eq!(records[0].property("DELAY"), None);

    // The level-1 message was not delivered a second time after the restart.
    let r = c.pull("rg", "DelayRestart", 1, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&r);
    let before = decode_records(&r.body)?;
    assert_eq!(before.len(), 1, "duplicate delivery: {before:?}");
    let offsets =
        std::fs::read_to_string(broker.store_dir.join("shard-0/config/delayOffset.json"))?;
    let v: serde_json::Value = serde_json::from_str(&offsets)?;
    assert_eq!(v["offsetTable"]["1"], 1, "{offsets}");
    Ok(())
}

/// A parked message acknowledged under SYNC_FLUSH survives a crash (SIGKILL, no shutdown):
/// recovery rebuilds the schedule queue from the commitlog and the message is delivered
/// (at least once) when its time comes.
#[test]
fn parked_message_survives_a_crash() -> Result<()> {
    let mut broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.send_message("DelayCrash", 1, b"seed", "")?);
    let sent_at = Instant::now();
    assert_success(&c.send_message("DelayCrash", 0, b"crash", &props(&[("DELAY", "2")]))?);
    drop(c);
    broker.crash_restart()?;
    let mut c = broker.client()?;
    let (records, seen_at) = pull_until_found(
        &mut c,
        "cg",
        "DelayCrash",
        0,
        0,
        sent_at + Duration::from_secs(15),
    )?;
    let waited = seen_at - sent_at;
    assert!(
        waited + EARLY_SLACK >= Duration::from_millis(5_000),
        "delivered after only {waited:?}"
    );
    assert!(!records.is_empty());
    assert!(records.iter().all(|m| m.body == b"crash"), "{records:?}");
    Ok(())
}

/// A batch may not ask for a delay (Java: MESSAGE_ILLEGAL).
#[test]
fn batch_with_delay_is_rejected() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.send_message("DelayBatch", 0, b"x", "")?);
    let body = {
        let (b, p) = (&b"one"[..], "");
        let total = 22 + b.len() + p.len();
        let mut v = Vec::new();
        v.extend_from_slice(&i32::try_from(total)?.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&i32::try_from(b.len())?.to_be_bytes());
        v.extend_from_slice(b);
        v.extend_from_slice(&i16::try_from(p.len())?.to_be_bytes());
        v
    };
    let cmd = RemotingCommand::request(RequestCode::SEND_BATCH_MESSAGE)
        .with_ext("a", "test-producer")
        .with_ext("b", "DelayBatch")
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", 0)
        .with_ext("f", 0)
        .with_ext("g", now_ms())
        .with_ext("h", 0)
        .with_ext("i", props(&[("DELAY", "2")]))
        .with_ext("j", 0)
        .with_ext("k", "false")
        .with_ext("m", "true")
        .with_body(bytes::Bytes::from(body));
    let r = c.request(cmd)?;
    assert_eq!(r.code, ResponseCode::MESSAGE_ILLEGAL, "{}", code_of(&r));
    Ok(())
}
