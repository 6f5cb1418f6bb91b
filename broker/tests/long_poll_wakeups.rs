//! Long-poll wake-ups from the write paths other than a plain send, on a real `petrel`
//! process: a pull held on an empty queue (SUSPEND, 20 s timeout, the most the broker allows)
//! is answered with the new messages promptly after
//! - a SEND_BATCH_MESSAGE to its queue,
//! - a delayed message (DELAY=1, 1 s) becoming due and delivered into its queue,
//! - END_TRANSACTION committing a half message of its queue.
//!
//! Each test first waits until the broker's `petrel_held_pulls` gauge shows the pull held, so
//! the event cannot race the hold; "promptly" is far below the suspend timeout, so a path that
//! forgot to wake held pulls answers only at the timeout and fails the test.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::{RemotingCommand, RequestCode};
use bytes::Bytes;
use common::*;

/// The held pull's suspend timeout (the broker's maximum).
const SUSPEND_MS: i64 = 20_000;
/// A woken pull answers within this of its event; a missed wake-up answers only at the
/// 20 s suspend timeout. Generous for a busy machine.
const PROMPT: Duration = Duration::from_secs(8);
const GROUP: &str = "wakeup-group";
const TRANSACTION_PREPARED: i32 = 0x4;
const TRANSACTION_COMMIT: i32 = 0x8;

/// A broker with its metrics endpoint on; returns it and that endpoint's address.
fn start_broker() -> Result<(Broker, SocketAddr)> {
    let metrics_port = free_port()?;
    let conf = format!("metricsPort={metrics_port}");
    let broker = Broker::start_with(&[&conf])?;
    Ok((broker, SocketAddr::from(([127, 0, 0, 1], metrics_port))))
}

