//! The process: one pinned glommio executor per shard, their listeners, the embedded
//! nameserver, registration with the nameserver, cross-shard control, and the start-up and
//! shutdown contracts (`supervisor`).
//!
//! On the main thread, before any executor starts: bind the embedded nameserver's listener and
//! every shard's listener (a taken port fails the start at once, and the nameserver accepts
//! registrations before any shard sends one), make each shard's mailbox, install the signal
//! handlers. Then, per shard `i` (an executor pinned to one allowed CPU; several per CPU when
//! `shards` exceeds the CPUs):
//! 1. start its heartbeat (`shard::health`) and bind its mailbox (`crate::mailbox`);
//! 2. shard 0 only, when `namesrvAddr` is unset: serve the embedded nameserver;
//! 3. open the `Shard` (store under `<storePathRootDir>/shard-<i>`);
//! 4. serve connections on `bindAddress:listenPort+i`;
//! 5. register as `<brokerName>_<i>` with every nameserver (`registrar`), and report ready;
//! 6. on `Stop` in its mailbox: stop accepting, unregister, release held pulls, wait for
//!    in-flight requests (at most [`DRAIN_DEADLINE`]), `shard.shutdown()` (flush, checkpoint,
//!    offsets), close connections, report stopped.
//!
//! The main thread then runs `supervisor::supervise` until every shard has stopped.
//!
//! Executor settings: `preempt_timer` 1 ms (GLOMMIO.md pitfall 8); `io_memory` 1 MiB and
//! `ring_depth` 256 per executor, so 2 shards × 3 rings × 1 MiB of registered buffers stays
//! under an 8 MiB `ulimit -l` even for non-root users (pitfall 10; DMA buffers beyond the
//! registered pool come from ordinary aligned memory). The CPU set is the process's affinity
//! mask (`Cpus_allowed_list`), never all online CPUs (pitfall 9). glommio is our vendored,
//! patched 0.9.0 (`vendor/glommio/PATCHES.md`): an executor never parks with runnable tasks,
//! so nothing here polls or ticks to keep a shard awake.

mod registrar;
pub mod supervisor;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};

use crate::config::BrokerConfig;
pub use crate::error_text::error_chain;
use crate::listener::{self, ListenError};
use crate::mailbox::{mailbox, MailboxError, MailboxReceiver};
use crate::namesrv::{self, Namesrv};
use crate::remoting::connection::{accept_loop, ConnectionLimits, ConnectionTracker, StopSignal};
use crate::remoting::FRAME_SIZE_MAX_DEFAULT;
use crate::shard::control::{self, ControlHandle, Mailbox, ShardCommand, CONTROL_INBOX_MAX};
use crate::shard::health::{self, ShardHealth};
use crate::shard::{Shard, ShardContext};
pub use registrar::register_broker_request;
use registrar::{Registrar, RegistrationReport};
use supervisor::{Event, EventSender, ShardLink};

/// Registered DMA memory per executor (see the module doc).
pub const IO_MEMORY_BYTES: usize = 1 << 20;
/// io_uring depth per ring.
pub const RING_DEPTH: usize = 256;
/// glommio's preemption timer (pitfall 8).
pub const PREEMPT_TIMER: Duration = Duration::from_millis(1);
/// Spin this long before parking an idle executor: trims the wake-up latency of a request that
/// arrives right after the previous one (GLOMMIO.md 1.3), at the cost of this much CPU per
/// wake-up.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(20);
/// How long shutdown waits for in-flight requests.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// The heartbeat queue's shares (the default queue has 1000) and its latency target.
const HEARTBEAT_SHARES: usize = 1000;
const HEARTBEAT_LATENCY: Duration = Duration::from_millis(10);
/// How long the stopped shards' threads get to free their memory before the process exits
/// without joining them.
pub const TEARDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// Fault injection for the shutdown-watchdog test: the shard whose id this environment
/// variable holds blocks its executor thread for ever when asked to stop.
pub const FAULT_WEDGE_SHARD_ENV: &str = "PETREL_FAULT_WEDGE_SHARD_ON_STOP";

/// Why the process could not run (or did not stop cleanly).
#[derive(thiserror::Error, Debug)]
pub enum RuntimeError {
    #[error("cannot start executors: {0}")]
    Executor(String),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error("shard {shard_id} failed to open: {reason}")]
    ShardOpen { shard_id: u16, reason: String },
    #[error("shard {shard} failed: {reason}")]
    ShardFailed { shard: u16, reason: String },
    #[error("not every shard came up within {timeout:?}: {missing}")]
    NotReady { timeout: Duration, missing: String },
    #[error("{wedged} did not stop within the shutdown deadline")]
    ShutdownTimeout { wedged: String },
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

