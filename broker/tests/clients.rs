//! Client management over real sockets: HEART_BEAT (34), GET_CONSUMER_LIST_BY_GROUP (38),
//! NOTIFY_CONSUMER_IDS_CHANGED (40, broker to client), UNREGISTER_CLIENT (35),
//! CHECK_CLIENT_CONFIG (46), LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42),
//! CONSUMER_SEND_MSG_BACK (36).

mod common;

use std::time::Duration;

use anyhow::Result;
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use bytes::Bytes;
use common::*;

fn consumer_list(c: &mut Client, group: &str) -> Result<(i32, Vec<String>)> {
    let r = c.request(
        RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", group),
    )?;
    if r.code != ResponseCode::SUCCESS {
        return Ok((r.code, Vec::new()));
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    let ids = v["consumerIdList"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((r.code, ids))
}

/// Heartbeats register members; a new member makes the broker notify the others; the group's
/// retry topic exists afterwards; unregister and connection close remove members.
#[test]
fn heartbeat_membership_and_notify() -> Result<()> {
    let broker = Broker::start()?;
    let mut a = broker.client()?;
    let r = a.heartbeat("127.0.0.1@a", "grp", "HbTopic", "*")?;
    assert_success(&r);
    assert!(r.version >= 232, "heartbeat answer version {}", r.version);
    assert_eq!(
        consumer_list(&mut a, "grp")?,
        (ResponseCode::SUCCESS, vec!["127.0.0.1@a".to_string()])
    );
    // The joining member itself is notified too (Java notifies every member).
    let own = a
        .wait_pushed(
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
            Duration::from_secs(5),
        )?
        .expect("member a is told that it joined");
    assert!(own.is_oneway());
    assert_eq!(own.ext("consumerGroup"), Some("grp"));

    let mut b = broker.client()?;
    assert_success(&b.heartbeat("127.0.0.1@b", "grp", "HbTopic", "*")?);
    let notify = a
        .wait_pushed(
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
            Duration::from_secs(5),
        )?
        .expect("member a is told that b joined");
    assert!(notify.is_oneway());
    assert_eq!(notify.ext("consumerGroup"), Some("grp"));
    let (_, ids) = consumer_list(&mut a, "grp")?;
    assert_eq!(
        ids,
        vec!["127.0.0.1@a".to_string(), "127.0.0.1@b".to_string()]
    );

    // A repeated heartbeat with the same subscription changes nothing: no notify. Shown with
    // a sentinel: a is also a member of group "sentinel", and a new member of that group
    // joins after the repeated heartbeat was answered. The broker queues notifies to a's
    // connection in order, so once the "sentinel" notify has arrived, a "grp" notify caused
    // by the repeated heartbeat would have arrived before it.
    assert_success(&a.heartbeat("127.0.0.1@a", "sentinel", "HbTopic", "*")?);
    let is_group = |g: &'static str| move |c: &RemotingCommand| c.ext("consumerGroup") == Some(g);
    a.wait_pushed_matching(
        RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
        Duration::from_secs(5),
        is_group("sentinel"),
    )?
    .expect("member a is told that it joined group sentinel");
    assert!(a.pushed.is_empty(), "unexpected pushes: {:?}", a.pushed);
    assert_success(&b.heartbeat("127.0.0.1@b", "grp", "HbTopic", "*")?);
    let mut s = broker.client()?;
    assert_success(&s.heartbeat("127.0.0.1@s", "sentinel", "HbTopic", "*")?);
    a.wait_pushed_matching(
        RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
        Duration::from_secs(5),
        is_group("sentinel"),
    )?
    .expect("member a is told that s joined group sentinel");
    assert!(
        a.pushed.is_empty(),
        "a repeated heartbeat notified: {:?}",
        a.pushed
    );
    // Joining another group left a's membership of grp as it was.
    assert_eq!(
        consumer_list(&mut a, "grp")?.1,
        vec!["127.0.0.1@a".to_string(), "127.0.0.1@b".to_string()]
    );

    // %RETRY%grp exists: it has a max offset and accepts pulls.
    let r = a.pull("grp", "%RETRY%grp", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::PULL_NOT_FOUND, "{}", code_of(&r));

    // UNREGISTER_CLIENT removes b and notifies a.
    let r = b.request(
        RemotingCommand::request(RequestCode::UNREGISTER_CLIENT)
            .with_ext("clientID", "127.0.0.1@b")
            .with_ext("consumerGroup", "grp")
            .with_ext("producerGroup", "CLIENT_INNER_PRODUCER"),
    )?;
    assert_success(&r);
    assert!(a
        .wait_pushed(
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
            Duration::from_secs(5)
        )?
        .is_some());
    assert_eq!(
        consumer_list(&mut a, "grp")?.1,
        vec!["127.0.0.1@a".to_string()]
    );

    // Closing a's connection empties the group.
    drop(a);
    let mut probe = broker.client()?;
    let mut last = (0, Vec::new());
    for _ in 0..150 {
        last = consumer_list(&mut probe, "grp")?;
        if last.0 == ResponseCode::SYSTEM_ERROR {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        last.0,
        ResponseCode::SYSTEM_ERROR,
        "group still has {:?}",
        last.1
    );
    Ok(())
}

/// A pull without the SUBSCRIPTION flag filters by the heartbeat's subscription.
#[test]
fn pull_uses_the_heartbeat_subscription() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    for tag in ["TagA", "TagB", "TagA"] {
        assert_success(&c.send_message("HbSub", 0, tag.as_bytes(), &props(&[("TAGS", tag)]))?);
    }
    // No heartbeat yet: the group has no subscription.
    let r = c.pull("subgrp", "HbSub", 0, 0, 0, "", 0)?;
    assert_eq!(
        r.code,
        ResponseCode::SUBSCRIPTION_NOT_EXIST,
        "{}",
        code_of(&r)
    );
    assert_success(&c.heartbeat("127.0.0.1@s", "subgrp", "HbSub", "TagB")?);
    let r = c.pull("subgrp", "HbSub", 0, 0, 0, "", 0)?;
    assert_success(&r);
    let bodies: Vec<Vec<u8>> = decode_records(&r.body)?
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, vec![b"TagB".to_vec()]);
    Ok(())
}

/// CHECK_CLIENT_CONFIG: TAG subscriptions pass, SQL92 ones pass when they compile (the
/// SQL92 cases in detail are in sql_filter.rs).
#[test]
fn check_client_config_accepts_tag_and_valid_sql92() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let body = |t: &str, sub: &str| {
        Bytes::from(
            serde_json::json!({"clientId":"c","group":"g","subscriptionData":{"topic":"T","subString":sub,"expressionType":t}})
                .to_string(),
        )
    };
    let r = c.request(
        RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG).with_body(body("TAG", "a")),
    )?;
    assert_success(&r);
    let r = c.request(
        RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG)
            .with_body(body("SQL92", "a IS NOT NULL")),
    )?;
    assert_success(&r);
    let r = c.request(
        RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG).with_body(body("SQL92", "a >")),
    )?;
    assert_eq!(
        r.code,
        ResponseCode::SUBSCRIPTION_PARSE_FAILED,
        "{}",
        code_of(&r)
    );
    Ok(())
}

