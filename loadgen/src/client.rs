//! A blocking remoting connection for control calls (route, create topic, offsets, broker
//! config) and for pull consumers: one request in flight, matched by opaque. Frames from the
//! server that are not the awaited response (server-initiated requests, stale replies) are
//! skipped. Not used for the measured send path, which pipelines (see `produce`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;

use crate::codec::{RemotingCommand, FRAME_SIZE_MAX};

/// Read buffer growth step.
const READ_CHUNK_BYTES: usize = 64 * 1024;

pub struct Client {
    stream: TcpStream,
    addr: SocketAddr,
    read_buf: BytesMut,
    write_buf: BytesMut,
    next_opaque: i32,
}

impl Client {
    /// Connects with TCP_NODELAY.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        Ok(Client {
            stream,
            addr,
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            write_buf: BytesMut::new(),
            next_opaque: 1,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` (its opaque is assigned here) and waits up to `timeout` for the
    /// response carrying the same opaque.
    pub fn call(
        &mut self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        request.opaque = opaque;
        self.write_buf.clear();
        request.encode(&mut self.write_buf);
        self.stream
            .write_all(&self.write_buf)
            .with_context(|| format!("write request {} to {}", request.code, self.addr))?;
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(cmd) = RemotingCommand::decode(&mut self.read_buf, FRAME_SIZE_MAX)
                .map_err(|e| anyhow!("malformed frame from {}: {e}", self.addr))?
            {
                if cmd.is_response() && cmd.opaque == opaque {
                    return Ok(cmd);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "request {} to {} timed out after {:?}",
                    request.code,
                    self.addr,
                    timeout
                );
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .context("set read timeout")?;
            let start = self.read_buf.len();
            self.read_buf.resize(start + READ_CHUNK_BYTES, 0);
            let got = match self.stream.read(&mut self.read_buf[start..]) {
                Ok(0) => {
                    self.read_buf.truncate(start);
                    bail!("{} closed the connection", self.addr);
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    0
                }
                Err(e) => {
                    self.read_buf.truncate(start);
                    return Err(e).with_context(|| format!("read from {}", self.addr));
                }
            };
            self.read_buf.truncate(start + got);
        }
    }
}
