//! The process: one pinned glommio executor per shard, their listeners, the embedded
//! nameserver, registration with the nameserver, cross-shard control, and graceful shutdown.
//!
//! Per shard `i` (an executor pinned to one allowed CPU; several per CPU when `shards` exceeds
//! the CPUs):
//! 1. join the control mesh (its peer id is the shard id `i`);
//! 2. open the `Shard` (store under `<storePathRootDir>/shard-<i>`);
//! 3. shard 0 only, when `namesrvAddr` is unset: serve the embedded nameserver;
//! 4. listen on `bindAddress:listenPort+i` (and serve each connection in its own task);
//! 5. register as `<brokerName>_<i>` with every nameserver now, every 30 s, and whenever the
//!    shard asks (`ControlHandle::request_register`);
//! 6. on SIGINT/SIGTERM: stop accepting, unregister, release held pulls, wait for in-flight
//!    requests (bounded), `shard.shutdown()` (flush, checkpoint, offsets), close connections.
//!
//! Executor settings: `preempt_timer` 1 ms (GLOMMIO.md pitfall 8); `io_memory` 1 MiB and
//! `ring_depth` 256 per executor, so 2 shards × 3 rings × 1 MiB of registered buffers stays
//! under an 8 MiB `ulimit -l` even for non-root users (pitfall 10; DMA buffers beyond the
//! registered pool come from ordinary aligned memory). The CPU set is the process's affinity
//! mask (`Cpus_allowed_list`), never all online CPUs (pitfall 9).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::future;
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};

use crate::config::BrokerConfig;
use crate::namesrv::{self, Namesrv};
use crate::remoting::connection::{accept_loop, ConnectionLimits, ConnectionTracker, StopSignal};
use crate::remoting::{RemotingCommand, RequestCode, ResponseCode, FRAME_SIZE_MAX_DEFAULT};
use crate::shard::control::{self, ControlHandle, ControlMessage};
use crate::shard::{Shard, ShardContext};
use crate::waker;

/// Registered DMA memory per executor (see the module doc).
pub const IO_MEMORY_BYTES: usize = 1 << 20;
/// io_uring depth per ring.
pub const RING_DEPTH: usize = 256;
/// glommio's preemption timer (pitfall 8).
pub const PREEMPT_TIMER: Duration = Duration::from_millis(1);
/// Spin this long before parking an idle executor. Besides trimming wake-up latency it works
/// around a glommio 0.9.0 hang: when the 1 ms preempt timer fires before the executor's first
/// task runs, `run_task_queues` reports "nothing ran" and the executor parks with nothing left
/// to wake it (seen here in about 1 of 10 starts with 2 shards; never with a 100 ms timer).
/// The spin polls the rings, consumes the preempt completion and lets the task run.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(20);
/// Re-registration period (RocketMQ: 30 s).
pub const REGISTER_INTERVAL: Duration = Duration::from_secs(30);
/// Retry period after a failed registration.
pub const REGISTER_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Connect / request timeout towards a nameserver.
pub const NAMESRV_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for in-flight requests.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How often executors look at the process-wide shutdown flag.
pub const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A listener that could not be opened.
#[derive(thiserror::Error, Debug)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Why the process could not run.
#[derive(thiserror::Error, Debug)]
pub enum RuntimeError {
    #[error("cannot start executors: {0}")]
    Executor(String),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("shard {shard_id} failed to open: {reason}")]
    ShardOpen { shard_id: u16, reason: String },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("shard wiring failed: {0}")]
    Wiring(String),
}

/// CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status), falling back to
/// `0..available_parallelism`.
pub fn allowed_cpus() -> Vec<usize> {
    let from_status = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|list| parse_cpu_list(list.trim()))
        });
    match from_status {
        Some(cpus) if !cpus.is_empty() => cpus,
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `0-3,6,8-9` → [0,1,2,3,6,8,9].
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b.min(a + 4096));
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Bind a glommio listener with SO_REUSEADDR (so a restart rebinds over TIME_WAIT sockets)
/// and without SO_REUSEPORT (so a port held by another process is refused, not shared).
/// Call inside a glommio executor.
pub fn bind_listener(addr: SocketAddr) -> Result<glommio::net::TcpListener, ListenError> {
    listen_socket::bind(addr).map_err(|source| ListenError { addr, source })
}

