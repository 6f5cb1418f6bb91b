//! An async remoting client on a real loopback socket (glommio `TcpStream`, in the same
//! executor as the shard): real frames through the real codec, SEND_MESSAGE with the send
//! request header a RocketMQ producer sends, and a read-back of whole queues by PULL_MESSAGE.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::harness::WAIT_LIMIT;

const FRAME_SIZE_MAX: usize = 16 << 20;

/// One client connection.
pub struct Client {
    stream: glommio::net::TcpStream,
    buf: BytesMut,
    next_opaque: i32,
    /// Responses read while looking for another one, by opaque.
    early: HashMap<i32, RemotingCommand>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = glommio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        // Longer than `wait_until`'s bound, so a wait on the broker's state fails first and
        // says what it waited for.
        stream
            .set_read_timeout(Some(2 * WAIT_LIMIT))
            .expect("read timeout");
        Client {
            stream,
            buf: BytesMut::with_capacity(64 << 10),
            next_opaque: 1,
            early: HashMap::new(),
        }
    }

    /// Writes a request; returns its opaque.
    pub async fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        let opaque = self.next_opaque;
        self.next_opaque += 1;
        cmd.opaque = opaque;
        self.stream
            .write_all(&cmd.to_frame())
            .await
            .expect("write a request");
        opaque
    }

    /// Whether the response to `opaque` has been read already (no I/O).
    pub fn has_response(&self, opaque: i32) -> bool {
        self.early.contains_key(&opaque)
    }

    /// The response to `opaque` if it has been read already (no I/O).
    pub fn take_response(&mut self, opaque: i32) -> Option<RemotingCommand> {
        self.early.remove(&opaque)
    }

    /// Reads the next response frame (server-initiated requests are skipped). Panics after
    /// twice [`WAIT_LIMIT`] without one.
    pub async fn next_response(&mut self) -> RemotingCommand {
        loop {
            let decoded = RemotingCommand::decode(&mut self.buf, FRAME_SIZE_MAX)
                .unwrap_or_else(|e| panic!("bad frame from the broker: {e}"));
            if let Some(cmd) = decoded {
                if cmd.is_response() {
                    return cmd;
                }
                continue;
            }
            let mut chunk = vec![0u8; 64 << 10];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .unwrap_or_else(|e| panic!("no response within {:?}: {e}", 2 * WAIT_LIMIT));
            assert!(n > 0, "the broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The response to `opaque`; responses to other requests read meanwhile are kept.
    pub async fn wait(&mut self, opaque: i32) -> RemotingCommand {
        loop {
            if let Some(r) = self.early.remove(&opaque) {
                return r;
            }
            let r = self.next_response().await;
            if r.opaque == opaque {
                return r;
            }
            self.early.insert(r.opaque, r);
        }
    }

    pub async fn request(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd).await;
        self.wait(opaque).await
    }

    /// UPDATE_AND_CREATE_TOPIC with `queues` read and write queues.
    pub async fn create_topic(&mut self, topic: &str, queues: u32) {
        let r = self
            .request(
                RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC)
                    .with_ext("topic", topic)
                    .with_ext("defaultTopic", "TBW102")
                    .with_ext("readQueueNums", queues)
                    .with_ext("writeQueueNums", queues)
                    .with_ext("perm", 6)
                    .with_ext("topicFilterType", "SINGLE_TAG")
                    .with_ext("topicSysFlag", 0)
                    .with_ext("order", "false"),
            )
            .await;
        assert_eq!(
            r.code,
            ResponseCode::SUCCESS,
            "create {topic}: {}",
            show(&r)
        );
    }

    /// GET_MAX_OFFSET of one queue.
    pub async fn max_offset(&mut self, topic: &str, queue_id: u32) -> i64 {
        let r = self
            .request(
                RemotingCommand::request(RequestCode::GET_MAX_OFFSET)
                    .with_ext("topic", topic)
                    .with_ext("queueId", queue_id),
            )
            .await;
        assert_eq!(r.code, ResponseCode::SUCCESS, "{}", show(&r));
        ext_i64(&r, "offset")
    }

    /// Every record of one queue, by queue offset, read back with PULL_MESSAGE from 0.
    pub async fn read_queue(&mut self, topic: &str, queue_id: u32) -> BTreeMap<u64, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut offset: i64 = 0;
        for _ in 0..100_000 {
            let r = self
                .request(
                    RemotingCommand::request(RequestCode::PULL_MESSAGE)
                        .with_ext("consumerGroup", "durability-reader")
                        .with_ext("topic", topic)
                        .with_ext("queueId", queue_id)
                        .with_ext("queueOffset", offset)
                        .with_ext("maxMsgNums", 32)
                        .with_ext("sysFlag", 0x4)
                        .with_ext("commitOffset", 0)
                        .with_ext("suspendTimeoutMillis", 0)
                        .with_ext("subscription", "*")
                        .with_ext("subVersion", 0)
                        .with_ext("expressionType", "TAG"),
                )
                .await;
            match r.code {
                ResponseCode::SUCCESS => {
                    let mut pos = 0;
                    while pos < r.body.len() {
                        let view = engine::record::decode(&r.body[pos..]).unwrap_or_else(|e| {
                            panic!("{topic}/{queue_id}: bad record at byte {pos}: {e:?}")
                        });
                        out.insert(view.queue_offset().0, view.body().to_vec());
                        pos += view.total_size() as usize;
                    }
                    offset = ext_i64(&r, "nextBeginOffset");
                }
                ResponseCode::PULL_RETRY_IMMEDIATELY => offset = ext_i64(&r, "nextBeginOffset"),
                ResponseCode::PULL_NOT_FOUND => return out,
                _ => panic!("pull {topic}/{queue_id} at {offset}: {}", show(&r)),
            }
        }
        panic!("pull {topic}/{queue_id} did not reach the end");
    }
}

/// SEND_MESSAGE (10) as a RocketMQ producer sends it (long header names). `wait`: None leaves
/// the WAIT property out (the broker's default applies), Some sets it.
pub fn send_request(
    topic: &str,
    queue_id: u32,
    body: &[u8],
    wait: Option<bool>,
) -> RemotingCommand {
    let mut properties = String::new();
    if let Some(w) = wait {
        properties.push_str(&format!("WAIT\u{1}{w}\u{2}"));
    }
    properties.push_str("TAGS\u{1}durable\u{2}");
    RemotingCommand::request(RequestCode::SEND_MESSAGE)
        .with_ext("producerGroup", "durability-producer")
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 4)
        .with_ext("queueId", queue_id)
        .with_ext("sysFlag", 0)
        .with_ext("bornTimestamp", 1_700_000_000_000i64)
        .with_ext("flag", 0)
        .with_ext("properties", properties)
        .with_ext("reconsumeTimes", 0)
        .with_ext("unitMode", "false")
        .with_body(Bytes::copy_from_slice(body))
}

pub fn show(r: &RemotingCommand) -> String {
    format!(
        "code {} remark {:?} ext {:?}",
        r.code, r.remark, r.ext_fields
    )
}

pub fn ext_i64(r: &RemotingCommand, name: &str) -> i64 {
    r.ext(name)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing: {}", show(r)))
}
