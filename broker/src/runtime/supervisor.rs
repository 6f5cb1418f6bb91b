//! The supervisor: the main thread's watch over the shards. It owns the start-up and shutdown
//! contracts and the stall detector.
//!
//! - **Start-up.** Every shard must open its store and register with every nameserver within
//!   `startupTimeoutMs` (default 10 s). Then it logs one line,
//!   `ready: N shards registered as <names>`. A shard that fails, or is not registered in time,
//!   is named with its reason, every shard is stopped, and the process exits non-zero: it never
//!   serves with a shard missing.
//! - **Shutdown.** On SIGINT/SIGTERM (or a failed shard) it sends `Stop` to every shard's mailbox
//!   (a real wake-up) and waits for each to report that it stopped (drain ≤ 5 s, then flush and
//!   checkpoint). A shard that has not stopped by [`SHUTDOWN_DEADLINE`] is named, and the process
//!   exits non-zero without it: acknowledged SYNC_FLUSH data is already durable.
//! - **Stalls.** Every [`SUPERVISOR_TICK`] it reads each running shard's heartbeat
//!   (`shard::health`); a heartbeat overdue by more than `STALL_THRESHOLD` is one stall episode:
//!   a warning, and `petrel_shard_stalls_total{shard}` grows by one.
//!
//! Runs on the process's main thread (no executor); talks to shards only through their
//! mailboxes (`crate::mailbox`) and the bounded event channel they report on.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shard::control::{Mailbox, ShardCommand};
use crate::shard::health::{ShardHealth, STALL_THRESHOLD};

use super::RuntimeError;

/// How often the supervisor looks at deadlines and heartbeats.
pub const SUPERVISOR_TICK: Duration = Duration::from_millis(100);
/// From the stop request to the process's exit at the latest: the shards' drain (5 s) plus
/// their flush and checkpoint.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// Capacity of the event channel (a few events per shard over the process's life).
pub const EVENTS_MAX: usize = 1024;

/// What shards and the signal thread tell the supervisor.
#[derive(Debug)]
pub enum Event {
    /// The shard's store and metadata are open.
    Opened(u16),
    /// A registration round failed before the shard was first registered.
    NotRegistered { shard: u16, reason: String },
    /// Every nameserver accepted the shard's registration.
    Registered(u16),
    /// The shard's task ended with an error.
    Failed { shard: u16, reason: String },
    /// The shard stopped cleanly (store flushed and checkpointed).
    Stopped(u16),
    /// SIGINT or SIGTERM.
    Signal(i32),
}

/// The sending side shards and the signal thread use. Never blocks an executor.
#[derive(Clone)]
pub struct EventSender(SyncSender<Event>);

impl EventSender {
    pub fn send(&self, event: Event) {
        if let Err(TrySendError::Full(e)) = self.0.try_send(event) {
            log::error!("supervisor event channel full; dropped {e:?}");
        }
    }
}

/// A bounded event channel.
pub fn events() -> (EventSender, Receiver<Event>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(EVENTS_MAX);
    (EventSender(tx), rx)
}

/// Install SIGINT/SIGTERM handling: the first signal becomes [`Event::Signal`]; a second one
/// exits at once (status 130).
pub fn install_signal_handlers(events: EventSender) -> Result<(), RuntimeError> {
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
                    events.send(Event::Signal(sig));
                } else {
                    log::warn!("signal {sig} again: exiting now");
                    std::process::exit(130);
                }
            }
        })
        .map_err(RuntimeError::Signals)?;
    Ok(())
}

/// One shard as the supervisor sees it.
pub struct ShardLink {
    pub name: String,
    pub mailbox: Mailbox,
    pub health: Arc<ShardHealth>,
}

#[derive(Default)]
struct ShardState {
    is_opened: bool,
    is_registered: bool,
    is_done: bool,
    is_stop_sent: bool,
    is_stalled: bool,
    last_problem: Option<String>,
}