/// Run the broker until SIGINT/SIGTERM (or a shard fails); see the module doc.
pub fn run_broker(config: BrokerConfig) -> Result<(), RuntimeError> {
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
    let (events, event_rx) = supervisor::events();
    supervisor::install_signal_handlers(events.clone())?;
    let (wirings, links) = wire_shards(&config, &events)?;
    drop(events);
    let startup_timeout = Duration::from_millis(config.startup_timeout_ms);
    let wiring = Arc::new(Wiring {
        next_index: AtomicUsize::new(0),
        shards: Mutex::new(wirings),
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
            async move { run_shard(wiring, config).await }
        })
        .map_err(|e| RuntimeError::Executor(e.to_string()))?;
    let outcome = supervisor::supervise(&links, &event_rx, startup_timeout);
    if let Err(e @ RuntimeError::ShutdownTimeout { .. }) = outcome {
        // A wedged executor thread cannot be joined; the caller exits the process.
        return Err(e);
    }
    join_within(handles, TEARDOWN_DEADLINE);
    outcome
}

/// Binds every listener (the embedded nameserver's first: it listens before any shard exists)
/// and makes each shard's mailbox, health record and start-up hand-off, plus the supervisor's
/// view of it. Runs on the main thread, before any executor starts.
fn wire_shards(
    config: &BrokerConfig,
    events: &EventSender,
) -> Result<(Vec<Option<ShardWiring>>, Vec<ShardLink>), RuntimeError> {
    let shards = usize::from(config.shards);
    let mut namesrv_listener = match config.namesrv_addr {
        Some(_) => None,
        None => {
            let addr = SocketAddr::new(config.bind_address, config.namesrv_listen_port);
            let l = listener::bind_std(addr)?;
            log::info!("nameserver (embedded, shard 0) listening on {addr}");
            Some(l)
        }
    };
    let mut mailboxes: Vec<Mailbox> = Vec::with_capacity(shards);
    let mut receivers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = mailbox(CONTROL_INBOX_MAX)?;
        mailboxes.push(tx);
        receivers.push(rx);
    }
    let epoch = Instant::now();
    let mut wirings = Vec::with_capacity(shards);
    let mut links = Vec::with_capacity(shards);
    for ((index, mailbox), own) in receivers.into_iter().enumerate().zip(&mailboxes) {
        let shard_id =
            u16::try_from(index).map_err(|_| RuntimeError::Wiring("too many shards".into()))?;
        let health = Arc::new(ShardHealth::new(shard_id, epoch));
        let peers = (0u16..)
            .zip(&mailboxes)
            .filter(|(i, _)| *i != shard_id)
            .map(|(i, m)| (i, m.clone()))
            .collect();
        wirings.push(Some(ShardWiring {
            shard_id,
            listener: listener::bind_std(config.bind_addr(shard_id))?,
            namesrv_listener: if index == 0 {
                namesrv_listener.take()
            } else {
                None
            },
            mailbox,
            peers,
            health: health.clone(),
            events: events.clone(),
        }));
        links.push(ShardLink {
            name: config.shard_broker_name(shard_id),
            mailbox: own.clone(),
            health,
        });
    }
    Ok((wirings, links))
}

