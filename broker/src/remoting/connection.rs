//! The per-connection task (glommio): read, decode, dispatch, write.
//!
//! One accepted socket is split into a read half and a write half (GLOMMIO.md pitfall 12):
//!
//! - the **reader** reads in large chunks, decodes every whole frame in the buffer and, for
//!   each request, spawns a task calling [`RequestHandler::handle`] (a held pull does not block
//!   the other requests of the connection). At most `in_flight_max` requests run at once per
//!   connection; beyond that the request is answered SYSTEM_BUSY (oneway ones are dropped).
//!   Incoming responses (flag bit0) complete the server-initiated request with that opaque.
//!   A malformed frame is logged and closes this connection only.
//! - the **writer** takes responses and server-initiated frames from a bounded channel and
//!   writes everything that is ready in one `write_all`, so many responses share one syscall.
//!
//! Ownership: everything here belongs to the shard (core) that accepted the socket.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use super::code::{remark, ResponseCode};
use super::header::LanguageCode;
use super::{RemotingCommand, FRAME_SIZE_MAX_DEFAULT};

/// Bytes asked of the socket per read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A batch of frames handed to one `write_all` stops growing past this.
pub const WRITE_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Server-initiated requests awaiting a client response, per connection.
pub const PENDING_REQUESTS_MAX: usize = 1024;
/// Extra room in the outbound queue beyond the in-flight bound (server-initiated frames).
pub const OUTBOUND_EXTRA_MAX: usize = 256;
/// Close a connection that sent nothing for this long (RocketMQ's serverChannelMaxIdleTimeSeconds).
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);

/// Anything that answers requests: a broker shard, the nameserver.
pub trait RequestHandler: 'static {
    /// One request in, at most one response out (None for oneway requests or when there is
    /// nothing to send). The connection layer drops a response to a oneway request.
    #[allow(async_fn_in_trait)]
    async fn handle(
        self: &Rc<Self>,
        conn: &Rc<ConnectionCtx>,
        req: RemotingCommand,
    ) -> Option<RemotingCommand>;

    /// The connection ended (after its reader stopped).
    fn connection_closed(&self, conn: &Rc<ConnectionCtx>);
}

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub frame_size_max: usize,
    pub in_flight_max: usize,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            frame_size_max: FRAME_SIZE_MAX_DEFAULT,
            in_flight_max: crate::config::CONNECTION_IN_FLIGHT_MAX_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
        }
    }
}

enum Outbound {
    Frame(RemotingCommand),
    Close,
}

/// Why a server-initiated request got no answer.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    #[error("connection closed")]
    ConnectionClosed,
    #[error("too many requests awaiting a response on this connection")]
    TooManyPending,
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// One client connection as the shard sees it.
pub struct ConnectionCtx {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    outbound: LocalSender<Outbound>,
    in_flight: Cell<usize>,
    pending: RefCell<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: Cell<i32>,
    is_closed: Cell<bool>,
    language: Cell<LanguageCode>,
    version: Cell<i32>,
}

impl ConnectionCtx {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Language of the client's latest request.
    pub fn language(&self) -> LanguageCode {
        self.language.get()
    }

    /// Version of the client's latest request.
    pub fn version(&self) -> i32 {
        self.version.get()
    }

    /// Requests of this connection being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    pub fn is_closed(&self) -> bool {
        self.is_closed.get()
    }

    /// Queue a server-initiated frame (e.g. oneway NOTIFY_CONSUMER_IDS_CHANGED) to this client.
    /// Bounded; returns false when the connection is gone or its queue is full.
    pub fn send(&self, cmd: RemotingCommand) -> bool {
        !self.is_closed.get() && self.outbound.try_send(Outbound::Frame(cmd)).is_ok()
    }

    /// Send a server-initiated request (sync, e.g. GET_CONSUMER_RUNNING_INFO) and await the
    /// client's response, matched by the opaque this sets.
    pub async fn request(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RequestError> {
        if self.is_closed.get() {
            return Err(RequestError::ConnectionClosed);
        }
        let opaque = self.next_opaque.get();
        self.next_opaque.set(opaque.wrapping_add(1));
        cmd.opaque = opaque;
        cmd.flag &= !super::FLAG_RESPONSE;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.borrow_mut();
            if pending.len() >= PENDING_REQUESTS_MAX {
                return Err(RequestError::TooManyPending);
            }
            pending.insert(opaque, tx);
        }
        if !self.send(cmd) {
            self.pending.borrow_mut().remove(&opaque);
            return Err(RequestError::ConnectionClosed);
        }
        let answer = async { rx.await.map_err(|_| RequestError::ConnectionClosed) };
        let deadline = async {
            glommio::timer::sleep(timeout).await;
            Err(RequestError::Timeout(timeout))
        };
        let r = future::or(answer, deadline).await;
        self.pending.borrow_mut().remove(&opaque);
        r
    }

    /// Ask the writer to close the connection after what is already queued.
    pub fn close(&self) {
        if !self.is_closed.replace(true) {
            let _ = self.outbound.try_send(Outbound::Close);
        }
    }

    fn complete_pending(&self, resp: RemotingCommand) {
        let waiter = self.pending.borrow_mut().remove(&resp.opaque);
        match waiter {
            Some(tx) => {
                let _ = tx.send(resp);
            }
            None => log::debug!(
                "connection {} ({}): response with unknown opaque {} ignored",
                self.id,
                self.peer_addr,
                resp.opaque
            ),
        }
    }
}

