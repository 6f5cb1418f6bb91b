//! The open-loop producer. Each connection has a sender thread and a reader thread.
//!
//! The sender walks its share of a fixed-rate schedule ([`Schedule`]): at each intended
//! instant it sends every request that is due (one write for all of them), as long as
//! fewer than `max_in_flight` requests wait for a reply on the connection. When that bound
//! is hit, or the sender thread itself is late, the request goes out late but its latency
//! still counts from its intended instant: nothing a slow broker does can thin out the
//! schedule. The reader matches responses by opaque and records
//! - latency: intended send instant → response (what a user of the broker waits),
//! - service time: instant the sender took the request → response,
//! - and the sender records generator lag: instant taken − intended instant.
//!
//! A request counts in the measurement if its intended instant falls in the window
//! `[start + warmup, start + warmup + duration)`. The run's deadline is the window's end plus
//! `drain_timeout`. Every measured request enters the latency histogram: a SUCCESS at its
//! response, and every failure (a non-SUCCESS reply, no reply by the deadline, a closed
//! connection, a request the schedule owed but could not send) at the deadline, counted by
//! kind in `errors` as well (see [`crate::failure`]). So `latency.count == sends_measured`
//! in open loop, and a broker that refuses or drops requests cannot look fast.
//!
//! `Pacing::ClosedLoop` exists to show what coordinated omission hides: one request at a
//! time, the next one no earlier than its slot, latency from the actual send.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::codec::{self, body, response_code, RemotingCommand, SendCode, SendHeader};
use crate::failure;
use crate::route::Target;
use crate::schedule::{self, Schedule};
use crate::stats::{LatencyRecorder, LatencySummary};

/// A sender writes at most this much before it looks at the clock again.
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Reader poll interval while waiting for frames (bounds how long shutdown takes).
const READ_POLL: Duration = Duration::from_millis(20);
const READ_CHUNK_BYTES: usize = 128 * 1024;
/// Generator lag above this counts as a late send.
const SENT_LATE_THRESHOLD: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Pacing {
    /// Fixed-rate schedule, many requests in flight, latency from the intended send time.
    OpenLoop,
    /// One request in flight per connection, latency from the actual send (for comparison).
    ClosedLoop,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProduceConfig {
    pub topic: String,
    pub producer_group: String,
    /// Messages per second over all connections.
    pub rate_per_s: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    /// Per connection.
    pub max_in_flight: usize,
    pub body_size_bytes: usize,
    /// Messages per send; > 1 uses SEND_BATCH_MESSAGE.
    pub batch: usize,
    pub send_code: SendCode,
    pub pacing: Pacing,
    /// Latencies above this count as late.
    pub late_threshold: Duration,
    /// How long to wait for replies after the schedule ends.
    pub drain_timeout: Duration,
    /// Busy-wait the last part of each wait for the schedule (0 = sleep only).
    pub spin: Duration,
    /// Carried in every body; the e2e consumer only counts its own run's messages.
    pub run_id: u64,
    /// Keep the intended send time of every acknowledged send ([`ProduceResult::acked`]), for
    /// the end-to-end judgement.
    pub record_acked: bool,
}

impl ProduceConfig {
    /// A config with the defaults the CLI uses.
    pub fn new(topic: &str, rate_per_s: f64) -> ProduceConfig {
        ProduceConfig {
            topic: topic.to_string(),
            producer_group: "loadgen_producer".to_string(),
            rate_per_s,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            connections: 2,
            max_in_flight: 256,
            body_size_bytes: 128,
            batch: 1,
            send_code: SendCode::SendMessageV2,
            pacing: Pacing::OpenLoop,
            late_threshold: Duration::from_millis(10),
            drain_timeout: Duration::from_secs(10),
            spin: Duration::ZERO,
            run_id: 0,
            record_acked: false,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.rate_per_s > 0.0 && self.rate_per_s.is_finite()) {
            bail!("rate must be a positive number, got {}", self.rate_per_s);
        }
        if self.connections == 0 || self.max_in_flight == 0 || self.batch == 0 {
            bail!("connections, max in flight and batch must be at least 1");
        }
        if self.body_size_bytes < body::SIZE_MIN {
            bail!(
                "body size must be at least {} bytes (it carries the send time)",
                body::SIZE_MIN
            );
        }
        if self.duration.is_zero() {
            bail!("duration must be positive");
        }
        Ok(())
    }
}

/// Everything one produce run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ProduceResult {
    pub pacing: Pacing,
    pub rate_per_s: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub max_in_flight: usize,
    pub body_size_bytes: usize,
    pub batch: usize,
    pub targets: Vec<Target>,
    /// Messages scheduled in the window per second.
    pub offered_msgs_per_s: f64,
    /// Messages acknowledged SUCCESS within the window per second.
    pub achieved_msgs_per_s: f64,
    /// Sends whose intended time falls in the window.
    pub sends_measured: u64,
    pub sends_ok: u64,
    pub messages_ok: u64,
    /// Every measured send, intended time → outcome: a SUCCESS at its response, a failure at
    /// the run's deadline (`deadline_after_window_s` after the window's end).
    pub latency: LatencySummary,
    /// Seconds from the window's end to the run's deadline (the drain timeout): where failures
    /// are charged.
    pub deadline_after_window_s: f64,
    /// Actual send → SUCCESS response (failures are in `latency` and `errors`).
    pub service_time: LatencySummary,
    /// Actual send − intended send, per send.
    pub generator_lag: LatencySummary,
    /// Sends whose generator lag exceeded 1 ms.
    pub sent_late_count: u64,
    /// Successful sends under 1 ms / all measured sends (errors count as not under 1 ms).
    pub share_under_1ms: f64,
    /// Failed measured sends by kind: response code name, or TIMEOUT, CONNECTION_CLOSED,
    /// NOT_SENT. Each is also in `latency`, at the deadline.
    pub errors: BTreeMap<String, u64>,
    /// CPU time loadgen's whole process used during the run, in CPUs (1.0 = one core busy):
    /// on a small host the generator competes with the broker for the same cores.
    pub generator_cpu_cores: f64,
    /// Every send answered SUCCESS, warm-up included; filled only with `record_acked`.
    #[serde(skip)]
    pub acked: Vec<Acked>,
}

