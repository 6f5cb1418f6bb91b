//! Send and pull over real sockets against a real `petrel`: SEND_MESSAGE (10),
//! SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), PULL_MESSAGE (11) with its status table
//! (REMOTING.md §7.3), tag filtering, VIEW_MESSAGE_BY_ID (33), QUERY_MESSAGE (12), and the
//! error answers (oversized body, bad topic, unknown request code).

mod common;

use anyhow::Result;
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use bytes::Bytes;
use common::*;

/// Sends with code 10, pulls it back, and checks every header field and stored field.
#[test]
fn send_message_then_pull_returns_the_same_record() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let p = props(&[
        ("TAGS", "TagA"),
        ("KEYS", "k1"),
        ("UNIQ_KEY", "ABCDEF0123456789ABCDEF0123456789"),
    ]);
    let r = c.send_message("SendPullTopic", 1, b"hello petrel", &p)?;
    assert_success(&r);
    assert_eq!(r.ext("queueId"), Some("1"));
    assert_eq!(r.ext("queueOffset"), Some("0"));
    assert_eq!(
        r.ext("transactionId"),
        Some("ABCDEF0123456789ABCDEF0123456789")
    );
    assert_eq!(r.ext("MSG_REGION"), Some("DefaultRegion"));
    assert_eq!(r.ext("TRACE_ON"), Some("true"));
    let msg_id = r.ext("msgId").expect("msgId").to_string();
    assert_eq!(msg_id.len(), 32, "IPv4 offset msgId is 32 hex chars");
    // 127.0.0.1 then the port, upper-case hex.
    assert!(
        msg_id.starts_with(&format!("7F000001{:08X}", broker.port)),
        "{msg_id}"
    );

    let second = c.send_message("SendPullTopic", 1, b"second", &props(&[("TAGS", "TagB")]))?;
    assert_success(&second);
    assert_eq!(second.ext("queueOffset"), Some("1"));

    let pulled = c.pull("g1", "SendPullTopic", 1, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&pulled);
    assert_eq!(pulled.remark.as_deref(), Some("FOUND"));
    assert_eq!(ext_i64(&pulled, "nextBeginOffset"), 2);
    assert_eq!(ext_i64(&pulled, "minOffset"), 0);
    assert_eq!(ext_i64(&pulled, "maxOffset"), 2);
    assert_eq!(ext_i64(&pulled, "suggestWhichBrokerId"), 0);
    let records = decode_records(&pulled.body)?;
    assert_eq!(records.len(), 2);
    let first = &records[0];
    assert_eq!(first.body, b"hello petrel");
    assert_eq!(first.topic, "SendPullTopic");
    assert_eq!((first.queue_id, first.queue_offset), (1, 0));
    assert_eq!(first.property("TAGS"), Some("TagA"));
    assert_eq!(first.property("KEYS"), Some("k1"));
    assert_eq!(first.property("CLUSTER"), Some("TestCluster"));
    assert_eq!(first.store_host, broker.addr());
    assert_eq!(first.born_host, c.local_addr()?);
    // The broker adds a UNIQ_KEY when the producer did not (as the Java 5.x broker does).
    assert!(records[1]
        .property("UNIQ_KEY")
        .is_some_and(|k| k.len() == 32));
    // msgId encodes the record's commitlog offset.
    assert_eq!(&msg_id[16..], format!("{:016X}", first.commit_log_offset));
    Ok(())
}

/// SEND_MESSAGE_V2 (short names) lands in the queue it names; queueId -1 picks one.
#[test]
fn send_message_v2_uses_short_header_names() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let r = c.send_message_v2("V2Topic", 2, b"v2 body", &props(&[("TAGS", "x")]))?;
    assert_success(&r);
    assert_eq!(r.ext("queueId"), Some("2"));
    let r = c.send_message_v2("V2Topic", -1, b"any queue", "")?;
    assert_success(&r);
    let q: i32 = r.ext("queueId").expect("queueId").parse()?;
    assert!(
        (0..4).contains(&q),
        "auto-created topic has 4 queues, got {q}"
    );
    let pulled = c.pull("g", "V2Topic", 2, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&pulled);
    assert_eq!(decode_records(&pulled.body)?[0].body, b"v2 body");
    Ok(())
}

