//! Transactional messages over real sockets (REMOTING.md §2.6, §7.6): a half message is parked
//! out of its consumers' sight; END_TRANSACTION commit makes it visible exactly once, rollback
//! never; an undecided half is checked back with a live producer of its group, whose answer
//! decides it; check-backs stop after `transactionCheckMax`; an undecided half survives a
//! crash. The broker runs with short transaction timers (`transactionTimeOut=500`,
//! `transactionCheckInterval=500`) so the whole file takes a few seconds.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use bytes::Bytes;
use common::*;

const SHORT_TIMERS: [&str; 2] = ["transactionTimeOut=500", "transactionCheckInterval=500"];
const TRANSACTION_PREPARED: i32 = 0x4;
const TRANSACTION_COMMIT: i32 = 0x8;
const TRANSACTION_ROLLBACK: i32 = 0xC;
const CONSUMER_GROUP: &str = "tx-test-consumer";

/// What the broker answered to a half message.
struct Half {
    tran_state_table_offset: i64,
    commit_log_offset: i64,
    msg_id: String,
    transaction_id: String,
}

/// Sends a half message (sysFlag PREPARED, `TRAN_MSG=true`, `PGROUP`) like a Java
/// TransactionMQProducer does, to queue 0 of `topic`.
fn send_half(c: &mut Client, topic: &str, body: &[u8], group: &str, uniq: &str) -> Result<Half> {
    let properties = props(&[
        ("TRAN_MSG", "true"),
        ("PGROUP", group),
        ("UNIQ_KEY", uniq),
        ("WAIT", "true"),
        ("TAGS", "tx"),
    ]);
    let cmd = RemotingCommand::request(RequestCode::SEND_MESSAGE)
        .with_ext("producerGroup", group)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 4)
        .with_ext("queueId", 0)
        .with_ext("sysFlag", TRANSACTION_PREPARED)
        .with_ext("bornTimestamp", now_ms())
        .with_ext("flag", 0)
        .with_ext("properties", properties)
        .with_ext("reconsumeTimes", 0)
        .with_ext("unitMode", "false")
        .with_body(Bytes::copy_from_slice(body));
    let r = c.request(cmd)?;
    assert_success(&r);
    let msg_id = r.ext("msgId").context("msgId")?.to_string();
    Ok(Half {
        tran_state_table_offset: ext_i64(&r, "queueOffset"),
        commit_log_offset: commit_log_offset_of(&msg_id)?,
        msg_id,
        transaction_id: r.ext("transactionId").context("transactionId")?.to_string(),
    })
}

/// The commitlog offset inside an offset message id (last 16 hex digits, IPv4 form).
fn commit_log_offset_of(msg_id: &str) -> Result<i64> {
    if msg_id.len() != 32 {
        bail!("not an IPv4 offset msgId: {msg_id}");
    }
    Ok(i64::from_str_radix(&msg_id[16..], 16)?)
}

/// END_TRANSACTION as the Java client sends it.
fn end_transaction(
    group: &str,
    tran_state_table_offset: i64,
    commit_log_offset: i64,
    commit_or_rollback: i32,
    is_from_check: bool,
    transaction_id: &str,
) -> RemotingCommand {
    RemotingCommand::request(RequestCode::END_TRANSACTION)
        .with_ext("producerGroup", group)
        .with_ext("tranStateTableOffset", tran_state_table_offset)
        .with_ext("commitLogOffset", commit_log_offset)
        .with_ext("commitOrRollback", commit_or_rollback)
        .with_ext("fromTransactionCheck", is_from_check)
        .with_ext("msgId", transaction_id)
        .with_ext("transactionId", transaction_id)
}

/// HEART_BEAT of a producer-only client in `group`.
fn producer_heartbeat(c: &mut Client, client_id: &str, group: &str) -> Result<()> {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [{"groupName": group}, {"groupName": "CLIENT_INNER_PRODUCER"}],
        "consumerDataSet": [],
        "heartbeatFingerprint": 0,
        "withoutSub": false
    });
    let r = c.request(
        RemotingCommand::request(RequestCode::HEART_BEAT).with_body(Bytes::from(body.to_string())),
    )?;
    assert_success(&r);
    Ok(())
}