/// One send answered SUCCESS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// Its intended send instant, ns since [`schedule::epoch`] (what its bodies carry).
    pub intended_ns: u64,
    /// Messages it carried.
    pub messages: u32,
    /// Whether its intended instant is in the measured window.
    pub measured: bool,
}

impl ProduceResult {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Runs the schedule against `targets`, starting now (after connecting).
pub fn run(cfg: &ProduceConfig, targets: &[Target]) -> Result<ProduceResult> {
    run_at(cfg, targets, Instant::now() + Duration::from_millis(50))
}

/// Runs the schedule starting at `start` (the e2e mode shares it with its consumers).
pub fn run_at(cfg: &ProduceConfig, targets: &[Target], start: Instant) -> Result<ProduceResult> {
    cfg.validate()?;
    if targets.is_empty() || targets.iter().any(|t| t.queue_ids.is_empty()) {
        bail!("no queue to send to");
    }
    let _ = schedule::epoch();
    let window = Window {
        measure_start: start + cfg.warmup,
        measure_end: start + cfg.warmup + cfg.duration,
        deadline: start + cfg.warmup + cfg.duration + cfg.drain_timeout,
    };
    let connections = cfg.connections.max(targets.len());
    let sends_per_s = cfg.rate_per_s / cfg.batch as f64;
    let mut workers = Vec::with_capacity(connections);
    for c in 0..connections {
        let target = &targets[c % targets.len()];
        let stream = TcpStream::connect_timeout(&target.addr, Duration::from_secs(5))
            .with_context(|| format!("connect to {}", target.addr))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        let worker = ConnWorker {
            cfg: cfg.clone(),
            target: target.clone(),
            queue_cursor: c / targets.len(),
            schedule: Schedule::new(start, sends_per_s, c, connections),
            start,
            window,
        };
        workers.push(worker.spawn(stream)?);
    }
    let cpu_start = process_cpu_seconds();
    let wall_start = Instant::now();
    let mut total = ConnTotals::new(cfg.late_threshold);
    for (sender, reader) in workers {
        let s = sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
        let r = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        total.absorb_sender(s);
        total.absorb_reader(r);
    }
    let mut result = total.into_result(cfg, targets, connections);
    if let (Some(a), Some(b)) = (cpu_start, process_cpu_seconds()) {
        result.generator_cpu_cores = (b - a) / wall_start.elapsed().as_secs_f64().max(1e-9);
    }
    Ok(result)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, USER_HZ = 100).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[derive(Clone, Copy, Debug)]
struct Window {
    measure_start: Instant,
    measure_end: Instant,
    /// Where failures are charged; unanswered requests are given up at it.
    deadline: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.measure_end
    }
}