fn batch_body(messages: &[(&[u8], String)]) -> Bytes {
    let mut out = Vec::new();
    for (body, p) in messages {
        let total = 22 + body.len() + p.len();
        out.extend_from_slice(&i32::try_from(total).expect("small").to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&i32::try_from(body.len()).expect("small").to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&i16::try_from(p.len()).expect("small").to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    Bytes::from(out)
}

/// SEND_BATCH_MESSAGE stores one record per entry at consecutive offsets and answers
/// comma-joined msgIds.
#[test]
fn send_batch_message_stores_each_entry() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let entries: Vec<(&[u8], String)> = vec![
        (b"one", props(&[("UNIQ_KEY", "U1"), ("TAGS", "a")])),
        (b"two", props(&[("UNIQ_KEY", "U2")])),
        (b"three", props(&[("UNIQ_KEY", "U3")])),
    ];
    let req = RemotingCommand::request(RequestCode::SEND_BATCH_MESSAGE)
        .with_ext("a", "p")
        .with_ext("b", "BatchTopic")
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", 0)
        .with_ext("f", 0)
        .with_ext("g", now_ms())
        .with_ext("h", 0)
        .with_ext("i", "")
        .with_ext("m", "true")
        .with_body(batch_body(&entries));
    let r = c.request(req)?;
    assert_success(&r);
    assert_eq!(r.ext("queueOffset"), Some("0"));
    let ids: Vec<&str> = r.ext("msgId").expect("msgId").split(',').collect();
    assert_eq!(ids.len(), 3);
    let pulled = c.pull("g", "BatchTopic", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    let records = decode_records(&pulled.body)?;
    let bodies: Vec<&[u8]> = records.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"one"[..], b"two", b"three"]);
    assert_eq!(records[2].queue_offset, 2);
    assert_eq!(records[1].property("UNIQ_KEY"), Some("U2"));
    for (id, rec) in ids.iter().zip(&records) {
        assert_eq!(&id[16..], format!("{:016X}", rec.commit_log_offset));
    }
    // A malformed batch body is MESSAGE_ILLEGAL.
    let bad = RemotingCommand::request(RequestCode::SEND_BATCH_MESSAGE)
        .with_ext("b", "BatchTopic")
        .with_ext("e", 0)
        .with_body(Bytes::from_static(&[0, 0, 0, 99, 1, 2, 3]));
    assert_eq!(c.request(bad)?.code, ResponseCode::MESSAGE_ILLEGAL);
    Ok(())
}

/// A body above maxMessageSize is MESSAGE_ILLEGAL and nothing is stored.
#[test]
fn oversized_body_is_message_illegal() -> Result<()> {
    let broker = Broker::start_with(&["maxMessageSize=1024"])?;
    let mut c = broker.client()?;
    let r = c.send_message("BigTopic", 0, &vec![7u8; 1025], "")?;
    assert_eq!(r.code, ResponseCode::MESSAGE_ILLEGAL, "{}", code_of(&r));
    let r = c.send_message("BigTopic", 0, &vec![7u8; 1024], "")?;
    assert_success(&r);
    assert_eq!(r.ext("queueOffset"), Some("0"));
    Ok(())
}

/// Bad topic names and system topics are refused; unknown codes are not supported.
#[test]
fn bad_topics_and_unknown_codes_get_their_errors() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let r = c.send_message("bad topic!", 0, b"x", "")?;
    assert_eq!(r.code, ResponseCode::INVALID_PARAMETER, "{}", code_of(&r));
    let r = c.send_message(&"t".repeat(128), 0, b"x", "")?;
    assert_eq!(r.code, ResponseCode::INVALID_PARAMETER, "{}", code_of(&r));
    let r = c.send_message("SCHEDULE_TOPIC_XXXX", 0, b"x", "")?;
    assert_eq!(r.code, ResponseCode::NO_PERMISSION, "{}", code_of(&r));
    let r = c.send_message("QueueRange", 99, b"x", "")?;
    assert_eq!(r.code, ResponseCode::INVALID_PARAMETER, "{}", code_of(&r));

    let r = c.request(RemotingCommand::request(9999))?;
    assert_eq!(r.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        r.remark.as_deref(),
        Some(" request type 9999 not supported")
    );
    // Pull from a topic that does not exist.
    let r = c.pull("g", "NoSuchTopic", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::TOPIC_NOT_EXIST, "{}", code_of(&r));
    Ok(())
}

