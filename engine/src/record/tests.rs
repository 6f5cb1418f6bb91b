use std::net::SocketAddr;

use super::*;
use crate::QueueId;

fn msg<'a>(body: &'a [u8], props: &'a str, born: SocketAddr, store: SocketAddr) -> PutMessage<'a> {
    PutMessage {
        topic: "TopicA",
        queue_id: QueueId(3),
        flag: 7,
        body,
        properties: props,
        sys_flag: 0,
        born_timestamp_ms: 0x0102_0304_0506,
        born_host: born,
        store_host: store,
        reconsume_times: 2,
        prepared_transaction_offset: 0,
    }
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

#[test]
fn record_golden_bytes_ipv4() {
    let m = msg(
        b"hi",
        "TAGS\u{1}t\u{2}",
        v4([10, 0, 0, 1], 5000),
        v4([192, 168, 1, 2], 10911),
    );
    let mut buf = Vec::new();
    let size = encode(&mut buf, &m, 5, 4096, 0x0A0B_0C0D_0E0F);
    #[rustfmt::skip]
    let golden: Vec<u8> = vec![
        0, 0, 0, 106,                     // TOTALSIZE = 91 + body 2 + topic 6 + props 7
        0xDA, 0xA3, 0x20, 0xA7,           // MAGIC V1
        0x58, 0x93, 0x2A, 0xAC,           // BODYCRC crc32("hi") & 0x7FFFFFFF
        0, 0, 0, 3,                       // QUEUEID
        0, 0, 0, 7,                       // FLAG
        0, 0, 0, 0, 0, 0, 0, 5,           // QUEUEOFFSET
        0, 0, 0, 0, 0, 0, 0x10, 0,        // PHYSICALOFFSET 4096
        0, 0, 0, 0,                       // SYSFLAG
        0, 0, 1, 2, 3, 4, 5, 6,           // BORNTIMESTAMP
        10, 0, 0, 1, 0, 0, 0x13, 0x88,    // BORNHOST 10.0.0.1:5000
        0, 0, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, // STORETIMESTAMP
        192, 168, 1, 2, 0, 0, 0x2A, 0x9F, // STOREHOST 192.168.1.2:10911
        0, 0, 0, 2,                       // RECONSUMETIMES
        0, 0, 0, 0, 0, 0, 0, 0,           // PREPARED_TX_OFFSET
        0, 0, 0, 2, b'h', b'i',           // BODYLEN, BODY
        6, b'T', b'o', b'p', b'i', b'c', b'A', // TOPICLEN, TOPIC
        0, 7, b'T', b'A', b'G', b'S', 1, b't', 2, // PROPERTIESLEN, PROPERTIES
    ];
    assert_eq!(size as usize, golden.len());
    assert_eq!(golden.len(), 91 + 2 + 6 + 7);
    assert_eq!(buf, golden);
    let v = decode(&buf).expect("decodes");
    assert_eq!(v.total_size(), size);
    assert_eq!(v.queue_id(), QueueId(3));
    assert_eq!(v.flag(), 7);
    assert_eq!(v.queue_offset().0, 5);
    assert_eq!(v.commit_log_offset().0, 4096);
    assert_eq!(v.born_timestamp_ms(), 0x0102_0304_0506);
    assert_eq!(v.born_host(), v4([10, 0, 0, 1], 5000));
    assert_eq!(v.store_timestamp_ms(), 0x0A0B_0C0D_0E0F);
    assert_eq!(v.store_host(), v4([192, 168, 1, 2], 10911));
    assert_eq!(v.reconsume_times(), 2);
    assert_eq!(v.body(), b"hi");
    assert_eq!(v.topic(), "TopicA");
    assert_eq!(v.properties(), "TAGS\u{1}t\u{2}");
}

#[test]
fn ipv6_hosts_set_flags_and_round_trip() {
    let born: SocketAddr = "[2001:db8::1]:1234".parse().expect("addr");
    let store: SocketAddr = "[::1]:10911".parse().expect("addr");
    let m = msg(b"body", "", born, store);
    let mut buf = Vec::new();
    let size = encode(&mut buf, &m, 1, 2, 3);
    assert_eq!(size as usize, 91 + 24 + 4 + 6);
    let v = decode(&buf).expect("decodes");
    assert_eq!(v.sys_flag() & 0x30, 0x30);
    assert_eq!(v.born_host(), born);
    assert_eq!(v.store_host(), store);
    assert_eq!(v.body(), b"body");
    assert_eq!(v.topic(), "TopicA");
    assert_eq!(v.store_timestamp_ms(), 3);
}

#[test]
fn long_topic_uses_v2_magic() {
    let topic = "t".repeat(200);
    let mut m = msg(b"x", "", v4([1, 2, 3, 4], 1), v4([1, 2, 3, 4], 2));
    m.topic = &topic;
    let mut buf = Vec::new();
    encode(&mut buf, &m, 0, 0, 0);
    assert_eq!(&buf[4..8], &MAGIC_V2.to_be_bytes());
    assert_eq!(decode(&buf).expect("decodes").topic(), topic);
}

#[test]
fn corruption_is_detected() {
    let m = msg(
        b"hello",
        "K\u{1}V\u{2}",
        v4([1, 2, 3, 4], 1),
        v4([1, 2, 3, 4], 2),
    );
    let mut buf = Vec::new();
    encode(&mut buf, &m, 0, 0, 0);
    let body_at = BODY_LEN_OFFSET_V4 + 4;
    let mut bad = buf.clone();
    bad[body_at] ^= 0xFF;
    assert_eq!(decode(&bad).err(), Some(DecodeError::ChecksumMismatch));
    assert_eq!(
        decode(&buf[..buf.len() - 1]).err(),
        Some(DecodeError::Incomplete)
    );
    let mut bad = buf.clone();
    bad[3] = bad[3].wrapping_add(1);
    bad.push(0);
    assert_eq!(decode(&bad).err(), Some(DecodeError::SizeMismatch));
    let mut bad = buf.clone();
    bad[5] = 0;
    assert_eq!(decode(&bad).err(), Some(DecodeError::BadMagic));
}

proptest::proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
        let _ = peek_header(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_records(pos in 0usize..120, val in proptest::prelude::any::<u8>(), cut in 0usize..130) {
        let m = msg(b"some body", "TAGS\u{1}a\u{2}", v4([1, 2, 3, 4], 1), v4([5, 6, 7, 8], 2));
        let mut buf = Vec::new();
        encode(&mut buf, &m, 9, 10, 11);
        if let Some(b) = buf.get_mut(pos) { *b = val; }
        let cut = cut.min(buf.len());
        let _ = decode(&buf[..cut]);
        let _ = decode(&buf);
    }

    #[test]
    fn encode_decode_round_trip(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                topic in "[a-zA-Z0-9_]{1,200}", props in "[a-z]{0,50}",
                                qo in proptest::prelude::any::<u64>(), off in 0u64..(1 << 62)) {
        let mut m = msg(&body, &props, v4([1, 2, 3, 4], 1), v4([5, 6, 7, 8], 2));
        m.topic = &topic;
        let mut buf = Vec::new();
        let size = encode(&mut buf, &m, qo, off, 42);
        proptest::prop_assert_eq!(size as usize, buf.len());
        let v = decode(&buf).expect("decodes");
        proptest::prop_assert_eq!(v.body(), &body[..]);
        proptest::prop_assert_eq!(v.topic(), &topic[..]);
        proptest::prop_assert_eq!(v.properties(), &props[..]);
        proptest::prop_assert_eq!(v.queue_offset().0, qo);
        proptest::prop_assert_eq!(v.commit_log_offset().0, off);
    }
}