/// Pulls (held, short suspends) until `topic` queue 0 has records at `offset`.
fn pull_until_found(c: &mut Client, topic: &str, offset: i64, timeout: Duration) -> Result<Bytes> {
    let deadline = Instant::now() + timeout;
    let flags = PULL_FLAG_SUBSCRIPTION | PULL_FLAG_SUSPEND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("nothing arrived in {topic}/0 at offset {offset} within {timeout:?}");
        }
        let suspend_ms = i64::try_from(left.as_millis().min(1_000))?.max(1);
        let r = c.pull(CONSUMER_GROUP, topic, 0, offset, flags, "*", suspend_ms)?;
        if r.code == ResponseCode::SUCCESS {
            return Ok(r.body);
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

/// A pull without suspend that must find nothing in `topic` queue 0 at `offset`.
fn assert_nothing_at(c: &mut Client, topic: &str, offset: i64) -> Result<()> {
    let r = c.pull(
        CONSUMER_GROUP,
        topic,
        0,
        offset,
        PULL_FLAG_SUBSCRIPTION,
        "*",
        0,
    )?;
    assert_ne!(
        r.code,
        ResponseCode::SUCCESS,
        "{topic}/0 at {offset} should be empty, got {:?}",
        decode_records(&r.body).map(|v| v.len())
    );
    Ok(())
}

/// Appends a plain message to `topic` queue 0 and returns its queue offset. A later sentinel:
/// every message written to that queue before it (a duplicate commit included) is counted in
/// its offset, with no waiting.
fn sentinel_offset(c: &mut Client, topic: &str) -> Result<i64> {
    let r = c.send_message(topic, 0, b"sentinel", &props(&[("TAGS", "sentinel")]))?;
    assert_success(&r);
    Ok(ext_i64(&r, "queueOffset"))
}

/// Sends a sentinel half in `group` (to a topic of its own) and waits for its check-back.
/// The check round walks the half queue in order, so a check-back due for any half stored
/// before the sentinel has been sent to `producer` (the group's only connection) before the
/// sentinel's: those are returned, the sentinel's own check is not.
fn checks_before_sentinel(
    producer: &mut Client,
    group: &str,
    uniq: &str,
) -> Result<Vec<RemotingCommand>> {
    let sentinel = send_half(producer, "TxSentinelTopic", b"sentinel", group, uniq)?;
    let txn = sentinel.transaction_id.clone();
    producer
        .wait_pushed_matching(
            RequestCode::CHECK_TRANSACTION_STATE,
            Duration::from_secs(15),
            |c| c.ext("transactionId") == Some(txn.as_str()),
        )?
        .context("no check-back for the sentinel half within 15 s")?;
    let (checks, other): (Vec<_>, Vec<_>) = std::mem::take(&mut producer.pushed)
        .into_iter()
        .partition(|c| c.code == RequestCode::CHECK_TRANSACTION_STATE);
    producer.pushed = other;
    Ok(checks
        .into_iter()
        .filter(|c| c.ext("transactionId") != Some(txn.as_str()))
        .collect())
}

/// The committed message: one record, the original body and properties minus the parking
/// ones, sysFlag COMMIT and PREPARED_TX_OFFSET pointing at the half.
fn assert_committed(body: &[u8], topic: &str, payload: &[u8], half: &Half) -> Result<()> {
    let records = decode_records(body)?;
    assert_eq!(records.len(), 1, "exactly one committed message");
    let r = &records[0];
    assert_eq!(r.topic, topic);
    assert_eq!(r.queue_id, 0);
    assert_eq!(r.queue_offset, 0);
    assert_eq!(r.body, payload);
    assert_eq!(r.property("TRAN_MSG"), None);
    assert_eq!(r.property("REAL_TOPIC"), None);
    assert_eq!(r.property("REAL_QID"), None);
    assert_eq!(r.property("TAGS"), Some("tx"));
    assert_eq!(r.property("UNIQ_KEY"), Some(half.transaction_id.as_str()));
    let view = engine::record::decode(body).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(view.sys_flag() & 0xC, TRANSACTION_COMMIT);
    assert_eq!(view.prepared_transaction_offset(), half.commit_log_offset);
    Ok(())
}

/// A half message is stored but not pullable from its topic; END_TRANSACTION commit (oneway)
/// makes it pullable, once: a repeated commit, from the producer or from a check answer, adds
/// nothing.
#[test]
fn committed_half_message_becomes_visible_exactly_once() -> Result<()> {
    let broker = Broker::start_with(&SHORT_TIMERS)?;
    let mut c = broker.client()?;
    let topic = "TxCommitTopic";
    let group = "tx-commit-group";
    let payload = b"order 42 paid";
    let half = send_half(
        &mut c,
        topic,
        payload,
        group,
        "0A000001000000000000000000C0FFEE",
    )?;
    assert_eq!(half.transaction_id, "0A000001000000000000000000C0FFEE");
    assert_nothing_at(&mut c, topic, 0)?;

    c.send_oneway(end_transaction(
        group,
        half.tran_state_table_offset,
        half.commit_log_offset,
        TRANSACTION_COMMIT,
        false,
        &half.transaction_id,
    ))?;
    let body = pull_until_found(&mut c, topic, 0, Duration::from_secs(10))?;
    assert_committed(&body, topic, payload, &half)?;

    // The same decision again (answered, not oneway), and once more as a check answer.
    for is_from_check in [false, true] {
        let r = c.request(end_transaction(
            group,
            half.tran_state_table_offset,
            half.commit_log_offset,
            TRANSACTION_COMMIT,
            is_from_check,
            &half.transaction_id,
        ))?;
        assert_success(&r);
    }
    // Each commit writes before it answers: a duplicate would be at offset 1, before this.
    assert_eq!(
        sentinel_offset(&mut c, topic)?,
        1,
        "a repeated commit wrote again"
    );
    Ok(())
}

/// END_TRANSACTION with the wrong producer group or offsets is refused and decides nothing.
#[test]
fn end_transaction_that_does_not_match_the_half_is_refused() -> Result<()> {
    let broker = Broker::start_with(&SHORT_TIMERS)?;
    let mut c = broker.client()?;
    let topic = "TxMismatchTopic";
    let group = "tx-mismatch-group";
    let half = send_half(
        &mut c,
        topic,
        b"x",
        group,
        "0A000001000000000000000000000BAD",
    )?;
    let wrong = [
        (
            "other-group",
            half.tran_state_table_offset,
            half.commit_log_offset,
        ),
        (
            group,
            half.tran_state_table_offset + 7,
            half.commit_log_offset,
        ),
        (
            group,
            half.tran_state_table_offset,
            half.commit_log_offset + 1,
        ),
    ];
    for (g, table_offset, log_offset) in wrong {
        let r = c.request(end_transaction(
            g,
            table_offset,
            log_offset,
            TRANSACTION_COMMIT,
            false,
            &half.transaction_id,
        ))?;
        assert_eq!(r.code, ResponseCode::SYSTEM_ERROR, "{}", code_of(&r));
    }
    assert_nothing_at(&mut c, topic, 0)?;
    // The right one still works afterwards.
    let r = c.request(end_transaction(
        group,
        half.tran_state_table_offset,
        half.commit_log_offset,
        TRANSACTION_COMMIT,
        false,
        &half.transaction_id,
    ))?;
    assert_success(&r);
    pull_until_found(&mut c, topic, 0, Duration::from_secs(10))?;
    Ok(())
}

/// Rollback: the message never shows up, no check-back is sent for it, and a later
/// contradicting commit is ignored (the first decision wins).
#[test]
fn rolled_back_half_message_is_never_visible_nor_checked() -> Result<()> {
    let broker = Broker::start_with(&SHORT_TIMERS)?;
    let group = "tx-rollback-group";
    let mut producer = broker.client()?;
    producer_heartbeat(&mut producer, "127.0.0.1@rollback", group)?;
    let topic = "TxRollbackTopic";
    let half = send_half(
        &mut producer,
        topic,
        b"cancelled",
        group,
        "0A0000010000000000000000000000AB",
    )?;
    let r = producer.request(end_transaction(
        group,
        half.tran_state_table_offset,
        half.commit_log_offset,
        TRANSACTION_ROLLBACK,
        false,
        &half.transaction_id,
    ))?;
    assert_success(&r);

    // Check rounds pass (timeout and interval are 0.5 s) until a later half is checked back:
    // the rolled back one, stored before it, never is.
    let checks = checks_before_sentinel(&mut producer, group, "0A0000010000000000000000000005E1")?;
    assert!(
        checks.is_empty(),
        "no check-back for a rolled back half: {checks:?}"
    );
    let r = producer.request(end_transaction(
        group,
        half.tran_state_table_offset,
        half.commit_log_offset,
        TRANSACTION_COMMIT,
        false,
        &half.transaction_id,
    ))?;
    assert_success(&r);
    let mut c = broker.client()?;
    assert_eq!(
        sentinel_offset(&mut c, topic)?,
        0,
        "the commit after the rollback wrote the message"
    );
    Ok(())
}

/// The fields of a CHECK_TRANSACTION_STATE request the test answers with.
struct Check {
    tran_state_table_offset: i64,
    commit_log_offset: i64,
    check_times: String,
}

/// Waits for a CHECK_TRANSACTION_STATE on `producer` and checks its shape against the half.
fn expect_check(producer: &mut Client, topic: &str, payload: &[u8], half: &Half) -> Result<Check> {
    let cmd = producer
        .wait_pushed(
            RequestCode::CHECK_TRANSACTION_STATE,
            Duration::from_secs(10),
        )?
        .context("no CHECK_TRANSACTION_STATE within 10 s")?;
    assert!(cmd.is_oneway(), "check-backs are oneway");
    assert_eq!(cmd.ext("msgId"), Some(half.transaction_id.as_str()));
    assert_eq!(cmd.ext("transactionId"), Some(half.transaction_id.as_str()));
    assert_eq!(cmd.ext("topic"), Some(topic));
    let tran_state_table_offset = ext_i64(&cmd, "tranStateTableOffset");
    let commit_log_offset = ext_i64(&cmd, "commitLogOffset");
    let offset_msg_id = cmd.ext("offsetMsgId").context("offsetMsgId")?;
    assert_eq!(commit_log_offset_of(offset_msg_id)?, commit_log_offset);
    assert_ne!(
        offset_msg_id, half.msg_id,
        "the check names the re-appended copy"
    );
    // The copy that is checked is a new record after the half.
    assert!(commit_log_offset > half.commit_log_offset);
    assert!(tran_state_table_offset > half.tran_state_table_offset);
    let records = decode_records(&cmd.body)?;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.topic, topic, "the body carries the real topic");
    assert_eq!(r.queue_id, 0);
    assert_eq!(r.body, payload);
    assert_eq!(r.commit_log_offset, u64::try_from(commit_log_offset)?);
    assert_eq!(r.property("UNIQ_KEY"), Some(half.transaction_id.as_str()));
    assert_eq!(r.property("TRAN_MSG"), Some("true"));
    assert!(r.property("PGROUP").is_some());
    Ok(Check {
        tran_state_table_offset,
        commit_log_offset,
        check_times: r
            .property("TRANSACTION_CHECK_TIMES")
            .context("TRANSACTION_CHECK_TIMES")?
            .to_string(),
    })
}