/// The live connections of one shard (for ids, counts and shutdown draining).
pub struct ConnectionTracker {
    shard_id: u16,
    next_id: Cell<u64>,
    conns: RefCell<HashMap<u64, Weak<ConnectionCtx>>>,
}

impl ConnectionTracker {
    pub fn new(shard_id: u16) -> Rc<Self> {
        Rc::new(Self {
            shard_id,
            next_id: Cell::new(1),
            conns: RefCell::new(HashMap::new()),
        })
    }

    fn allocate_id(&self) -> u64 {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        (u64::from(self.shard_id) << 48) | n
    }

    /// Connections open right now.
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests being handled on all connections.
    pub fn in_flight_total(&self) -> usize {
        self.conns
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .map(|c| c.in_flight())
            .sum()
    }

    /// Close every connection (after their queued frames).
    pub fn close_all(&self) {
        let conns: Vec<Rc<ConnectionCtx>> = self
            .conns
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for c in conns {
            c.close();
        }
    }

    /// Wait until no request is in flight, or `deadline` passes. Returns what is left.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let start = std::time::Instant::now();
        loop {
            let n = self.in_flight_total();
            if n == 0 || start.elapsed() >= deadline {
                return n;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A one-shot "stop" that any number of tasks can wait for (shard-local).
pub struct StopSignal {
    sem: glommio::sync::Semaphore,
    is_stopped: Cell<bool>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self {
            sem: glommio::sync::Semaphore::new(0),
            is_stopped: Cell::new(false),
        }
    }
}

impl StopSignal {
    pub fn stop(&self) {
        if !self.is_stopped.replace(true) {
            self.sem.close();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.is_stopped.get()
    }

    /// Resolves once `stop` was called.
    pub async fn wait(&self) {
        if self.is_stopped.get() {
            return;
        }
        // The semaphore never has permits: acquire only returns when it is closed.
        let _ = self.sem.acquire(1).await;
    }
}

/// Accept connections on `listener` until `stop`; each one is served in its own task.
/// The listener stays open until this returns (GLOMMIO.md pitfall 13).
pub async fn accept_loop<H: RequestHandler>(
    listener: TcpListener,
    handler: Rc<H>,
    tracker: Rc<ConnectionTracker>,
    limits: ConnectionLimits,
    stop: Rc<StopSignal>,
) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                let handler = handler.clone();
                let tracker = tracker.clone();
                glommio::spawn_local(serve(stream, handler, tracker, limits)).detach();
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off briefly instead of spinning.
                log::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serve one connection until the peer closes it, it idles out, or it sends a bad frame.
pub async fn serve<H: RequestHandler>(
    stream: TcpStream,
    handler: Rc<H>,
    tracker: Rc<ConnectionTracker>,
    limits: ConnectionLimits,
) {
    let peer_addr = match stream.peer_addr() {
        Ok(a) => a,
        Err(e) => {
            log::debug!("connection dropped before serving: {e}");
            return;
        }
    };
    let local_addr = stream.local_addr().unwrap_or(peer_addr);
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("{peer_addr}: set_nodelay failed: {e}");
    }
    if let Err(e) = stream.set_read_timeout(Some(limits.idle_timeout)) {
        log::debug!("{peer_addr}: set_read_timeout failed: {e}");
    }
    let (read_half, write_half) = stream.split();
    let (out_tx, out_rx) =
        local_channel::new_bounded(limits.in_flight_max.saturating_add(OUTBOUND_EXTRA_MAX));
    let conn = Rc::new(ConnectionCtx {
        id: tracker.allocate_id(),
        peer_addr,
        local_addr,
        outbound: out_tx,
        in_flight: Cell::new(0),
        pending: RefCell::new(HashMap::new()),
        next_opaque: Cell::new(1),
        is_closed: Cell::new(false),
        language: Cell::new(LanguageCode::Other),
        version: Cell::new(0),
    });
    tracker
        .conns
        .borrow_mut()
        .insert(conn.id, Rc::downgrade(&conn));
    log::debug!("connection {} from {peer_addr} opened", conn.id);

    let writer = glommio::spawn_local(write_loop(write_half, out_rx, conn.clone()));
    read_loop(read_half, &conn, &handler, limits).await;

    if !conn.is_closed.replace(true) {
        // Awaiting (not try_send) so the writer surely sees the end after queued responses.
        let _ = conn.outbound.send(Outbound::Close).await;
    }
    conn.pending.borrow_mut().clear();
    handler.connection_closed(&conn);
    tracker.conns.borrow_mut().remove(&conn.id);
    writer.await;
    log::debug!("connection {} from {peer_addr} closed", conn.id);
}

async fn read_loop<H: RequestHandler>(
    mut reader: ReadHalf<TcpStream>,
    conn: &Rc<ConnectionCtx>,
    handler: &Rc<H>,
    limits: ConnectionLimits,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            match RemotingCommand::decode(&mut buf, limits.frame_size_max) {
                Ok(Some(cmd)) => dispatch(cmd, conn, handler, limits).await,
                Ok(None) => break,
                Err(e) => {
                    log::warn!(
                        "connection {} from {}: malformed frame, closing it: {}",
                        conn.id,
                        conn.peer_addr,
                        crate::error_text::error_chain(&e)
                    );
                    return;
                }
            }
        }
        if conn.is_closed.get() {
            return;
        }
        let filled = buf.len();
        buf.reserve(READ_CHUNK_BYTES);
        buf.resize(filled + READ_CHUNK_BYTES, 0);
        let read = match buf.get_mut(filled..) {
            Some(spare) => reader.read(spare).await,
            None => return,
        };
        match read {
            Ok(0) => {
                buf.truncate(filled);
                return;
            }
            Ok(n) => buf.truncate(filled + n),
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    log::info!(
                        "connection {} from {}: idle, closing",
                        conn.id,
                        conn.peer_addr
                    );
                } else {
                    log::debug!(
                        "connection {} from {}: read error: {e}",
                        conn.id,
                        conn.peer_addr
                    );
                }
                return;
            }
        }
    }
}

