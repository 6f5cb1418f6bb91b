//! The remoting codec loadgen speaks, and the few requests it builds.
//!
//! Framing and headers are the broker crate's `RemotingCommand` (contracts.md): loadgen
//! never reaches into broker internals beyond that codec. This module adds the request
//! builders (REMOTING.md §2.2 send, §4.5 batch body, §2.3 pull, §2.7 route, §2.8 create
//! topic), a reader for stored records in pull bodies (§4.1), and the loadgen message body
//! that carries each message's intended send time.

use broker::remoting::{RequestCode, ResponseCode};
use bytes::{BufMut, Bytes, BytesMut};

pub use broker::remoting::{FrameError, RemotingCommand};

/// Java's default max frame (REMOTING.md §1.1).
pub const FRAME_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Request codes loadgen sends (REMOTING.md §2.1); wire values, never renumbered.
pub mod request_code {
    use super::RequestCode;
    pub const SEND_MESSAGE: i32 = RequestCode::SEND_MESSAGE;
    pub const PULL_MESSAGE: i32 = RequestCode::PULL_MESSAGE;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = RequestCode::UPDATE_AND_CREATE_TOPIC;
    pub const GET_BROKER_CONFIG: i32 = RequestCode::GET_BROKER_CONFIG;
    pub const GET_MAX_OFFSET: i32 = RequestCode::GET_MAX_OFFSET;
    pub const HEART_BEAT: i32 = RequestCode::HEART_BEAT;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = RequestCode::GET_ROUTEINFO_BY_TOPIC;
    pub const GET_BROKER_CLUSTER_INFO: i32 = RequestCode::GET_BROKER_CLUSTER_INFO;
    pub const SEND_MESSAGE_V2: i32 = RequestCode::SEND_MESSAGE_V2;
    pub const SEND_BATCH_MESSAGE: i32 = RequestCode::SEND_BATCH_MESSAGE;
}

/// Response codes loadgen reads (REMOTING.md §3).
pub mod response_code {
    use super::ResponseCode;
    pub const SUCCESS: i32 = ResponseCode::SUCCESS;
    pub const TOPIC_NOT_EXIST: i32 = ResponseCode::TOPIC_NOT_EXIST;
    pub const PULL_NOT_FOUND: i32 = ResponseCode::PULL_NOT_FOUND;
    pub const PULL_RETRY_IMMEDIATELY: i32 = ResponseCode::PULL_RETRY_IMMEDIATELY;
    pub const PULL_OFFSET_MOVED: i32 = ResponseCode::PULL_OFFSET_MOVED;
}

/// RocketMQ's name for a response code, for error tables (`CODE_<n>` when unknown).
pub fn response_code_name(code: i32) -> String {
    let name = match code {
        0 => "SUCCESS",
        1 => "SYSTEM_ERROR",
        2 => "SYSTEM_BUSY",
        3 => "REQUEST_CODE_NOT_SUPPORTED",
        10 => "FLUSH_DISK_TIMEOUT",
        11 => "SLAVE_NOT_AVAILABLE",
        12 => "FLUSH_SLAVE_TIMEOUT",
        13 => "MESSAGE_ILLEGAL",
        14 => "SERVICE_NOT_AVAILABLE",
        16 => "NO_PERMISSION",
        17 => "TOPIC_NOT_EXIST",
        19 => "PULL_NOT_FOUND",
        20 => "PULL_RETRY_IMMEDIATELY",
        21 => "PULL_OFFSET_MOVED",
        24 => "SUBSCRIPTION_NOT_EXIST",
        26 => "SUBSCRIPTION_GROUP_NOT_EXIST",
        29 => "INVALID_PARAMETER",
        1500 => "GO_AWAY",
        _ => return format!("CODE_{code}"),
    };
    name.to_string()
}

/// The template topic RocketMQ brokers auto-create from (REMOTING.md §7.7).
pub const DEFAULT_TOPIC: &str = "TBW102";
/// Properties every loadgen message carries: wait for the store (SYNC_FLUSH honours it).
pub const MESSAGE_PROPERTIES: &str = "WAIT\u{1}true\u{2}";

/// How a send is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SendCode {
    /// SEND_MESSAGE (10), long header names (Go, C++).
    SendMessage,
    /// SEND_MESSAGE_V2 (310), short header names (Java's default).
    SendMessageV2,
}

/// Header fields of one send; `batch` selects SEND_BATCH_MESSAGE (320, short names).
pub struct SendHeader<'a> {
    pub producer_group: &'a str,
    pub topic: &'a str,
    pub queue_id: u32,
    pub born_timestamp_ms: i64,
}

