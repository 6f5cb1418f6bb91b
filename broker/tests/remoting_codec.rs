//! Codec golden tests (REMOTING.md §1.3, §1.4) and a no-panic randomized decode test.

use std::collections::HashMap;

use broker::remoting::frame::SerializeType;
use broker::remoting::{FrameError, LanguageCode, RemotingCommand, RequestCode, ResponseCode};
use bytes::{BufMut, BytesMut};

const MAX: usize = 16 * 1024 * 1024;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn route_request() -> RemotingCommand {
    let mut c =
        RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "T");
    c.opaque = 1;
    c
}

const GOLDEN_JSON_HEADER: &str = r#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;

#[test]
fn json_frame_matches_remoting_md_1_3_golden_bytes() {
    let mut expected = hex("0000007f 0000007b");
    expected.extend_from_slice(GOLDEN_JSON_HEADER.as_bytes());
    assert_eq!(expected.len(), 131);

    let mut out = BytesMut::new();
    route_request().encode(&mut out);
    assert_eq!(&out[..], &expected[..]);

    let mut src = BytesMut::from(&expected[..]);
    let cmd = RemotingCommand::decode(&mut src, MAX)
        .expect("valid")
        .expect("complete");
    assert!(src.is_empty());
    assert_eq!(cmd, route_request());
    assert!(!cmd.is_response());
    assert!(!cmd.is_oneway());
}

const GOLDEN_BINARY: &str =
    "00000025 01000021 0069 00 01df 00000001 00000000 00000000 0000000c 0005 746f706963 00000001 54";

#[test]
fn binary_frame_matches_remoting_md_1_4_golden_bytes() {
    let bytes = hex(GOLDEN_BINARY);
    assert_eq!(bytes.len(), 41);
    let mut src = BytesMut::from(&bytes[..]);
    let cmd = RemotingCommand::decode(&mut src, MAX)
        .expect("valid")
        .expect("complete");
    assert!(src.is_empty());
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.version, 479);
    assert_eq!(cmd.opaque, 1);
    assert_eq!(cmd.flag, 0);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext("topic"), Some("T"));
    assert!(cmd.body.is_empty());

    let mut out = BytesMut::new();
    route_request().encode_as(SerializeType::RocketMq, &mut out);
    assert_eq!(&out[..], &bytes[..]);
}

#[test]
fn response_echoes_opaque_sets_flag_and_writes_ext_values_as_strings() {
    let resp = RemotingCommand::response(ResponseCode::SUCCESS, -7, Some("ok".into()))
        .with_ext("queueId", 3)
        .with_ext("queueOffset", 42i64)
        .with_body(bytes::Bytes::from_static(b"BODY"));
    let frame = resp.to_frame();
    let header_len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    let header = std::str::from_utf8(&frame[8..8 + header_len]).expect("utf8");
    assert_eq!(
        header,
        r#"{"code":0,"extFields":{"queueId":"3","queueOffset":"42"},"flag":1,"language":"JAVA","opaque":-7,"remark":"ok","serializeTypeCurrentRPC":"JSON","version":479}"#
    );
    assert_eq!(&frame[8 + header_len..], b"BODY");
    let (back, used) = RemotingCommand::decode_slice(&frame, MAX)
        .expect("ok")
        .expect("complete");
    assert_eq!(used, frame.len());
    assert_eq!(back, resp);
    assert!(back.is_response());
}

#[test]
fn oneway_flag_round_trips() {
    let mut c = RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET);
    c.mark_oneway();
    assert_eq!(c.flag, 2);
    let mut src = BytesMut::from(&c.to_frame()[..]);
    let d = RemotingCommand::decode(&mut src, MAX)
        .expect("ok")
        .expect("complete");
    assert!(d.is_oneway());
}