struct Pending {
    intended: Instant,
    taken: Instant,
    messages: u32,
    measured: bool,
}

#[derive(Default)]
struct ConnState {
    pending: HashMap<i32, Pending>,
    sender_done: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<ConnState>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        // A poisoned lock means the other thread panicked; its join reports that.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct ConnWorker {
    cfg: ProduceConfig,
    target: Target,
    queue_cursor: usize,
    schedule: Schedule,
    start: Instant,
    window: Window,
}

struct SenderOut {
    lag: LatencyRecorder,
    sent_late_count: u64,
    sends_measured: u64,
    offered_messages: u64,
    /// NOT_SENT requests, charged at the deadline.
    not_sent_latency: LatencyRecorder,
    errors: BTreeMap<String, u64>,
}

struct ReaderOut {
    latency: LatencyRecorder,
    service: LatencyRecorder,
    sends_ok: u64,
    messages_ok: u64,
    messages_ok_in_window: u64,
    errors: BTreeMap<String, u64>,
    acked: Vec<Acked>,
}

type Handles = (
    std::thread::JoinHandle<SenderOut>,
    std::thread::JoinHandle<ReaderOut>,
);

impl ConnWorker {
    fn spawn(self, stream: TcpStream) -> Result<Handles> {
        let shared = Arc::new(Shared {
            state: Mutex::new(ConnState::default()),
            cv: Condvar::new(),
        });
        let read_stream = stream.try_clone().context("clone socket")?;
        let send_end = self.window.measure_end;
        let reader = {
            let shared = Arc::clone(&shared);
            let late = self.cfg.late_threshold;
            let window = self.window;
            let record_acked = self.cfg.record_acked;
            std::thread::Builder::new()
                .name("loadgen-reader".into())
                .spawn(move || read_loop(read_stream, &shared, late, window, record_acked))
                .context("spawn reader")?
        };
        let sender = std::thread::Builder::new()
            .name("loadgen-sender".into())
            .spawn(move || self.send_loop(stream, &shared, send_end))
            .context("spawn sender")?;
        Ok((sender, reader))
    }