/// The one place with `unsafe` in the broker: handing a listening socket to glommio.
#[allow(unsafe_code)]
mod listen_socket {
    use std::net::SocketAddr;
    use std::os::fd::{FromRawFd, IntoRawFd};

    use socket2::{Domain, Protocol, Socket, Type};

    /// Listen backlog (glommio's own `bind` uses the same).
    const BACKLOG: i32 = 1024;

    pub(super) fn bind(addr: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is a bound, listening TCP socket that we own (`into_raw_fd` gave up
        // ownership); glommio takes it over and closes it when the listener drops.
        Ok(unsafe { glommio::net::TcpListener::from_raw_fd(fd) })
    }
}

/// `error: cause: cause` on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A process-wide stop flag set by the signal thread (or a failing shard); every executor
/// polls it and turns it into its local [`StopSignal`].
#[derive(Default)]
pub struct ShutdownFlag(AtomicBool);

impl ShutdownFlag {
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Install SIGINT/SIGTERM handling: the first signal triggers `flag`, a second one exits.
pub fn install_signal_handlers(flag: Arc<ShutdownFlag>) -> Result<(), RuntimeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(RuntimeError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut count = 0;
            for sig in signals.forever() {
                count += 1;
                if count == 1 {
                    log::info!("signal {sig}: shutting down (again to exit at once)");
                    flag.trigger();
                } else {
                    log::warn!("signal {sig} again: exiting now");
                    std::process::exit(130);
                }
            }
        })
        .map_err(RuntimeError::Signals)?;
    Ok(())
}

/// Watch the process-wide flag from inside an executor.
fn spawn_flag_watcher(flag: Arc<ShutdownFlag>, stop: Rc<StopSignal>) {
    glommio::spawn_local(async move {
        while !flag.is_triggered() && !stop.is_stopped() {
            glommio::timer::sleep(SHUTDOWN_POLL_INTERVAL).await;
        }
        stop.stop();
    })
    .detach();
}