/// A producer that heartbeats with its group and leaves a half undecided is asked
/// (CHECK_TRANSACTION_STATE); its answer (END_TRANSACTION commit, fromTransactionCheck=true)
/// makes the message visible, once, and the checks stop.
#[test]
fn undecided_half_is_checked_back_and_committed_by_the_answer() -> Result<()> {
    let broker = Broker::start_with(&SHORT_TIMERS)?;
    let group = "tx-check-group";
    let mut producer = broker.client()?;
    producer_heartbeat(&mut producer, "127.0.0.1@check", group)?;
    let topic = "TxCheckTopic";
    let payload = b"did it commit?";
    let half = send_half(
        &mut producer,
        topic,
        payload,
        group,
        "0A00000100000000000000000000C4EC",
    )?;

    let check = expect_check(&mut producer, topic, payload, &half)?;
    assert_eq!(check.check_times, "1");
    let mut c = broker.client()?;
    assert_nothing_at(&mut c, topic, 0)?;
    producer.send_oneway(end_transaction(
        group,
        check.tran_state_table_offset,
        check.commit_log_offset,
        TRANSACTION_COMMIT,
        true,
        &half.transaction_id,
    ))?;
    let body = pull_until_found(&mut c, topic, 0, Duration::from_secs(10))?;
    let records = decode_records(&body)?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, payload);
    assert_eq!(records[0].property("TRAN_MSG"), None);

    let again = checks_before_sentinel(&mut producer, group, "0A00000100000000000000000000C4ED")?;
    assert!(
        again.is_empty(),
        "decided: no more check-backs, got {again:?}"
    );
    assert_eq!(sentinel_offset(&mut c, topic)?, 1, "committed twice");
    Ok(())
}