/// A single-message send (REMOTING.md §2.2).
pub fn send_request(code: SendCode, h: &SendHeader<'_>, body: Bytes) -> RemotingCommand {
    let names: [&str; 11] = match code {
        SendCode::SendMessage => [
            "producerGroup",
            "topic",
            "defaultTopic",
            "defaultTopicQueueNums",
            "queueId",
            "sysFlag",
            "bornTimestamp",
            "flag",
            "properties",
            "reconsumeTimes",
            "unitMode",
        ],
        SendCode::SendMessageV2 => ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"],
    };
    let request_code = match code {
        SendCode::SendMessage => request_code::SEND_MESSAGE,
        SendCode::SendMessageV2 => request_code::SEND_MESSAGE_V2,
    };
    let [a, b, c, d, e, f, g, hh, i, j, k] = names;
    RemotingCommand::request(request_code)
        .with_ext(a, h.producer_group)
        .with_ext(b, h.topic)
        .with_ext(c, DEFAULT_TOPIC)
        .with_ext(d, 4)
        .with_ext(e, h.queue_id)
        .with_ext(f, 0)
        .with_ext(g, h.born_timestamp_ms)
        .with_ext(hh, 0)
        .with_ext(i, MESSAGE_PROPERTIES)
        .with_ext(j, 0)
        .with_ext(k, false)
        .with_body(body)
}

/// A SEND_BATCH_MESSAGE (320) carrying `bodies`, one entry each (REMOTING.md §4.5).
pub fn batch_request(h: &SendHeader<'_>, bodies: &[Bytes]) -> RemotingCommand {
    let props = MESSAGE_PROPERTIES.as_bytes();
    let size: usize = bodies.iter().map(|b| 22 + b.len() + props.len()).sum();
    let mut buf = BytesMut::with_capacity(size);
    for body in bodies {
        let total = 22 + body.len() + props.len();
        buf.put_i32(i32::try_from(total).unwrap_or(i32::MAX));
        buf.put_i32(0); // magic: the client writes 0
        buf.put_i32(0); // body CRC: the broker computes it
        buf.put_i32(0); // flag
        buf.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
        buf.put_slice(body);
        buf.put_i16(i16::try_from(props.len()).unwrap_or(i16::MAX));
        buf.put_slice(props);
    }
    RemotingCommand::request(request_code::SEND_BATCH_MESSAGE)
        .with_ext("a", h.producer_group)
        .with_ext("b", h.topic)
        .with_ext("c", DEFAULT_TOPIC)
        .with_ext("d", 4)
        .with_ext("e", h.queue_id)
        .with_ext("f", 0)
        .with_ext("g", h.born_timestamp_ms)
        .with_ext("h", 0)
        .with_ext("i", MESSAGE_PROPERTIES)
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_ext("m", true)
        .with_body(buf.freeze())
}

/// PullSysFlag bits (REMOTING.md §2.3).
const PULL_SYS_FLAG_SUSPEND: i32 = 0x2;
const PULL_SYS_FLAG_SUBSCRIPTION: i32 = 0x4;

/// A long-polling PULL_MESSAGE of every tag, without committing an offset.
pub fn pull_request(
    consumer_group: &str,
    topic: &str,
    queue_id: u32,
    queue_offset: u64,
    max_msg_nums: u32,
    suspend_timeout_ms: u64,
    sub_version: i64,
) -> RemotingCommand {
    RemotingCommand::request(request_code::PULL_MESSAGE)
        .with_ext("consumerGroup", consumer_group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("queueOffset", queue_offset)
        .with_ext("maxMsgNums", max_msg_nums)
        .with_ext(
            "sysFlag",
            PULL_SYS_FLAG_SUSPEND | PULL_SYS_FLAG_SUBSCRIPTION,
        )
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", suspend_timeout_ms)
        .with_ext("subscription", "*")
        .with_ext("subVersion", sub_version)
        .with_ext("expressionType", "TAG")
}

/// GET_ROUTEINFO_BY_TOPIC (105), asking for the standard-JSON body.
pub fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC)
        .with_ext("topic", topic)
        .with_ext("acceptStandardJsonOnly", true)
}

/// UPDATE_AND_CREATE_TOPIC (17) with `queue_count` read and write queues, perm RW.
pub fn create_topic_request(topic: &str, queue_count: u32) -> RemotingCommand {
    RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", DEFAULT_TOPIC)
        .with_ext("readQueueNums", queue_count)
        .with_ext("writeQueueNums", queue_count)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", false)
}