/// Joins the stopped shards' threads (each frees its shard's memory first), but only once all
/// have finished, within `deadline`; past it the process exits without them.
fn join_within(handles: glommio::PoolThreadHandles<()>, deadline: Duration) {
    let started = Instant::now();
    while !handles
        .handles()
        .iter()
        .all(std::thread::JoinHandle::is_finished)
    {
        if started.elapsed() >= deadline {
            log::error!("shard executor threads still running {deadline:?} after stopping");
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for r in handles.join_all() {
        if let Err(e) = r {
            log::error!("shard executor: {e}");
        }
    }
}

/// What one executor takes at start.
struct ShardWiring {
    shard_id: u16,
    listener: std::net::TcpListener,
    namesrv_listener: Option<std::net::TcpListener>,
    mailbox: MailboxReceiver<ShardCommand>,
    peers: Vec<(u16, Mailbox)>,
    health: Arc<ShardHealth>,
    events: EventSender,
}

/// Start-up hand-off: executors take their `ShardWiring` in start order.
struct Wiring {
    next_index: AtomicUsize,
    shards: Mutex<Vec<Option<ShardWiring>>>,
}

async fn run_shard(wiring: Arc<Wiring>, config: Arc<BrokerConfig>) {
    let index = wiring.next_index.fetch_add(1, Ordering::AcqRel);
    let taken = wiring
        .shards
        .lock()
        .ok()
        .and_then(|mut w| w.get_mut(index).and_then(Option::take));
    drop(wiring);
    let Some(w) = taken else {
        log::error!("executor {index}: no shard wiring");
        return;
    };
    let (shard_id, events) = (w.shard_id, w.events.clone());
    // The heartbeat runs in a task queue of its own, latency-sensitive: it measures whether
    // the executor runs at all, not how long the request queue's backlog is (an overloaded
    // shard shows in request latency, not as a stall).
    let heartbeat_queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(HEARTBEAT_SHARES),
        glommio::Latency::Matters(HEARTBEAT_LATENCY),
        "heartbeat",
    );
    let heartbeat = health::run_heartbeat(w.health.clone());
    match glommio::spawn_local_into(heartbeat, heartbeat_queue) {
        Ok(task) => {
            task.detach();
        }
        Err(e) => log::error!("shard {}: no heartbeat task queue: {e}", w.shard_id),
    }
    log::debug!("shard {shard_id}: started");
    // A clean stop reports `Stopped` itself, once its store is flushed and checkpointed and
    // before the shard's memory is torn down (that can take a while after a long run, and is
    // not a stall).
    if let Err(e) = run_shard_wired(w, config).await {
        events.send(Event::Failed {
            shard: shard_id,
            reason: error_chain(&e),
        });
    }
}

/// Tells the supervisor how registration goes.
struct ReportTo {
    shard_id: u16,
    events: EventSender,
}

impl RegistrationReport for ReportTo {
    fn registered(&self) {
        self.events.send(Event::Registered(self.shard_id));
    }
    fn not_registered(&self, reason: String) {
        self.events.send(Event::NotRegistered {
            shard: self.shard_id,
            reason,
        });
    }
}

async fn run_shard_wired(w: ShardWiring, config: Arc<BrokerConfig>) -> Result<(), RuntimeError> {
    let ShardWiring {
        shard_id,
        listener: shard_listener,
        namesrv_listener,
        mailbox,
        peers,
        health,
        events,
    } = w;
    let config = Rc::new(BrokerConfig::clone(&config));
    let stop = Rc::new(StopSignal::default());
    let mailbox = mailbox.bind();

    // The embedded nameserver serves before this shard's (possibly long) store recovery.
    let namesrv_task = namesrv_listener.map(|l| {
        glommio::spawn_local(namesrv::serve(
            listener::into_glommio(l),
            Namesrv::new(),
            stop.clone(),
        ))
    });

    let (control, endpoints) = ControlHandle::new(shard_id, config.shards);
    glommio::spawn_local(control::run_forwarder(endpoints.outbox, peers)).detach();
    let ctx = ShardContext::new(shard_id, config.clone(), control.clone(), health);
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
    events.send(Event::Opened(shard_id));
    let control_receiver = {
        let (apply_to, stop) = (shard.clone(), stop.clone());
        glommio::spawn_local(control::run_receiver(
            mailbox,
            move |msg| {
                let shard = apply_to.clone();
                async move { shard.apply_control(msg).await }
            },
            move || stop.stop(),
        ))
    };

    let metrics_task = crate::metrics::start(&shard, &stop)?;

    let bind = config.bind_addr(shard_id);
    let shard_listener = listener::into_glommio(shard_listener);
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
        shard_listener,
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
        let report = ReportTo {
            shard_id,
            events: events.clone(),
        };
        glommio::spawn_local(reg.run(endpoints.register_now, stop.clone(), report))
    };

    stop.wait().await;
    log::info!("shard {shard_id}: stopping");
    wedge_if_asked(shard_id);
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
    events.send(Event::Stopped(shard_id));
    Ok(())
}

/// The shutdown watchdog's test: block this executor's thread for ever when
/// [`FAULT_WEDGE_SHARD_ENV`] names this shard.
fn wedge_if_asked(shard_id: u16) {
    let wanted = std::env::var(FAULT_WEDGE_SHARD_ENV).ok();
    if wanted.as_deref().map(str::trim) == Some(shard_id.to_string().as_str()) {
        log::warn!("shard {shard_id}: {FAULT_WEDGE_SHARD_ENV} is set: wedging this executor");
        loop {
            std::thread::park();
        }
    }
}

/// Run a standalone nameserver on `addr` until SIGINT/SIGTERM.
pub fn run_namesrv(addr: SocketAddr) -> Result<(), RuntimeError> {
    let (events, event_rx) = supervisor::events();
    supervisor::install_signal_handlers(events.clone())?;
    let std_listener = listener::bind_std(addr)?;
    let (stop_tx, stop_rx) = mailbox::<ShardCommand>(1)?;
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("namesrv")
        .io_memory(IO_MEMORY_BYTES)
        .ring_depth(RING_DEPTH)
        .preempt_timer(PREEMPT_TIMER)
        .spin_before_park(SPIN_BEFORE_PARK)
        .spawn(move || async move {
            let stop = Rc::new(StopSignal::default());
            let mut stop_rx = stop_rx.bind();
            let waiter = {
                let stop = stop.clone();
                glommio::spawn_local(async move {
                    let _ = stop_rx.recv().await;
                    stop.stop();
                })
            };
            log::info!("nameserver listening on {addr}");
            namesrv::serve(listener::into_glommio(std_listener), Namesrv::new(), stop).await;
            waiter.await;
            log::info!("nameserver stopped");
            events.send(Event::Stopped(0));
        })
        .map_err(|e| RuntimeError::Executor(e.to_string()))?;
    loop {
        match event_rx.recv() {
            Ok(Event::Signal(sig)) => {
                log::info!("signal {sig}: shutting down (again to exit at once)");
                let _ = stop_tx.try_send(ShardCommand::Stop);
            }
            Ok(Event::Stopped(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    handle
        .join()
        .map_err(|e| RuntimeError::Executor(e.to_string()))
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
