//! Offsets: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30),
//! GET_MIN_OFFSET (31), SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME (32),
//! commit through PULL's COMMIT_OFFSET flag, and committed offsets surviving a restart.

mod common;

use anyhow::Result;
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use common::*;

fn query(group: &str, topic: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
}

fn update(group: &str, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("commitOffset", offset)
}

fn queue_request(code: i32, topic: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(code)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
}

/// Update then query; QUERY_NOT_FOUND only when the client forbids the zero default.
#[test]
fn update_and_query_consumer_offset() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.send_message("OffTopic", 0, b"x", "")?);
    // Nothing committed, queue starts at 0: offset 0 (REMOTING.md §7.2 simple rule).
    assert_eq!(
        c.offset_request(query("g", "OffTopic", 0))?,
        (ResponseCode::SUCCESS, Some(0))
    );
    let r = c.request(query("g", "OffTopic", 0).with_ext("setZeroIfNotFound", "false"))?;
    assert_eq!(r.code, ResponseCode::QUERY_NOT_FOUND, "{}", code_of(&r));

    assert_success(&c.request(update("g", "OffTopic", 0, 1))?);
    assert_eq!(
        c.offset_request(query("g", "OffTopic", 0))?,
        (ResponseCode::SUCCESS, Some(1))
    );
    // Oneway update (as Java clients send every 5 s): no answer, but applied.
    c.send_oneway(update("g", "OffTopic", 2, 7))?;
    assert_eq!(
        c.offset_request(query("g", "OffTopic", 2))?,
        (ResponseCode::SUCCESS, Some(7))
    );
    // Unknown topic.
    let r = c.request(update("g", "NoSuchTopic", 0, 1))?;
    assert_eq!(r.code, ResponseCode::TOPIC_NOT_EXIST, "{}", code_of(&r));
    Ok(())
}

/// GET_MAX_OFFSET / GET_MIN_OFFSET / SEARCH_OFFSET_BY_TIMESTAMP / GET_EARLIEST_MSG_STORETIME.
#[test]
fn min_max_and_timestamp_offsets() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let (code, max) = c.offset_request(queue_request(RequestCode::GET_MAX_OFFSET, "MinMax", 0))?;
    assert_eq!(
        (code, max),
        (ResponseCode::SUCCESS, Some(0)),
        "unknown queue has max 0"
    );

    let before = now_ms();
    for i in 0..3 {
        assert_success(&c.send_message("MinMax", 0, format!("m{i}").as_bytes(), "")?);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let middle = now_ms();
    std::thread::sleep(std::time::Duration::from_millis(20));
    for i in 3..5 {
        assert_success(&c.send_message("MinMax", 0, format!("m{i}").as_bytes(), "")?);
    }
    let max = c.offset_request(queue_request(RequestCode::GET_MAX_OFFSET, "MinMax", 0))?;
    assert_eq!(max, (ResponseCode::SUCCESS, Some(5)));
    let min = c.offset_request(queue_request(RequestCode::GET_MIN_OFFSET, "MinMax", 0))?;
    assert_eq!(min, (ResponseCode::SUCCESS, Some(0)));

    let search = |ts: i64| {
        queue_request(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, "MinMax", 0)
            .with_ext("timestamp", ts)
    };
    assert_eq!(
        c.offset_request(search(before - 1000))?,
        (ResponseCode::SUCCESS, Some(0))
    );
    assert_eq!(
        c.offset_request(search(middle))?,
        (ResponseCode::SUCCESS, Some(3))
    );
    assert_eq!(
        c.offset_request(search(now_ms() + 60_000))?,
        (ResponseCode::SUCCESS, Some(5))
    );

    let r = c.request(queue_request(
        RequestCode::GET_EARLIEST_MSG_STORETIME,
        "MinMax",
        0,
    ))?;
    assert_success(&r);
    let ts = ext_i64(&r, "timestamp");
    assert!(
        ts >= before - 1000 && ts <= middle,
        "earliest store time {ts}"
    );
    Ok(())
}

/// A pull with COMMIT_OFFSET records commitOffset; committed offsets survive a restart, and
/// so do the messages.
#[test]
fn offsets_survive_restart() -> Result<()> {
    let mut broker = Broker::start()?;
    {
        let mut c = broker.client()?;
        for i in 0..4 {
            assert_success(&c.send_message("Durable", 1, format!("m{i}").as_bytes(), "")?);
        }
        assert_success(&c.request(update("g1", "Durable", 1, 3))?);
        let mut pull = pull_request(
            "g2",
            "Durable",
            1,
            2,
            PULL_FLAG_SUBSCRIPTION | PULL_FLAG_COMMIT,
            "*",
            0,
        );
        pull.ext_fields
            .insert("commitOffset".to_string(), "2".to_string());
        assert_success(&c.request(pull)?);
        assert_eq!(
            c.offset_request(query("g2", "Durable", 1))?,
            (ResponseCode::SUCCESS, Some(2))
        );
    }
    broker.restart()?;
    let mut c = broker.client()?;
    let r = c.offset_request(query("g1", "Durable", 1).with_ext("setZeroIfNotFound", "false"))?;
    assert_eq!(r, (ResponseCode::SUCCESS, Some(3)));
    let r = c.offset_request(query("g2", "Durable", 1).with_ext("setZeroIfNotFound", "false"))?;
    assert_eq!(r, (ResponseCode::SUCCESS, Some(2)));
    let pulled = c.pull("g1", "Durable", 1, 3, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&pulled);
    assert_eq!(decode_records(&pulled.body)?[0].body, b"m3");
    Ok(())
}