    fn send_loop(mut self, mut stream: TcpStream, shared: &Shared, send_end: Instant) -> SenderOut {
        let mut out = SenderOut {
            lag: LatencyRecorder::new(SENT_LATE_THRESHOLD),
            sent_late_count: 0,
            sends_measured: 0,
            offered_messages: 0,
            not_sent_latency: LatencyRecorder::new(self.cfg.late_threshold),
            errors: BTreeMap::new(),
        };
        let closed_loop = self.cfg.pacing == Pacing::ClosedLoop;
        let max_in_flight = if closed_loop {
            1
        } else {
            self.cfg.max_in_flight
        };
        let batch = self.cfg.batch;
        let mut write_buf = BytesMut::with_capacity(WRITE_BATCH_BYTES_MAX + 64 * 1024);
        let mut next_opaque: i32 = 1;
        let mut slot: u64 = 0;
        let mut closed_loop_next = self.start;
        // (opaque, intended) of the requests taken in one round.
        let mut round: Vec<(i32, Instant)> = Vec::with_capacity(64);
        loop {
            let first_intended = if closed_loop {
                closed_loop_next
            } else {
                self.schedule.intended(slot)
            };
            if first_intended >= send_end {
                break;
            }
            schedule::sleep_until(first_intended, self.cfg.spin);
            round.clear();
            {
                let mut st = shared.lock();
                while st.pending.len() >= max_in_flight && !st.closed {
                    st = shared
                        .cv
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if st.closed {
                    break;
                }
                let taken = Instant::now();
                let intended_first = if closed_loop {
                    taken.max(first_intended)
                } else {
                    first_intended
                };
                let mut intended = intended_first;
                loop {
                    let opaque = next_opaque;
                    next_opaque = next_opaque.wrapping_add(1);
                    let measured = self.window.contains(intended);
                    st.pending.insert(
                        opaque,
                        Pending {
                            intended,
                            taken,
                            messages: batch as u32,
                            measured,
                        },
                    );
                    round.push((opaque, intended));
                    slot += 1;
                    if closed_loop {
                        closed_loop_next = intended + self.schedule.interval();
                        break;
                    }
                    if round.len() * batch * self.cfg.body_size_bytes >= WRITE_BATCH_BYTES_MAX
                        || st.pending.len() >= max_in_flight
                    {
                        break;
                    }
                    intended = self.schedule.intended(slot);
                    if intended > taken || intended >= send_end {
                        break;
                    }
                }
                drop(st);
                for &(_, intended) in &round {
                    if self.window.contains(intended) {
                        let lag = taken.saturating_duration_since(intended);
                        out.lag.record(lag);
                        out.sends_measured += 1;
                        out.offered_messages += batch as u64;
                        if lag > SENT_LATE_THRESHOLD {
                            out.sent_late_count += 1;
                        }
                    }
                }
            }
            write_buf.clear();
            let born_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            for &(opaque, intended) in &round {
                let mut request = self.build_request(intended, born_ms);
                request.opaque = opaque;
                request.encode(&mut write_buf);
            }
            if let Err(e) = stream.write_all(&write_buf) {
                log::warn!("write to {} failed: {e}", self.target.addr);
                let mut st = shared.lock();
                st.closed = true;
                shared.cv.notify_all();
                break;
            }
        }
        // Sends the schedule still owed in the window but never sent (connection closed).
        if !closed_loop {
            loop {
                let intended = self.schedule.intended(slot);
                if intended >= send_end {
                    break;
                }
                if self.window.contains(intended) {
                    failure::charge(
                        &mut out.not_sent_latency,
                        &mut out.errors,
                        failure::NOT_SENT,
                        intended,
                        self.window.deadline,
                    );
                    out.sends_measured += 1;
                    out.offered_messages += batch as u64;
                }
                slot += 1;
            }
        }
        let mut st = shared.lock();
        st.sender_done = true;
        shared.cv.notify_all();
        out
    }

    fn build_request(&mut self, intended: Instant, born_ms: i64) -> RemotingCommand {
        let queue_id = self.target.queue_ids[self.queue_cursor % self.target.queue_ids.len()];
        self.queue_cursor = self.queue_cursor.wrapping_add(1);
        let header = SendHeader {
            producer_group: &self.cfg.producer_group,
            topic: &self.cfg.topic,
            queue_id,
            born_timestamp_ms: born_ms,
        };
        let intended_ns = schedule::epoch_ns(intended);
        let make_body = || body::encode(self.cfg.body_size_bytes, self.cfg.run_id, intended_ns);
        if self.cfg.batch > 1 {
            let bodies: Vec<Bytes> = (0..self.cfg.batch).map(|_| make_body()).collect();
            codec::batch_request(&header, &bodies)
        } else {
            codec::send_request(self.cfg.send_code, &header, make_body())
        }
    }
}

fn read_loop(
    mut stream: TcpStream,
    shared: &Shared,
    late_threshold: Duration,
    window: Window,
    record_acked: bool,
) -> ReaderOut {
    let mut out = ReaderOut {
        latency: LatencyRecorder::new(late_threshold),
        service: LatencyRecorder::new(late_threshold),
        sends_ok: 0,
        messages_ok: 0,
        messages_ok_in_window: 0,
        errors: BTreeMap::new(),
        acked: Vec::new(),
    };
    let _ = stream.set_read_timeout(Some(READ_POLL));
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES * 2);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut responses: Vec<(i32, i32)> = Vec::with_capacity(256);
    let mut closed_reason: Option<&'static str> = None;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => closed_reason = Some(failure::CONNECTION_CLOSED),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("read failed: {e}");
                closed_reason = Some(failure::CONNECTION_CLOSED);
            }
        }
        let now = Instant::now();
        responses.clear();
        loop {
            match RemotingCommand::decode(&mut buf, codec::FRAME_SIZE_MAX) {
                Ok(Some(cmd)) => {
                    if cmd.is_response() {
                        responses.push((cmd.opaque, cmd.code));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("malformed frame: {e}");
                    closed_reason = Some(failure::CONNECTION_CLOSED);
                    break;
                }
            }
        }
        let mut st = shared.lock();
        for &(opaque, code) in &responses {
            let Some(p) = st.pending.remove(&opaque) else {
                continue;
            };
            if code == response_code::SUCCESS {
                out.sends_ok += 1;
                out.messages_ok += u64::from(p.messages);
                if window.contains(now) {
                    out.messages_ok_in_window += u64::from(p.messages);
                }
                if p.measured {
                    out.latency
                        .record(now.saturating_duration_since(p.intended));
                    out.service.record(now.saturating_duration_since(p.taken));
                }
                if record_acked {
                    out.acked.push(Acked {
                        intended_ns: schedule::epoch_ns(p.intended),
                        messages: p.messages,
                        measured: p.measured,
                    });
                }
            } else if p.measured {
                failure::charge(
                    &mut out.latency,
                    &mut out.errors,
                    &codec::response_code_name(code),
                    p.intended,
                    window.deadline,
                );
            }
        }
        if !responses.is_empty() {
            shared.cv.notify_all();
        }
        let drained = st.sender_done && st.pending.is_empty();
        let timed_out = now >= window.deadline;
        if drained || timed_out || closed_reason.is_some() {
            let reason = closed_reason.unwrap_or(failure::TIMEOUT);
            for p in st.pending.values().filter(|p| p.measured) {
                failure::charge(
                    &mut out.latency,
                    &mut out.errors,
                    reason,
                    p.intended,
                    window.deadline,
                );
            }
            st.pending.clear();
            st.closed = true;
            shared.cv.notify_all();
            return out;
        }
    }
}