async fn dispatch<H: RequestHandler>(
    cmd: RemotingCommand,
    conn: &Rc<ConnectionCtx>,
    handler: &Rc<H>,
    limits: ConnectionLimits,
) {
    if cmd.is_response() {
        conn.complete_pending(cmd);
        return;
    }
    conn.language.set(cmd.language);
    conn.version.set(cmd.version);
    if conn.in_flight.get() >= limits.in_flight_max {
        if !cmd.is_oneway() {
            let busy = RemotingCommand::response(
                ResponseCode::SYSTEM_BUSY,
                cmd.opaque,
                Some(remark::SYSTEM_BUSY.to_owned()),
            );
            // Waiting here is the backpressure: the reader stops until the writer has room.
            let _ = conn.outbound.send(Outbound::Frame(busy)).await;
        }
        return;
    }
    conn.in_flight.set(conn.in_flight.get() + 1);
    let conn = conn.clone();
    let handler = handler.clone();
    glommio::spawn_local(async move {
        let is_oneway = cmd.is_oneway();
        let opaque = cmd.opaque;
        let response = handler.handle(&conn, cmd).await;
        if let (Some(mut resp), false) = (response, is_oneway) {
            resp.opaque = opaque;
            resp.flag |= super::FLAG_RESPONSE;
            if !conn.is_closed.get() {
                let _ = conn.outbound.send(Outbound::Frame(resp)).await;
            }
        }
        conn.in_flight.set(conn.in_flight.get().saturating_sub(1));
    })
    .detach();
}

async fn write_loop(
    mut writer: WriteHalf<TcpStream>,
    rx: LocalReceiver<Outbound>,
    conn: Rc<ConnectionCtx>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Once closed, only what is already queued is written.
        let first = if conn.is_closed.get() {
            match future::poll_once(rx.recv()).await {
                Some(Some(item)) => item,
                _ => break,
            }
        } else {
            match rx.recv().await {
                Some(item) => item,
                None => break,
            }
        };
        buf.clear();
        let mut is_closing = false;
        match first {
            Outbound::Frame(cmd) => cmd.encode(&mut buf),
            Outbound::Close => is_closing = true,
        }
        // Take whatever else is ready without waiting: one write for all of it.
        while !is_closing && buf.len() < WRITE_BATCH_BYTES_MAX {
            match future::poll_once(rx.recv()).await {
                Some(Some(Outbound::Frame(cmd))) => cmd.encode(&mut buf),
                Some(Some(Outbound::Close)) | Some(None) => is_closing = true,
                None => break,
            }
        }
        if !buf.is_empty() {
            if let Err(e) = writer.write_all(&buf).await {
                log::debug!(
                    "connection {} to {}: write failed: {e}",
                    conn.id,
                    conn.peer_addr
                );
                conn.is_closed.set(true);
                break;
            }
        }
        if is_closing {
            break;
        }
    }
    let _ = writer.close().await;
}