/// Run the broker until `flag` is triggered (SIGINT/SIGTERM in the binary).
pub fn run_broker(config: BrokerConfig, flag: Arc<ShutdownFlag>) -> Result<(), RuntimeError> {
    let shards = usize::from(config.shards);
    let cpus = allowed_cpus();
    let cpu_set = glommio::CpuSet::online()
        .map_err(|e| RuntimeError::Executor(e.to_string()))?
        .filter(|l| cpus.contains(&l.cpu));
    let placement = if shards <= cpu_set.len() {
        PoolPlacement::MaxSpread(shards, Some(cpu_set))
    } else {
        log::warn!(
            "{shards} shards on {} allowed CPUs: shards share CPUs (Fenced placement)",
            cpu_set.len()
        );
        PoolPlacement::Fenced(shards, cpu_set)
    };
    // Startup wiring (used once per executor, never on a data path): shard ids in start
    // order, and each shard's control inbox.
    let (inbox_senders, inbox_receivers) = control::inboxes(shards);
    let ticks =
        waker::start(shards, flag.clone()).map_err(|e| RuntimeError::Executor(e.to_string()))?;
    let wiring = Arc::new(Wiring {
        next_shard_id: AtomicUsize::new(0),
        inbox_senders,
        inbox_receivers: Mutex::new(inbox_receivers.into_iter().map(Some).collect()),
        ticks: Mutex::new(ticks.into_iter().map(Some).collect()),
    });
    let config = Arc::new(config);
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .io_memory(IO_MEMORY_BYTES)
        .ring_depth(RING_DEPTH)
        .preempt_timer(PREEMPT_TIMER)
        .spin_before_park(SPIN_BEFORE_PARK)
        .on_all_shards(move || {
            let wiring = wiring.clone();
            let config = config.clone();
            let flag = flag.clone();
            async move { run_shard(wiring, config, flag).await }
        })
        .map_err(|e| RuntimeError::Executor(e.to_string()))?;
    let mut first_error = None;
    for r in handles.join_all() {
        let err = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(RuntimeError::Executor(e.to_string())),
        };
        if let (Some(e), None) = (err, &first_error) {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What executors take at start: their shard id and control channels.
struct Wiring {
    next_shard_id: AtomicUsize,
    inbox_senders: Vec<SyncSender<ControlMessage>>,
    inbox_receivers: Mutex<Vec<Option<Receiver<ControlMessage>>>>,
    /// Keepalive tick receivers, one per shard (see `waker`).
    ticks: Mutex<Vec<Option<glommio::channels::shared_channel::SharedReceiver<()>>>>,
}

async fn run_shard(
    wiring: Arc<Wiring>,
    config: Arc<BrokerConfig>,
    flag: Arc<ShutdownFlag>,
) -> Result<(), RuntimeError> {
    let index = wiring.next_shard_id.fetch_add(1, Ordering::AcqRel);
    let shard_id =
        u16::try_from(index).map_err(|_| RuntimeError::Wiring("too many shards".into()))?;
    let inbox = wiring
        .inbox_receivers
        .lock()
        .map_err(|_| RuntimeError::Wiring("inbox table poisoned".into()))?
        .get_mut(index)
        .and_then(Option::take)
        .ok_or_else(|| RuntimeError::Wiring(format!("no inbox for shard {index}")))?;
    let peers: Vec<(u16, SyncSender<ControlMessage>)> = wiring
        .inbox_senders
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .filter_map(|(i, s)| Some((u16::try_from(i).ok()?, s.clone())))
        .collect();
    let ticks = wiring
        .ticks
        .lock()
        .map_err(|_| RuntimeError::Wiring("tick table poisoned".into()))?
        .get_mut(index)
        .and_then(Option::take)
        .ok_or_else(|| RuntimeError::Wiring(format!("no keepalive ticks for shard {index}")))?;
    drop(wiring);
    log::debug!("shard {shard_id}: started");
    let result = run_shard_joined(shard_id, peers, inbox, ticks, config, flag.clone()).await;
    if let Err(e) = &result {
        log::error!("shard {shard_id}: {}", error_chain(e));
        flag.trigger();
    }
    result
}

async fn run_shard_joined(
    shard_id: u16,
    peers: Vec<(u16, SyncSender<ControlMessage>)>,
    inbox: Receiver<ControlMessage>,
    ticks: glommio::channels::shared_channel::SharedReceiver<()>,
    config: Arc<BrokerConfig>,
    flag: Arc<ShutdownFlag>,
) -> Result<(), RuntimeError> {
    let config = Rc::new(BrokerConfig::clone(&config));
    let stop = Rc::new(StopSignal::default());
    spawn_flag_watcher(flag, stop.clone());

    let (control, endpoints) = ControlHandle::new(shard_id, config.shards);
    glommio::spawn_local(control::run_forwarder(endpoints.outbox, peers)).detach();
    let ctx = ShardContext::new(shard_id, config.clone(), control.clone());
    let broker_name = ctx.broker_name.clone();
    let advertised = ctx.advertised_addr;
    let store_dir = ctx.store_dir.clone();
    log::debug!(
        "shard {shard_id}: opening the shard at {}",
        store_dir.display()
    );
    let shard = Shard::open(ctx)
        .await
        .map_err(|e| RuntimeError::ShardOpen {
            shard_id,
            reason: e.to_string(),
        })?;
    let control_receiver = {
        let (apply_to, stop) = (shard.clone(), stop.clone());
        glommio::spawn_local(async move {
            control::run_receiver(
                inbox,
                ticks.connect().await,
                |msg| apply_to.apply_control(msg),
                || stop.is_stopped(),
            )
            .await;
        })
    };

    // Embedded nameserver on shard 0.
    let namesrv_task = if shard_id == 0 && config.namesrv_addr.is_none() {
        let addr = SocketAddr::new(config.bind_address, config.namesrv_listen_port);
        let listener = namesrv::bind(addr)?;
        log::info!("nameserver (embedded, shard 0) listening on {addr}");
        Some(glommio::spawn_local(namesrv::serve(
            listener,
            Namesrv::new(),
            stop.clone(),
        )))
    } else {
        None
    };

    let metrics_task = crate::metrics::start(&shard, &stop)?;

    let bind = config.bind_addr(shard_id);
    let listener = bind_listener(bind)?;
    log::info!(
        "shard {shard_id} broker {broker_name} listening on {bind}, advertised {advertised}, store {}",
        store_dir.display()
    );
    let tracker = ConnectionTracker::new(shard_id);
    let limits = ConnectionLimits {
        frame_size_max: FRAME_SIZE_MAX_DEFAULT,
        in_flight_max: config.connection_in_flight_max,
        ..ConnectionLimits::default()
    };
    let accept_stop = Rc::new(StopSignal::default());
    let acceptor = glommio::spawn_local(accept_loop(
        listener,
        shard.clone(),
        tracker.clone(),
        limits,
        accept_stop.clone(),
    ));

    let registrar = {
        let reg = Registrar::new(&config, shard_id, shard.clone());
        log::info!(
            "shard {shard_id} registers {broker_name} with nameserver(s) {}",
            reg.targets()
        );
        glommio::spawn_local(reg.run(endpoints.register_now, stop.clone()))
    };

    stop.wait().await;
    log::info!("shard {shard_id}: stopping");
    accept_stop.stop();
    acceptor.await;
    registrar.await; // sends UNREGISTER_BROKER on its way out
    shard.begin_shutdown();
    let left = tracker.drain(DRAIN_DEADLINE).await;
    if left > 0 {
        log::warn!("shard {shard_id}: {left} requests still in flight after {DRAIN_DEADLINE:?}");
    }
    shard.shutdown().await;
    tracker.close_all();
    control_receiver.await;
    if let Some(t) = namesrv_task {
        t.await;
    }
    if let Some(t) = metrics_task {
        t.await;
    }
    log::info!("shard {shard_id}: stopped (store flushed and checkpointed)");
    Ok(())
}

/// A request/response client to one nameserver over a kept-open connection (the nameserver
/// drops a broker whose registration connection closes, as RocketMQ's does).
struct NamesrvClient {
    addr: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
    next_opaque: i32,
}

impl NamesrvClient {
    fn new(addr: String) -> Self {
        Self {
            addr,
            stream: None,
            buf: BytesMut::new(),
            next_opaque: 1,
        }
    }

    async fn call(&mut self, mut req: RemotingCommand) -> Result<RemotingCommand, String> {
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
        let mut chunk = vec![0u8; 16 * 1024];
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

/// One shard's registration with every nameserver.
struct Registrar {
    shard_id: u16,
    shard: Rc<Shard>,
    broker_name: String,
    broker_addr: String,
    cluster_name: String,
    clients: Vec<NamesrvClient>,
}

impl Registrar {
    fn new(config: &BrokerConfig, shard_id: u16, shard: Rc<Shard>) -> Self {
        Self {
            shard_id,
            shard,
            broker_name: config.shard_broker_name(shard_id),
            broker_addr: config.advertised_addr(shard_id).to_string(),
            cluster_name: config.broker_cluster_name.clone(),
            clients: config
                .registration_targets()
                .into_iter()
                .map(NamesrvClient::new)
                .collect(),
        }
    }

    fn targets(&self) -> String {
        self.clients
            .iter()
            .map(|c| c.addr.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    fn register_request(&self) -> RemotingCommand {
        let wrapper = self.shard.topic_config_wrapper_json();
        register_broker_request(
            &self.cluster_name,
            &self.broker_name,
            &self.broker_addr,
            &wrapper,
        )
    }

    /// Register with every nameserver; true when all succeeded.
    async fn register_all(&mut self) -> bool {
        let mut is_all_ok = true;
        for i in 0..self.clients.len() {
            let req = self.register_request();
            let Some(client) = self.clients.get_mut(i) else {
                continue;
            };
            match client.call(req).await {
                Ok(resp) if resp.code == ResponseCode::SUCCESS => {}
                Ok(resp) => {
                    is_all_ok = false;
                    log::warn!(
                        "shard {}: nameserver {} refused registration: code {} {}",
                        self.shard_id,
                        client.addr,
                        resp.code,
                        resp.remark.unwrap_or_default()
                    );
                }
                Err(e) => {
                    is_all_ok = false;
                    log::warn!(
                        "shard {}: registration with nameserver {} failed: {e}",
                        self.shard_id,
                        client.addr
                    );
                }
            }
        }
        is_all_ok
    }

    async fn unregister_all(&mut self) {
        for client in &mut self.clients {
            let req = RemotingCommand::request(RequestCode::UNREGISTER_BROKER)
                .with_ext("brokerName", &self.broker_name)
                .with_ext("brokerAddr", &self.broker_addr)
                .with_ext("clusterName", &self.cluster_name)
                .with_ext("brokerId", 0);
            if let Err(e) = client.call(req).await {
                log::debug!(
                    "shard {}: unregister from {} failed: {e}",
                    self.shard_id,
                    client.addr
                );
            }
        }
    }

    async fn run(
        mut self,
        register_now: glommio::channels::local_channel::LocalReceiver<()>,
        stop: Rc<StopSignal>,
    ) {
        let mut is_ok = self.register_all().await;
        loop {
            let wait = if is_ok {
                REGISTER_INTERVAL
            } else {
                REGISTER_RETRY_INTERVAL
            };
            let woke = future::or(
                future::or(
                    async {
                        glommio::timer::sleep(wait).await;
                        true
                    },
                    async { register_now.recv().await.is_some() },
                ),
                async {
                    stop.wait().await;
                    false
                },
            )
            .await;
            if !woke || stop.is_stopped() {
                break;
            }
            is_ok = self.register_all().await;
        }
        self.unregister_all().await;
    }
}

/// REGISTER_BROKER for one broker (brokerId 0) with its TopicConfigSerializeWrapper JSON.
pub fn register_broker_request(
    cluster_name: &str,
    broker_name: &str,
    broker_addr: &str,
    topic_config_wrapper_json: &[u8],
) -> RemotingCommand {
    let mut body = BytesMut::with_capacity(topic_config_wrapper_json.len() + 64);
    body.put_slice(b"{\"filterServerList\":[],\"topicConfigSerializeWrapper\":");
    if topic_config_wrapper_json.is_empty() {
        body.put_slice(b"{}");
    } else {
        body.put_slice(topic_config_wrapper_json);
    }
    body.put_u8(b'}');
    RemotingCommand::request(RequestCode::REGISTER_BROKER)
        .with_ext("brokerName", broker_name)
        .with_ext("brokerAddr", broker_addr)
        .with_ext("clusterName", cluster_name)
        .with_ext("haServerAddr", broker_addr)
        .with_ext("brokerId", 0)
        .with_ext("heartbeatTimeoutMillis", 120_000)
        .with_ext("enableActingMaster", false)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", 0)
        .with_body(Bytes::from(body))
}

/// Run a standalone nameserver on `addr` until `flag` is triggered.
pub fn run_namesrv(addr: SocketAddr, flag: Arc<ShutdownFlag>) -> Result<(), RuntimeError> {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("namesrv")
        .io_memory(IO_MEMORY_BYTES)
        .ring_depth(RING_DEPTH)
        .preempt_timer(PREEMPT_TIMER)
        .spin_before_park(SPIN_BEFORE_PARK)
        .spawn(move || async move {
            let stop = Rc::new(StopSignal::default());
            spawn_flag_watcher(flag, stop.clone());
            let listener = namesrv::bind(addr)?;
            log::info!("nameserver listening on {addr}");
            namesrv::serve(listener, Namesrv::new(), stop).await;
            log::info!("nameserver stopped");
            Ok::<(), RuntimeError>(())
        })
        .map_err(|e| RuntimeError::Executor(e.to_string()))?;
    handle
        .join()
        .map_err(|e| RuntimeError::Executor(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list_parses_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,6,8-9"), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert!(parse_cpu_list("").is_empty());
        assert!(!allowed_cpus().is_empty());
    }
}