/// Watch `shards` until every one has stopped (or the shutdown deadline passed). `Ok` when the
/// process came up and stopped cleanly on request; otherwise the first failure.
pub fn supervise(
    shards: &[ShardLink],
    events: &Receiver<Event>,
    startup_timeout: Duration,
) -> Result<(), RuntimeError> {
    let started = Instant::now();
    let mut state: Vec<ShardState> = shards.iter().map(|_| ShardState::default()).collect();
    let mut is_serving = false;
    let mut stopping_since: Option<Instant> = None;
    let mut failure: Option<RuntimeError> = None;
    loop {
        match events.recv_timeout(SUPERVISOR_TICK) {
            Ok(event) => match apply(event, &mut state, stopping_since.is_some()) {
                Verdict::Carry => {}
                Verdict::Stop => {
                    stopping_since.get_or_insert_with(Instant::now);
                }
                Verdict::Fail(f) => {
                    failure.get_or_insert(f);
                    stopping_since.get_or_insert_with(Instant::now);
                }
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(RuntimeError::Wiring(
                    "supervisor event channel closed".into(),
                ))
            }
        }
        if !is_serving && state.iter().all(|s| s.is_registered) {
            is_serving = true;
            let names: Vec<&str> = shards.iter().map(|s| s.name.as_str()).collect();
            log::info!(
                "ready: {} shards registered as {} in {} ms",
                shards.len(),
                names.join(", "),
                started.elapsed().as_millis()
            );
        }
        if !is_serving && stopping_since.is_none() && started.elapsed() >= startup_timeout {
            let missing = not_ready(shards, &state);
            log::error!("start-up: not every shard came up within {startup_timeout:?}: {missing}");
            failure = Some(RuntimeError::NotReady {
                timeout: startup_timeout,
                missing,
            });
            stopping_since = Some(Instant::now());
        }
        detect_stalls(shards, &mut state);
        if let Some(since) = stopping_since {
            send_stops(shards, &mut state);
            if state.iter().all(|s| s.is_done) {
                break;
            }
            if since.elapsed() >= SHUTDOWN_DEADLINE {
                let wedged: Vec<String> = shards
                    .iter()
                    .zip(&state)
                    .filter(|(_, s)| !s.is_done)
                    .map(|(l, _)| format!("shard {} ({})", l.health.shard_id(), l.name))
                    .collect();
                let wedged = wedged.join(", ");
                log::error!(
                    "shutdown: {wedged} did not stop within {SHUTDOWN_DEADLINE:?}; exiting without \
                     it (acknowledged SYNC_FLUSH data is already durable)"
                );
                log_stalls(shards);
                return Err(RuntimeError::ShutdownTimeout { wedged });
            }
        }
    }
    log_stalls(shards);
    failure.map_or(Ok(()), Err)
}

/// What an event means for the process.
enum Verdict {
    Carry,
    /// A clean stop request (a signal).
    Stop,
    Fail(RuntimeError),
}

/// Record `event` in the state of the shard it is about.
fn apply(event: Event, state: &mut [ShardState], is_stopping: bool) -> Verdict {
    let shard = match &event {
        Event::Opened(i) | Event::Registered(i) | Event::Stopped(i) => Some(*i),
        Event::NotRegistered { shard, .. } | Event::Failed { shard, .. } => Some(*shard),
        Event::Signal(_) => None,
    };
    let mut unknown = ShardState::default();
    let s = shard
        .and_then(|i| state.get_mut(usize::from(i)))
        .unwrap_or(&mut unknown);
    match event {
        Event::Opened(_) => s.is_opened = true,
        Event::NotRegistered { reason, .. } => s.last_problem = Some(reason),
        Event::Registered(_) => s.is_registered = true,
        Event::Failed { shard, reason } => {
            s.is_done = true;
            log::error!("shard {shard} failed: {reason}");
            return Verdict::Fail(RuntimeError::ShardFailed { shard, reason });
        }
        Event::Stopped(shard) => {
            s.is_done = true;
            if !is_stopping {
                let reason = "stopped without being asked to".to_string();
                log::error!("shard {shard} {reason}");
                return Verdict::Fail(RuntimeError::ShardFailed { shard, reason });
            }
        }
        Event::Signal(sig) => {
            log::info!("signal {sig}: shutting down (again to exit at once)");
            return Verdict::Stop;
        }
    }
    Verdict::Carry
}

/// Every shard not yet registered, with why.
fn not_ready(shards: &[ShardLink], state: &[ShardState]) -> String {
    let mut out = Vec::new();
    for (link, s) in shards.iter().zip(state) {
        if s.is_registered {
            continue;
        }
        let why = if !s.is_opened {
            "its store did not open".to_string()
        } else if let Some(problem) = &s.last_problem {
            format!("not registered: {problem}")
        } else {
            "not registered: no nameserver answered".to_string()
        };
        out.push(format!(
            "shard {} ({}): {why}",
            link.health.shard_id(),
            link.name
        ));
    }
    out.join("; ")
}

fn send_stops(shards: &[ShardLink], state: &mut [ShardState]) {
    for (link, s) in shards.iter().zip(state.iter_mut()) {
        if s.is_done || s.is_stop_sent {
            continue;
        }
        match link.mailbox.try_send(ShardCommand::Stop) {
            // Disconnected: the shard's receiver is gone; it will report how it ended.
            Ok(()) | Err(TrySendError::Disconnected(_)) => s.is_stop_sent = true,
            // Full: try again at the next tick.
            Err(TrySendError::Full(_)) => {}
        }
    }
}

fn detect_stalls(shards: &[ShardLink], state: &mut [ShardState]) {
    for (link, s) in shards.iter().zip(state.iter_mut()) {
        if s.is_done {
            continue;
        }
        let overdue = link.health.overdue();
        if overdue > STALL_THRESHOLD && !s.is_stalled {
            s.is_stalled = true;
            link.health.count_stall();
            log::warn!(
                "shard {} stalled: it has had due work for {} ms without running ({})",
                link.health.shard_id(),
                overdue.as_millis(),
                link.health.thread_state()
            );
        } else if overdue <= STALL_THRESHOLD && s.is_stalled {
            s.is_stalled = false;
            log::info!("shard {} runs again", link.health.shard_id());
        }
    }
}

fn log_stalls(shards: &[ShardLink]) {
    let counts: Vec<String> = shards
        .iter()
        .map(|l| format!("shard {}: {}", l.health.shard_id(), l.health.stalls_total()))
        .collect();
    log::info!("shard stalls: {}", counts.join(", "));
}