/// GET_MAX_OFFSET (30): the next offset to be written in a queue.
pub fn max_offset_request(topic: &str, queue_id: u32) -> RemotingCommand {
    RemotingCommand::request(request_code::GET_MAX_OFFSET)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
}

/// HEART_BEAT (34) registering one consumer group subscribed to `topic` with `*`.
pub fn heartbeat_request(client_id: &str, consumer_group: &str, topic: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "consumerDataSet": [{
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "consumeType": "CONSUME_ACTIVELY",
            "groupName": consumer_group,
            "messageModel": "CLUSTERING",
            "subscriptionDataSet": [{
                "classFilterMode": false, "codeSet": [], "expressionType": "TAG",
                "subString": "*", "subVersion": 0, "tagsSet": [], "topic": topic
            }],
            "unitMode": false
        }],
        "heartbeatFingerprint": 0,
        "producerDataSet": [],
        "withoutSub": false
    });
    RemotingCommand::request(request_code::HEART_BEAT)
        .with_body(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

/// The loadgen message body: magic, run id, intended send time (ns since
/// [`crate::schedule::epoch`]), then filler up to the requested size.
pub mod body {
    use bytes::{BufMut, Bytes, BytesMut};

    pub const MAGIC: &[u8; 8] = b"PTRLLG01";
    /// Magic + run id + intended ns.
    pub const SIZE_MIN: usize = 24;

    /// Encodes a body of `size` bytes (at least [`SIZE_MIN`]).
    pub fn encode(size: usize, run_id: u64, intended_epoch_ns: u64) -> Bytes {
        let mut b = BytesMut::with_capacity(size.max(SIZE_MIN));
        b.put_slice(MAGIC);
        b.put_u64(run_id);
        b.put_u64(intended_epoch_ns);
        b.resize(size.max(SIZE_MIN), b'x');
        b.freeze()
    }

    /// (run id, intended ns) if `body` is a loadgen body.
    pub fn decode(body: &[u8]) -> Option<(u64, u64)> {
        let magic = body.get(0..8)?;
        if magic != MAGIC {
            return None;
        }
        let run = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
        let ns = u64::from_be_bytes(body.get(16..24)?.try_into().ok()?);
        Some((run, ns))
    }
}

/// Iterates over the bodies of the stored records concatenated in a PULL body
/// (REMOTING.md §4.1); stops at the first record that does not parse, as clients do.
pub fn stored_record_bodies(buf: &[u8]) -> StoredRecordBodies<'_> {
    StoredRecordBodies { buf }
}

pub struct StoredRecordBodies<'a> {
    buf: &'a [u8],
}

const SYS_FLAG_BORNHOST_V6: i32 = 0x10;
const SYS_FLAG_STOREHOST_V6: i32 = 0x20;

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Iterator for StoredRecordBodies<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let total = usize::try_from(be_i32(self.buf, 0)?).ok()?;
        let record = self.buf.get(..total)?;
        let sys_flag = be_i32(record, 36)?;
        let born_host = if sys_flag & SYS_FLAG_BORNHOST_V6 != 0 {
            20
        } else {
            8
        };
        let store_host = if sys_flag & SYS_FLAG_STOREHOST_V6 != 0 {
            20
        } else {
            8
        };
        let body_len_at = 68 + born_host + store_host;
        let body_len = usize::try_from(be_i32(record, body_len_at)?).ok()?;
        let body = record.get(body_len_at + 4..body_len_at + 4 + body_len)?;
        self.buf = self.buf.get(total..)?;
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadgen_body_round_trips() {
        let b = body::encode(128, 7, 123_456_789);
        assert_eq!(b.len(), 128);
        assert_eq!(body::decode(&b), Some((7, 123_456_789)));
        assert_eq!(body::decode(b"not a loadgen body at all"), None);
    }

    #[test]
    fn stored_records_yield_their_bodies() {
        let mut buf = BytesMut::new();
        for payload in [&b"hello"[..], &b"world!"[..]] {
            let total = 91 + payload.len() + 1;
            let before = buf.len();
            buf.put_i32(total as i32);
            buf.put_i32(-626843481);
            buf.put_bytes(0, 28);
            buf.put_i32(0); // sysflag at 36
            buf.put_bytes(0, 84 - 40);
            buf.put_i32(payload.len() as i32);
            buf.put_slice(payload);
            buf.put_u8(1);
            buf.put_u8(b'T');
            buf.put_i16(0);
            assert_eq!(buf.len() - before, total, "record size bookkeeping");
        }
        let bodies: Vec<&[u8]> = stored_record_bodies(&buf).collect();
        assert_eq!(bodies, vec![&b"hello"[..], &b"world!"[..]]);
    }
}