/// With `transactionCheckMax=2` an unanswered half is checked twice (check counts 1 and 2),
/// then dropped: no third check comes.
#[test]
fn unanswered_half_is_discarded_after_transaction_check_max() -> Result<()> {
    let broker = Broker::start_with(&[SHORT_TIMERS[0], SHORT_TIMERS[1], "transactionCheckMax=2"])?;
    let group = "tx-max-group";
    let mut producer = broker.client()?;
    producer_heartbeat(&mut producer, "127.0.0.1@max", group)?;
    let topic = "TxMaxTopic";
    let half = send_half(
        &mut producer,
        topic,
        b"?",
        group,
        "0A000001000000000000000000000AAA",
    )?;
    let first = expect_check(&mut producer, topic, b"?", &half)?;
    assert_eq!(first.check_times, "1");
    let second = expect_check(&mut producer, topic, b"?", &half)?;
    assert_eq!(second.check_times, "2");
    assert!(second.tran_state_table_offset > first.tran_state_table_offset);
    let third = checks_before_sentinel(&mut producer, group, "0A000001000000000000000000000AAB")?;
    assert!(third.is_empty(), "discarded after 2 checks, got {third:?}");
    let mut c = broker.client()?;
    assert_nothing_at(&mut c, topic, 0)?;
    Ok(())
}