#[test]
fn cpp_style_header_with_numeric_ext_values_decodes() {
    let header = br#"{"code":10,"language":"CPP","version":0,"opaque":9,"flag":0,"extFields":{"queueId":3,"unitMode":"false","AccessKey":"","Signature":"","OnsChannel":""}}"#;
    let mut f = BytesMut::new();
    f.put_u32(4 + header.len() as u32 + 3);
    f.put_u32(header.len() as u32);
    f.put_slice(header);
    f.put_slice(b"abc");
    let c = RemotingCommand::decode(&mut f, MAX)
        .expect("ok")
        .expect("complete");
    assert_eq!(c.language, LanguageCode::Cpp);
    assert_eq!(c.ext("queueId"), Some("3"));
    assert_eq!(&c.body[..], b"abc");
}

#[test]
fn several_frames_in_one_buffer_decode_in_order_and_partial_waits() {
    let mut all = BytesMut::new();
    for i in 0..5 {
        let mut c = RemotingCommand::request(RequestCode::HEART_BEAT);
        c.opaque = i;
        c.encode(&mut all);
    }
    let total = all.len();
    let mut src = BytesMut::from(&all[..total - 3]);
    let mut seen = Vec::new();
    while let Some(c) = RemotingCommand::decode(&mut src, MAX).expect("ok") {
        seen.push(c.opaque);
    }
    assert_eq!(seen, vec![0, 1, 2, 3]);
    src.extend_from_slice(&all[total - 3..]);
    let last = RemotingCommand::decode(&mut src, MAX)
        .expect("ok")
        .expect("complete");
    assert_eq!(last.opaque, 4);
}

#[test]
fn frame_over_the_limit_is_refused() {
    let c = RemotingCommand::request(10).with_body(bytes::Bytes::from(vec![0u8; 5000]));
    let mut src = BytesMut::from(&c.to_frame()[..]);
    assert!(matches!(
        RemotingCommand::decode(&mut src, 4096),
        Err(FrameError::FrameTooLarge { .. })
    ));
}

/// xorshift64*: a replayable sequence from a seed (printed on failure via the seed value).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Invariants: decode never panics; it either waits (Ok(None)) without consuming, consumes
/// exactly one frame, or fails; a consumed frame re-encodes to a frame that decodes equal.
#[test]
fn random_and_mutated_input_never_panics() {
    let seed = 0x5eed_1234_u64;
    let mut rng = Rng(seed);
    let mut valid = Vec::new();
    valid.push(route_request().to_frame().to_vec());
    valid.push(hex(GOLDEN_BINARY));
    let mut ext = HashMap::new();
    ext.insert("a".to_string(), "1".to_string());
    let mut c = RemotingCommand::response(0, 5, Some("r\"e\\m".into()));
    c.ext_fields = ext;
    valid.push(c.to_frame().to_vec());

    for iter in 0..200_000 {
        let mut input = if iter % 4 == 0 {
            let n = rng.below(64);
            (0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>()
        } else {
            let mut v = valid[rng.below(valid.len())].clone();
            for _ in 0..=rng.below(4) {
                if v.is_empty() {
                    v.push(rng.next() as u8);
                }
                match rng.below(4) {
                    0 => {
                        let i = rng.below(v.len());
                        v[i] ^= 1 << rng.below(8);
                    }
                    1 => {
                        let i = rng.below(v.len());
                        v[i] = rng.next() as u8;
                    }
                    2 => v.truncate(rng.below(v.len() + 1)),
                    _ => {
                        let i = rng.below(v.len());
                        v.insert(i, rng.next() as u8);
                    }
                }
            }
            v
        };
        if input.is_empty() {
            input.push(0);
        }
        let before = input.len();
        let mut src = BytesMut::from(&input[..]);
        match RemotingCommand::decode(&mut src, 4096) {
            Ok(None) => assert_eq!(src.len(), before, "seed {seed} iter {iter}"),
            Ok(Some(cmd)) => {
                let mut again = BytesMut::from(&cmd.to_frame()[..]);
                let back = RemotingCommand::decode(&mut again, MAX)
                    .expect("re-encoded frame decodes")
                    .expect("complete");
                assert_eq!(back, cmd, "seed {seed} iter {iter}");
            }
            Err(_) => {}
        }
    }
}