struct ConnTotals {
    latency: LatencyRecorder,
    service: LatencyRecorder,
    lag: LatencyRecorder,
    sent_late_count: u64,
    sends_measured: u64,
    offered_messages: u64,
    sends_ok: u64,
    messages_ok: u64,
    messages_ok_in_window: u64,
    errors: BTreeMap<String, u64>,
    acked: Vec<Acked>,
}

impl ConnTotals {
    fn new(late_threshold: Duration) -> ConnTotals {
        ConnTotals {
            latency: LatencyRecorder::new(late_threshold),
            service: LatencyRecorder::new(late_threshold),
            lag: LatencyRecorder::new(SENT_LATE_THRESHOLD),
            sent_late_count: 0,
            sends_measured: 0,
            offered_messages: 0,
            sends_ok: 0,
            messages_ok: 0,
            messages_ok_in_window: 0,
            errors: BTreeMap::new(),
            acked: Vec::new(),
        }
    }

    fn absorb_sender(&mut self, s: SenderOut) {
        self.lag.merge(&s.lag);
        self.sent_late_count += s.sent_late_count;
        self.sends_measured += s.sends_measured;
        self.offered_messages += s.offered_messages;
        self.latency.merge(&s.not_sent_latency);
        for (k, v) in s.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
    }

    fn absorb_reader(&mut self, r: ReaderOut) {
        self.latency.merge(&r.latency);
        self.service.merge(&r.service);
        self.sends_ok += r.sends_ok;
        self.messages_ok += r.messages_ok;
        self.messages_ok_in_window += r.messages_ok_in_window;
        for (k, v) in r.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        self.acked.extend(r.acked);
    }

    fn into_result(
        self,
        cfg: &ProduceConfig,
        targets: &[Target],
        connections: usize,
    ) -> ProduceResult {
        let secs = cfg.duration.as_secs_f64();
        let share = if self.sends_measured == 0 {
            0.0
        } else {
            self.latency.under_1ms_count() as f64 / self.sends_measured as f64
        };
        ProduceResult {
            pacing: cfg.pacing,
            rate_per_s: cfg.rate_per_s,
            duration_s: secs,
            warmup_s: cfg.warmup.as_secs_f64(),
            connections,
            max_in_flight: if cfg.pacing == Pacing::ClosedLoop {
                1
            } else {
                cfg.max_in_flight
            },
            body_size_bytes: cfg.body_size_bytes,
            batch: cfg.batch,
            targets: targets.to_vec(),
            offered_msgs_per_s: self.offered_messages as f64 / secs,
            achieved_msgs_per_s: self.messages_ok_in_window as f64 / secs,
            sends_measured: self.sends_measured,
            sends_ok: self.sends_ok,
            messages_ok: self.messages_ok,
            latency: self.latency.summary(),
            deadline_after_window_s: cfg.drain_timeout.as_secs_f64(),
            service_time: self.service.summary(),
            generator_lag: self.lag.summary(),
            sent_late_count: self.sent_late_count,
            share_under_1ms: share,
            errors: self.errors,
            generator_cpu_cores: 0.0,
            acked: self.acked,
        }
    }
}