/// LOCK_BATCH_MQ grants a queue to one client at a time; UNLOCK_BATCH_MQ frees it.
#[test]
fn lock_and_unlock_batch_mq() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let body = |client: &str| {
        Bytes::from(
            serde_json::json!({"consumerGroup":"og","clientId":client,"onlyThisBroker":false,
                "mqSet":[{"brokerName":"test-broker_0","queueId":0,"topic":"T"},
                         {"brokerName":"test-broker_0","queueId":1,"topic":"T"}]})
            .to_string(),
        )
    };
    let locked = |r: &RemotingCommand| -> Result<usize> {
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        Ok(v["lockOKMQSet"].as_array().map_or(0, Vec::len))
    };
    let r =
        c.request(RemotingCommand::request(RequestCode::LOCK_BATCH_MQ).with_body(body("c1")))?;
    assert_success(&r);
    assert_eq!(locked(&r)?, 2);
    let r =
        c.request(RemotingCommand::request(RequestCode::LOCK_BATCH_MQ).with_body(body("c2")))?;
    assert_eq!(locked(&r)?, 0, "held by c1");
    let r =
        c.request(RemotingCommand::request(RequestCode::UNLOCK_BATCH_MQ).with_body(body("c1")))?;
    assert_success(&r);
    let r =
        c.request(RemotingCommand::request(RequestCode::LOCK_BATCH_MQ).with_body(body("c2")))?;
    assert_eq!(locked(&r)?, 2);
    Ok(())
}

