//! A broker's client to one nameserver: request/response over one kept-open connection (the
//! nameserver drops a broker whose registration connection closes, as RocketMQ's does).
//!
//! Used by a shard's registration task (`runtime::registrar`) and by the send path's wait for
//! a new topic's route (`shard::route_wait`). Lives on one shard; every call is bounded by
//! [`NAMESRV_CALL_TIMEOUT`].

use bytes::{BufMut, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::future;
use glommio::net::TcpStream;
use std::time::Duration;

use crate::remoting::{RemotingCommand, RequestCode, ResponseCode, FRAME_SIZE_MAX_DEFAULT};

/// Connect / request timeout towards a nameserver.
pub const NAMESRV_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A request/response client to one nameserver.
pub struct NamesrvClient {
    addr: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
    next_opaque: i32,
}

impl NamesrvClient {
    pub fn new(addr: String) -> Self {
        Self {
            addr,
            stream: None,
            buf: BytesMut::new(),
            next_opaque: 1,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send `req` and wait for its response (connecting first when needed). On any error the
    /// connection is dropped, so the next call starts afresh.
    pub async fn call(&mut self, mut req: RemotingCommand) -> Result<RemotingCommand, String> {
        let r = future::or(self.call_inner(&mut req), async {
            glommio::timer::sleep(NAMESRV_CALL_TIMEOUT).await;
            Err(format!("no answer within {NAMESRV_CALL_TIMEOUT:?}"))
        })
        .await;
        if r.is_err() {
            self.stream = None;
            self.buf.clear();
        }
        r
    }

    /// Resolves when the kept-open connection is closed by the nameserver (a restart, say);
    /// never while no connection is open. Only call between requests.
    pub async fn closed(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return future::pending().await;
        };
        let mut chunk = [0u8; 512];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                // Nothing is expected between requests; keep what came for the next call.
                Ok(n) => self.buf.put_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
        self.stream = None;
        self.buf.clear();
    }

    /// The broker names whose queues the nameserver's route for `topic` lists (empty when the
    /// nameserver has no route for it yet).
    pub async fn route_broker_names(&mut self, topic: &str) -> Result<Vec<String>, String> {
        // Standard JSON (quoted keys), whatever the request's version says.
        let req = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
            .with_ext("topic", topic)
            .with_ext("acceptStandardJsonOnly", true);
        let resp = self.call(req).await?;
        if resp.code == ResponseCode::TOPIC_NOT_EXIST {
            return Ok(Vec::new());
        }
        if resp.code != ResponseCode::SUCCESS {
            return Err(format!(
                "route query answered code {}: {}",
                resp.code,
                resp.remark.unwrap_or_default()
            ));
        }
        let route: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("route for {topic} is not JSON: {e}"))?;
        let names = route
            .get("queueDatas")
            .and_then(serde_json::Value::as_array)
            .map(|queues| {
                queues
                    .iter()
                    .filter_map(|q| q.get("brokerName")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(names)
    }

    async fn call_inner(&mut self, req: &mut RemotingCommand) -> Result<RemotingCommand, String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr.as_str())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.buf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err("not connected".into());
        };
        req.opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        stream
            .write_all(&req.to_frame())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            while let Some(cmd) = RemotingCommand::decode(&mut self.buf, FRAME_SIZE_MAX_DEFAULT)
                .map_err(|e| format!("bad frame: {e}"))?
            {
                if cmd.is_response() && cmd.opaque == req.opaque {
                    return Ok(cmd);
                }
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.put_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}