/// Tag filtering: the queue's tag hash first, then the exact tag; a pull whose scanned
/// entries all miss answers PULL_RETRY_IMMEDIATELY with an advanced nextBeginOffset.
#[test]
fn tag_filter_returns_only_matching_messages() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    for (i, tag) in ["TagA", "TagB", "TagC", "TagA"].iter().enumerate() {
        let r = c.send_message(
            "TagTopic",
            0,
            format!("m{i}").as_bytes(),
            &props(&[("TAGS", tag)]),
        )?;
        assert_success(&r);
    }
    c.send_message("TagTopic", 0, b"untagged", "")?;
    let r = c.pull(
        "g",
        "TagTopic",
        0,
        0,
        PULL_FLAG_SUBSCRIPTION,
        "TagA || TagC",
        0,
    )?;
    assert_success(&r);
    let bodies: Vec<Vec<u8>> = decode_records(&r.body)?
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, vec![b"m0".to_vec(), b"m2".to_vec(), b"m3".to_vec()]);
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 5);

    let r = c.pull(
        "g",
        "TagTopic",
        0,
        0,
        PULL_FLAG_SUBSCRIPTION,
        "NoSuchTag",
        0,
    )?;
    assert_eq!(
        r.code,
        ResponseCode::PULL_RETRY_IMMEDIATELY,
        "{}",
        code_of(&r)
    );
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 5);
    Ok(())
}

/// Illegal offsets answer per REMOTING.md §7.3 with the offset to use.
#[test]
fn illegal_offsets_get_rocketmq_answers() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    for i in 0..3 {
        assert_success(&c.send_message("OffsetTopic", 0, format!("m{i}").as_bytes(), "")?);
    }
    // o = max: nothing new (no hold without SUSPEND).
    let r = c.pull("g", "OffsetTopic", 0, 3, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::PULL_NOT_FOUND, "{}", code_of(&r));
    assert_eq!(r.remark.as_deref(), Some("OFFSET_OVERFLOW_ONE"));
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 3);
    // o > max: moved, use max.
    let r = c.pull("g", "OffsetTopic", 0, 10, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::PULL_OFFSET_MOVED, "{}", code_of(&r));
    assert_eq!(r.remark.as_deref(), Some("OFFSET_OVERFLOW_BADLY"));
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 3);
    // Empty queue, o != 0: moved to 0.
    let r = c.pull("g", "OffsetTopic", 1, 5, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::PULL_OFFSET_MOVED, "{}", code_of(&r));
    assert_eq!(ext_i64(&r, "nextBeginOffset"), 0);
    // Empty queue, o = 0: not found.
    let r = c.pull("g", "OffsetTopic", 1, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::PULL_NOT_FOUND, "{}", code_of(&r));
    // Queue id beyond the topic's read queues.
    let r = c.pull("g", "OffsetTopic", 50, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::INVALID_PARAMETER, "{}", code_of(&r));
    Ok(())
}

/// VIEW_MESSAGE_BY_ID returns the record at a commitlog offset; QUERY_MESSAGE finds by key.
#[test]
fn view_and_query_message_find_stored_records() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let uniq = "0A0000010000000000000000000000AB";
    let r = c.send_message(
        "ViewTopic",
        0,
        b"findme",
        &props(&[("KEYS", "order-42"), ("UNIQ_KEY", uniq)]),
    )?;
    assert_success(&r);
    let msg_id = r.ext("msgId").expect("msgId");
    let offset = i64::from_str_radix(&msg_id[16..], 16)?;

    let view = c.request(
        RemotingCommand::request(RequestCode::VIEW_MESSAGE_BY_ID).with_ext("offset", offset),
    )?;
    assert_success(&view);
    let records = decode_records(&view.body)?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, b"findme");
    let missing = c.request(
        RemotingCommand::request(RequestCode::VIEW_MESSAGE_BY_ID)
            .with_ext("offset", offset + 1_000_000),
    )?;
    assert_eq!(
        missing.code,
        ResponseCode::SYSTEM_ERROR,
        "{}",
        code_of(&missing)
    );

    let query = |key: &str, unique: bool| {
        RemotingCommand::request(RequestCode::QUERY_MESSAGE)
            .with_ext("topic", "ViewTopic")
            .with_ext("key", key)
            .with_ext("maxNum", 32)
            .with_ext("beginTimestamp", 0)
            .with_ext("endTimestamp", i64::MAX)
            .with_ext("_UNIQUE_KEY_QUERY", unique)
    };
    let by_key = c.request(query("order-42", false))?;
    assert_success(&by_key);
    assert_eq!(decode_records(&by_key.body)?[0].body, b"findme");
    let by_uniq = c.request(query(uniq, true))?;
    assert_success(&by_uniq);
    let none = c.request(query("no-such-key", false))?;
    assert_eq!(
        none.code,
        ResponseCode::QUERY_NOT_FOUND,
        "{}",
        code_of(&none)
    );
    Ok(())
}
