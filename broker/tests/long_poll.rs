//! Long polling (REMOTING.md §7.1): a PULL with SUSPEND and nothing new is held until an
//! append to its queue wakes it, or until its suspend timeout; other requests on the same
//! connection are answered meanwhile. Whether a pull is held is read from the broker's
//! held-pull count (GET_BROKER_RUNTIME_INFO), not inferred from a quiet period.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use common::*;

/// Pulls held for long polling right now on `c`'s shard (GET_BROKER_RUNTIME_INFO).
fn held_pulls(c: &mut Client) -> Result<i64> {
    let r = c.request(RemotingCommand::request(
        RequestCode::GET_BROKER_RUNTIME_INFO,
    ))?;
    assert_success(&r);
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    let n = v["table"]["heldPullCount"]
        .as_str()
        .with_context(|| format!("no heldPullCount in {v}"))?;
    Ok(n.parse()?)
}

/// Waits (bounded) until `c`'s shard holds `n` pulls.
fn wait_held(c: &mut Client, n: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = held_pulls(c)?;
        if held == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{held} pulls held after 10 s, expected {n}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A held pull is answered by the append from another connection, well before its timeout.
/// That it is held, and stays held through other traffic, is read from the broker's held-pull
/// count; that it was not answered early shows in its one answer, which carries the message
/// appended last.
#[test]
fn held_pull_is_woken_by_an_append_to_its_queue() -> Result<()> {
    let broker = Broker::start()?;
    let mut producer = broker.client()?;
    assert_success(&producer.send_message("LpTopic", 0, b"first", "")?);
    assert_eq!(held_pulls(&mut producer)?, 0);
    let mut consumer = broker.client()?;
    let flags = PULL_FLAG_SUBSCRIPTION | PULL_FLAG_SUSPEND;
    // Suspended for 60 s: an answer within the 30 s waited below can only come from a wake-up.
    let opaque = consumer.send(pull_request("g", "LpTopic", 0, 1, flags, "*", 60_000))?;
    wait_held(&mut producer, 1)?;

    // Another request on the same connection is answered while the pull is held.
    let max = consumer.request(
        RemotingCommand::request(RequestCode::GET_MAX_OFFSET)
            .with_ext("topic", "LpTopic")
            .with_ext("queueId", 0),
    )?;
    assert_eq!(max.ext("offset"), Some("1"));
    // An append to a different queue does not wake it (the send is answered after the wake-ups
    // of its append are done).
    assert_success(&producer.send_message("LpTopic", 1, b"other queue", "")?);
    assert_eq!(held_pulls(&mut producer)?, 1, "woken by another queue");
    assert!(
        consumer.early_responses().is_empty(),
        "pull answered early: {:?}",
        consumer.early_responses()
    );

    assert_success(&producer.send_message("LpTopic", 0, b"second", "")?);
    let r = consumer.wait_response(opaque, Duration::from_secs(30))?;
    assert_success(&r);
    let records = decode_records(&r.body)?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, b"second");
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 2);
    wait_held(&mut producer, 0)?;
    Ok(())
}

/// With no append, the held pull answers PULL_NOT_FOUND after its suspend timeout.
#[test]
fn held_pull_times_out_with_pull_not_found() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let flags = PULL_FLAG_SUBSCRIPTION | PULL_FLAG_SUSPEND;
    // A fresh, empty queue of an existing topic: offset 0 = max.
    assert_success(&c.send_message("LpTimeout", 1, b"x", "")?);
    let started = Instant::now();
    let r = c.pull("g", "LpTimeout", 0, 0, flags, "*", 1_000)?;
    let waited = started.elapsed();
    assert_eq!(r.code, ResponseCode::PULL_NOT_FOUND, "{}", code_of(&r));
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 0);
    assert!(
        waited >= Duration::from_millis(900),
        "answered after only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    Ok(())
}

/// Without the SUSPEND flag a pull with nothing new answers at once.
#[test]
fn pull_without_suspend_answers_at_once() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.send_message("LpNoSuspend", 0, b"x", "")?);
    let started = Instant::now();
    let r = c.pull(
        "g",
        "LpNoSuspend",
        0,
        1,
        PULL_FLAG_SUBSCRIPTION,
        "*",
        15_000,
    )?;
    assert_eq!(r.code, ResponseCode::PULL_NOT_FOUND, "{}", code_of(&r));
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}