/// The shard's `petrel_held_pulls` gauge, scraped over HTTP.
fn held_pulls(metrics: SocketAddr) -> Result<u64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(5))
        .with_context(|| format!("connect {metrics}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: petrel\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let series = "petrel_held_pulls{shard=\"0\"} ";
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .with_context(|| format!("no {series} in:\n{text}"))?
        .trim()
        .parse()
        .context("held pulls value")
}

/// A pull of `topic`/`queue_id` at offset 0 sent on its own connection, returned once the
/// broker shows it held.
fn hold_pull(
    broker: &Broker,
    metrics: SocketAddr,
    topic: &str,
    queue_id: i32,
) -> Result<(Client, i32)> {
    let mut consumer = broker.client()?;
    let flags = PULL_FLAG_SUBSCRIPTION | PULL_FLAG_SUSPEND;
    let opaque = consumer.send(pull_request(
        GROUP, topic, queue_id, 0, flags, "*", SUSPEND_MS,
    ))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while held_pulls(metrics)? != 1 {
        if Instant::now() > deadline {
            bail!("the pull of {topic}/{queue_id} was not held within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((consumer, opaque))
}

/// The held pull's answer, with how long after `event` it came; it must be a SUCCESS well
/// before the suspend timeout.
fn woken_answer(
    consumer: &mut Client,
    opaque: i32,
    event: Instant,
    what: &str,
) -> Result<(Vec<Record>, Duration)> {
    let r = consumer.wait_response(opaque, Duration::from_millis(SUSPEND_MS as u64 + 10_000))?;
    let after = event.elapsed();
    assert_success(&r);
    assert!(
        after < PROMPT,
        "the held pull answered {after:?} after {what}: it waited for its {SUSPEND_MS} ms \
         suspend timeout instead of being woken"
    );
    Ok((decode_records(&r.body)?, after))
}

/// SEND_BATCH_MESSAGE body (MessageDecoder.encodeMessages): per entry total size, magic,
/// body CRC, flag, body length, body, properties length, properties.
fn batch_body(entries: &[(&[u8], String)]) -> Bytes {
    let mut out = Vec::new();
    for (body, properties) in entries {
        let total = 4 * 5 + body.len() + 2 + properties.len();
        out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // magic
        out.extend_from_slice(&0i32.to_be_bytes()); // body CRC
        out.extend_from_slice(&0i32.to_be_bytes()); // flag
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(
            &u16::try_from(properties.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(properties.as_bytes());
    }
    Bytes::from(out)
}

/// A held pull is answered by a batch sent to its queue, with every message of the batch.
#[test]
fn held_pull_is_woken_by_a_batch_send() -> Result<()> {
    let (broker, metrics) = start_broker()?;
    let topic = "WakeBatch";
    let mut producer = broker.client()?;
    // Creates the topic; queue 0 stays empty.
    assert_success(&producer.send_message(topic, 1, b"elsewhere", "")?);
    let (mut consumer, opaque) = hold_pull(&broker, metrics, topic, 0)?;

    let bodies: [&[u8]; 3] = [b"batch-0", b"batch-1", b"batch-2"];
    let entries: Vec<(&[u8], String)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                *b,
                props(&[("UNIQ_KEY", &format!("0A00000100000000000000000000B0{i:02}"))]),
            )
        })
        .collect();
    let req = RemotingCommand::request(RequestCode::SEND_BATCH_MESSAGE)
        .with_ext("a", "wakeup-producer")
        .with_ext("b", topic)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", 0)
        .with_ext("f", 0)
        .with_ext("g", now_ms())
        .with_ext("h", 0)
        .with_ext("i", "")
        .with_ext("m", "true")
        .with_body(batch_body(&entries));
    let sent = Instant::now();
    assert_success(&producer.request(req)?);

    let (records, _) = woken_answer(&mut consumer, opaque, sent, "the batch send")?;
    let got: Vec<&[u8]> = records.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(got, bodies.to_vec());
    assert!(records.iter().all(|r| r.topic == topic && r.queue_id == 0));
    Ok(())
}

/// A held pull is answered when a DELAY=1 message sent to its queue becomes due (about 1 s
/// later) and is delivered there; the parked send itself leaves the pull held.
#[test]
fn held_pull_is_woken_by_a_delayed_message_becoming_due() -> Result<()> {
    let (broker, metrics) = start_broker()?;
    let topic = "WakeDelay";
    let mut producer = broker.client()?;
    assert_success(&producer.send_message(topic, 1, b"elsewhere", "")?);
    let (mut consumer, opaque) = hold_pull(&broker, metrics, topic, 0)?;

    let uniq = "0A0000010000000000000000000000DE";
    let sent = Instant::now();
    assert_success(&producer.send_message(
        topic,
        0,
        b"due in a second",
        &props(&[("DELAY", "1"), ("UNIQ_KEY", uniq)]),
    )?);
    // Parked in the schedule topic: the pull is still held once the send is answered.
    assert_eq!(held_pulls(metrics)?, 1, "the parked send answered the pull");

    let (records, after) = woken_answer(&mut consumer, opaque, sent, "the delayed send")?;
    assert!(
        after + Duration::from_millis(50) >= Duration::from_secs(1),
        "delivered after only {after:?}"
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let m = &records[0];
    assert_eq!(
        (m.topic.as_str(), m.queue_id, m.queue_offset),
        (topic, 0, 0)
    );
    assert_eq!(m.body, b"due in a second");
    assert_eq!(m.property("UNIQ_KEY"), Some(uniq));
    assert_eq!(m.property("DELAY"), None);
    Ok(())
}

/// A held pull is answered when END_TRANSACTION commits a half message of its queue; the
/// half message itself leaves the pull held.
#[test]
fn held_pull_is_woken_by_a_transaction_commit() -> Result<()> {
    let (broker, metrics) = start_broker()?;
    let topic = "WakeCommit";
    let group = "wakeup-tx-producer";
    let mut producer = broker.client()?;
    assert_success(&producer.send_message(topic, 1, b"elsewhere", "")?);
    let (mut consumer, opaque) = hold_pull(&broker, metrics, topic, 0)?;

    // The half message, as a Java TransactionMQProducer sends it.
    let uniq = "0A000001000000000000000000C0FFEE";
    let half = producer.request(
        RemotingCommand::request(RequestCode::SEND_MESSAGE)
            .with_ext("producerGroup", group)
            .with_ext("topic", topic)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("defaultTopicQueueNums", 4)
            .with_ext("queueId", 0)
            .with_ext("sysFlag", TRANSACTION_PREPARED)
            .with_ext("bornTimestamp", now_ms())
            .with_ext("flag", 0)
            .with_ext(
                "properties",
                props(&[("TRAN_MSG", "true"), ("PGROUP", group), ("UNIQ_KEY", uniq)]),
            )
            .with_ext("reconsumeTimes", 0)
            .with_ext("unitMode", "false")
            .with_body(Bytes::from_static(b"paid")),
    )?;
    assert_success(&half);
    assert_eq!(
        held_pulls(metrics)?,
        1,
        "the half message answered the pull"
    );
    let msg_id = half.ext("msgId").context("msgId")?;
    // An IPv4 offset message id ends with the commitlog offset in 16 hex digits.
    let commit_log_offset = i64::from_str_radix(msg_id.get(16..).context("msgId")?, 16)?;

    let committed = Instant::now();
    producer.send_oneway(
        RemotingCommand::request(RequestCode::END_TRANSACTION)
            .with_ext("producerGroup", group)
            .with_ext("tranStateTableOffset", ext_i64(&half, "queueOffset"))
            .with_ext("commitLogOffset", commit_log_offset)
            .with_ext("commitOrRollback", TRANSACTION_COMMIT)
            .with_ext("fromTransactionCheck", false)
            .with_ext("msgId", uniq)
            .with_ext("transactionId", uniq),
    )?;

    let (records, _) = woken_answer(&mut consumer, opaque, committed, "the commit")?;
    assert_eq!(records.len(), 1, "{records:?}");
    let m = &records[0];
    assert_eq!(
        (m.topic.as_str(), m.queue_id, m.queue_offset),
        (topic, 0, 0)
    );
    assert_eq!(m.body, b"paid");
    assert_eq!(m.property("UNIQ_KEY"), Some(uniq));
    assert_eq!(m.property("TRAN_MSG"), None);
    Ok(())
}