/// CONSUMER_SEND_MSG_BACK stores a copy for %RETRY%group (reconsumeTimes + 1, RETRY_TOPIC
/// set), parked in SCHEDULE_TOPIC_XXXX at level 3 + reconsumeTimes (delivery timing is
/// tests/delayed.rs), and in %DLQ%group once the client's max is reached.
#[test]
fn consumer_send_msg_back_goes_to_retry_then_dlq() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.heartbeat("127.0.0.1@r", "rgrp", "BackTopic", "*")?);
    let uniq = "0A000001000000000000000000000001";
    let r = c.send_message(
        "BackTopic",
        0,
        b"retry me",
        &props(&[("UNIQ_KEY", uniq), ("TAGS", "t")]),
    )?;
    assert_success(&r);
    let offset = i64::from_str_radix(&r.ext("msgId").expect("msgId")[16..], 16)?;

    let back = |offset: i64, max: i32| {
        RemotingCommand::request(RequestCode::CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", offset)
            .with_ext("group", "rgrp")
            .with_ext("delayLevel", 0)
            .with_ext("originMsgId", uniq)
            .with_ext("originTopic", "BackTopic")
            .with_ext("unitMode", "false")
            .with_ext("maxReconsumeTimes", max)
    };
    assert_success(&c.request(back(offset, 16))?);
    // Level 0 -> 3 + reconsumeTimes = 3: parked in queue 2 of SCHEDULE_TOPIC_XXXX for 10 s.
    let r = c.pull(
        "rgrp",
        "SCHEDULE_TOPIC_XXXX",
        2,
        0,
        PULL_FLAG_SUBSCRIPTION,
        "*",
        0,
    )?;
    assert_success(&r);
    let retry = decode_records(&r.body)?.remove(0);
    assert_eq!(retry.property("REAL_TOPIC"), Some("%RETRY%rgrp"));
    assert_eq!(retry.property("REAL_QID"), Some("0"));
    assert_eq!(retry.body, b"retry me");
    assert_eq!(retry.reconsume_times, 1);
    assert_eq!(retry.property("RETRY_TOPIC"), Some("BackTopic"));
    assert_eq!(retry.property("UNIQ_KEY"), Some(uniq));
    assert_eq!(retry.property("DELAY"), Some("3"));

    // Sending the retry copy back with max 1 reached goes to the DLQ.
    assert_success(&c.request(back(i64::try_from(retry.commit_log_offset)?, 1))?);
    let r = c.pull("rgrp", "%DLQ%rgrp", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&r);
    let dead = decode_records(&r.body)?.remove(0);
    assert_eq!(dead.body, b"retry me");
    assert_eq!(dead.reconsume_times, 2);

    let r = c.request(back(999_999_999, 16))?;
    assert_eq!(r.code, ResponseCode::SYSTEM_ERROR, "{}", code_of(&r));
    Ok(())
}