/// An acknowledged half survives a crash (SIGKILL) undecided: after the restart its producer
/// is asked about it and its commit makes the message visible exactly once.
#[test]
fn undecided_half_survives_a_crash_and_is_checked_after_it() -> Result<()> {
    let mut broker = Broker::start_with(&SHORT_TIMERS)?;
    let group = "tx-crash-group";
    let topic = "TxCrashTopic";
    let payload = b"survivor";
    let half = {
        let mut c = broker.client()?;
        send_half(
            &mut c,
            topic,
            payload,
            group,
            "0A000001000000000000000000C0A5A0",
        )?
    };
    broker.crash_restart()?;

    let mut producer = broker.client()?;
    producer_heartbeat(&mut producer, "127.0.0.1@crash", group)?;
    let check = expect_check(&mut producer, topic, payload, &half)?;
    producer.send_oneway(end_transaction(
        group,
        check.tran_state_table_offset,
        check.commit_log_offset,
        TRANSACTION_COMMIT,
        true,
        &half.transaction_id,
    ))?;
    let mut c = broker.client()?;
    let body = pull_until_found(&mut c, topic, 0, Duration::from_secs(10))?;
    assert_eq!(decode_records(&body)?.len(), 1);
    // Copies put back while no producer was online may still be checked (all of them before
    // a later sentinel half is): answering them is harmless, the transaction is decided.
    for late in checks_before_sentinel(&mut producer, group, "0A000001000000000000000000C0A5A1")? {
        assert_eq!(
            late.ext("transactionId"),
            Some(half.transaction_id.as_str())
        );
        let r = producer.request(end_transaction(
            group,
            ext_i64(&late, "tranStateTableOffset"),
            ext_i64(&late, "commitLogOffset"),
            TRANSACTION_COMMIT,
            true,
            &half.transaction_id,
        ))?;
        assert_success(&r);
    }
    assert_eq!(sentinel_offset(&mut c, topic)?, 1, "committed twice");
    Ok(())
}
