//! Metrics: per-shard counters (`ShardMetrics`, owned by one shard, plain `Cell`s) and their
//! Prometheus text exposition, served over a tiny HTTP/1.1 listener.
//!
//! Each shard serves its own numbers on `metricsPort + i` (broker.conf key `metricsPort`,
//! Petrel's own; `0`, the default, disables it). There is no cross-shard hop: a scraper lists
//! one target per shard, and every series carries `shard="<i>"`, so a `sum by` over the
//! targets gives the broker's totals.
//!
//! What is counted, and where: `processor::dispatch` calls [`ShardMetrics::observe`] once per
//! request with the request code, the outcome and the time the processor took. Sends count
//! messages (a batch counts each of its messages), body bytes, failures by response code, and
//! their latency as the client sees it (including the SYNC_FLUSH wait; the engine does not
//! time its flushes, it only counts them: `petrel_commitlog_flushes_total`). Pulls count
//! requests, found messages and bytes. Gauges (held pulls, commitlog offsets, store health)
//! are read from the shard when scraped.
//!
//! Invariants: counters only grow; the TPS sample ring holds at most `TPS_SAMPLES_MAX` entries;
//! the HTTP side serves at most `HTTP_CONNECTIONS_MAX` connections at once, reads at most
//! `HTTP_REQUEST_BYTES_MAX` bytes of request and gives a slow client `HTTP_TIMEOUT`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::future;

use crate::error::BrokerError;
use crate::listener::{bind_listener, ListenError};
use crate::remoting::connection::StopSignal;
use crate::remoting::{RemotingCommand, RequestCode, ResponseCode};
use crate::shard::Shard;

/// Upper bounds (µs) of the send latency histogram buckets; `+Inf` is implied.
pub const SEND_LATENCY_BUCKETS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];
/// One TPS sample per second at most, kept for the longest window (600 s) plus one.
pub const TPS_SAMPLES_MAX: usize = 601;
/// Concurrent HTTP connections served per shard; more are closed at once.
pub const HTTP_CONNECTIONS_MAX: usize = 16;
/// Largest HTTP request head read.
pub const HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Read/write timeout of an HTTP connection.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Send outcomes other than SUCCESS, by response code, as the `code` label.
const PUT_ERROR_KINDS: [(i32, &str); 9] = [
    (ResponseCode::FLUSH_DISK_TIMEOUT, "flush_disk_timeout"),
    (ResponseCode::MESSAGE_ILLEGAL, "message_illegal"),
    (ResponseCode::SYSTEM_BUSY, "system_busy"),
    (ResponseCode::SERVICE_NOT_AVAILABLE, "service_not_available"),
    (ResponseCode::NO_PERMISSION, "no_permission"),
    (ResponseCode::TOPIC_NOT_EXIST, "topic_not_exist"),
    (ResponseCode::INVALID_PARAMETER, "invalid_parameter"),
    (ResponseCode::SYSTEM_ERROR, "system_error"),
    (i32::MIN, "other"),
];

/// Counters of one shard. Owned by that shard; never crosses cores.
pub struct ShardMetrics {
    boot_timestamp_ms: i64,
    messages_put: Cell<u64>,
    bytes_put: Cell<u64>,
    put_errors: [Cell<u64>; PUT_ERROR_KINDS.len()],
    send_latency_buckets: [Cell<u64>; SEND_LATENCY_BUCKETS_US.len() + 1],
    send_latency_sum_us: Cell<u64>,
    send_latency_count: Cell<u64>,
    pulls: Cell<u64>,
    pulled_messages: Cell<u64>,
    pulled_bytes: Cell<u64>,
    /// (when, messages put, messages pulled), newest last, one per second at most.
    tps_samples: RefCell<VecDeque<TpsSample>>,
}

#[derive(Clone, Copy)]
struct TpsSample {
    at: Instant,
    put: u64,
    got: u64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardMetrics {
    pub fn new() -> Self {
        let sample = TpsSample {
            at: Instant::now(),
            put: 0,
            got: 0,
        };
        Self {
            boot_timestamp_ms: crate::shard::now_ms(),
            messages_put: Cell::new(0),
            bytes_put: Cell::new(0),
            put_errors: Default::default(),
            send_latency_buckets: Default::default(),
            send_latency_sum_us: Cell::new(0),
            send_latency_count: Cell::new(0),
            pulls: Cell::new(0),
            pulled_messages: Cell::new(0),
            pulled_bytes: Cell::new(0),
            tps_samples: RefCell::new(VecDeque::from([sample])),
        }
    }

    /// Records one handled request: `code` is the request code, `result` what the processor
    /// returned, `elapsed` how long it took (for sends: until the response was ready).
    pub fn observe(
        &self,
        code: i32,
        req: &RemotingCommand,
        result: &Result<RemotingCommand, BrokerError>,
        elapsed: Duration,
    ) {
        let response_code = match result {
            Ok(r) => r.code,
            Err(e) => e.response_code(),
        };
        match code {
            RequestCode::SEND_MESSAGE
            | RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE => {
                // FLUSH_DISK_TIMEOUT and the slave codes mean "stored": count the message.
                let is_stored = matches!(
                    response_code,
                    ResponseCode::SUCCESS
                        | ResponseCode::FLUSH_DISK_TIMEOUT
                        | ResponseCode::FLUSH_SLAVE_TIMEOUT
                        | ResponseCode::SLAVE_NOT_AVAILABLE
                );
                if is_stored {
                    let count = match result {
                        Ok(r) if code == RequestCode::SEND_BATCH_MESSAGE => r
                            .ext("msgId")
                            .map_or(1, |ids| ids.split(',').count() as u64),
                        _ => 1,
                    };
                    add(&self.messages_put, count);
                    add(&self.bytes_put, req.body.len() as u64);
                }
                if response_code != ResponseCode::SUCCESS {
                    let kind = PUT_ERROR_KINDS
                        .iter()
                        .position(|(c, _)| *c == response_code)
                        .unwrap_or(PUT_ERROR_KINDS.len() - 1);
                    if let Some(cell) = self.put_errors.get(kind) {
                        add(cell, 1);
                    }
                }
                self.observe_send_latency(elapsed);
                self.sample_tps();
            }
            RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
                add(&self.pulls, 1);
                if let Ok(r) = result {
                    if r.code == ResponseCode::SUCCESS {
                        add(&self.pulled_messages, count_records(&r.body));
                        add(&self.pulled_bytes, r.body.len() as u64);
                    }
                }
                self.sample_tps();
            }
            _ => {}
        }
    }

    fn observe_send_latency(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = SEND_LATENCY_BUCKETS_US
            .iter()
            .position(|le| us <= *le)
            .unwrap_or(SEND_LATENCY_BUCKETS_US.len());
        if let Some(cell) = self.send_latency_buckets.get(bucket) {
            add(cell, 1);
        }
        add(&self.send_latency_count, 1);
        self.send_latency_sum_us
            .set(self.send_latency_sum_us.get().saturating_add(us));
    }

    /// Takes a sample if the newest is a second old or more.
    fn sample_tps(&self) {
        let now = Instant::now();
        let mut samples = self.tps_samples.borrow_mut();
        if samples
            .back()
            .is_some_and(|s| now.duration_since(s.at) < Duration::from_secs(1))
        {
            return;
        }
        if samples.len() >= TPS_SAMPLES_MAX {
            samples.pop_front();
        }
        samples.push_back(TpsSample {
            at: now,
            put: self.messages_put.get(),
            got: self.pulled_messages.get(),
        });
    }

    /// Messages per second put and pulled over the last `window` (from the oldest sample
    /// inside it, or the oldest kept).
    pub fn tps(&self, window: Duration) -> (f64, f64) {
        let now = Instant::now();
        let samples = self.tps_samples.borrow();
        let from = samples
            .iter()
            .find(|s| now.duration_since(s.at) <= window)
            .or(samples.back())
            .copied();
        let Some(from) = from else {
            return (0.0, 0.0);
        };
        let secs = now.duration_since(from.at).as_secs_f64();
        if secs < 0.001 {
            return (0.0, 0.0);
        }
        let put = self.messages_put.get().saturating_sub(from.put) as f64 / secs;
        let got = self.pulled_messages.get().saturating_sub(from.got) as f64 / secs;
        (put, got)
    }

    pub fn boot_timestamp_ms(&self) -> i64 {
        self.boot_timestamp_ms
    }

    /// Messages stored by sends since the shard started.
    pub fn messages_put(&self) -> u64 {
        self.messages_put.get()
    }

    /// Body bytes of stored sends since the shard started.
    pub fn bytes_put(&self) -> u64 {
        self.bytes_put.get()
    }

    /// Messages returned by pulls since the shard started.
    pub fn pulled_messages(&self) -> u64 {
        self.pulled_messages.get()
    }
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().saturating_add(n));
}

/// Records in a pull body: each starts with its total size (big-endian i32, REMOTING.md §4.1).
fn count_records(body: &[u8]) -> u64 {
    let mut count = 0;
    let mut at = 0usize;
    while let Some(prefix) = at.checked_add(4).and_then(|end| body.get(at..end)) {
        let Ok(prefix) = <[u8; 4]>::try_from(prefix) else {
            break;
        };
        let size = u32::from_be_bytes(prefix) as usize;
        if size < 4 {
            break;
        }
        count += 1;
        at = at.saturating_add(size);
    }
    count
}

/// The Prometheus text exposition (format 0.0.4) of one shard.
pub fn render(shard: &Shard) -> String {
    let m = shard.metrics();
    let store = shard.store();
    let s = shard.id();
    let mut out = String::with_capacity(4096);
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name}{{shard=\"{s}\"}} {value}");
    };
    counter(
        "petrel_messages_put_total",
        "Messages stored by SEND_MESSAGE/_V2/SEND_BATCH_MESSAGE.",
        m.messages_put.get(),
    );
    counter(
        "petrel_bytes_put_total",
        "Request body bytes of stored sends.",
        m.bytes_put.get(),
    );
    counter(
        "petrel_pull_requests_total",
        "PULL_MESSAGE and LITE_PULL_MESSAGE requests answered.",
        m.pulls.get(),
    );
    counter(
        "petrel_pulled_messages_total",
        "Messages returned by pulls.",
        m.pulled_messages.get(),
    );
    counter(
        "petrel_pulled_bytes_total",
        "Bytes of messages returned by pulls.",
        m.pulled_bytes.get(),
    );
    counter(
        "petrel_commitlog_flushes_total",
        "Completed commitlog fdatasync rounds (group commits).",
        store.flush_count(),
    );
    counter(
        "petrel_shard_stalls_total",
        "Times this shard's executor had due work and did not run it for over 100 ms.",
        shard.context().health.stalls_total(),
    );

    let name = "petrel_put_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Sends not answered SUCCESS, by response code.\n# TYPE {name} counter"
    );
    for ((_, kind), cell) in PUT_ERROR_KINDS.iter().zip(&m.put_errors) {
        let _ = writeln!(
            out,
            "{name}{{shard=\"{s}\",code=\"{kind}\"}} {}",
            cell.get()
        );
    }

    let name = "petrel_send_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a send request's dispatch to its response (includes the \
         SYNC_FLUSH wait).\n# TYPE {name} histogram"
    );
    let mut cumulative = 0u64;
    for (i, cell) in m.send_latency_buckets.iter().enumerate() {
        cumulative = cumulative.saturating_add(cell.get());
        let le = SEND_LATENCY_BUCKETS_US
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |us| seconds(*us));
        let _ = writeln!(
            out,
            "{name}_bucket{{shard=\"{s}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_sum{{shard=\"{s}\"}} {}",
        seconds(m.send_latency_sum_us.get())
    );
    let _ = writeln!(
        out,
        "{name}_count{{shard=\"{s}\"}} {}",
        m.send_latency_count.get()
    );

    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name}{{shard=\"{s}\"}} {value}");
    };
    gauge(
        "petrel_held_pulls",
        "Pulls held for long polling right now.",
        shard.long_polls().held_count() as u64,
    );
    gauge(
        "petrel_commitlog_max_offset_bytes",
        "End of the commitlog (next record's offset).",
        store.max_commit_log_offset().0,
    );
    gauge(
        "petrel_commitlog_min_offset_bytes",
        "Lowest retained commitlog offset.",
        store.min_commit_log_offset().0,
    );
    gauge(
        "petrel_commitlog_durable_offset_bytes",
        "Commitlog offset below which everything is fdatasync'ed.",
        store.durable_commit_log_offset().0,
    );
    gauge(
        "petrel_tail_cache_bytes",
        "Bytes held by the commitlog tail cache.",
        store.tail_cache_size_bytes() as u64,
    );
    gauge(
        "petrel_store_poisoned",
        "1 when a failed write or fdatasync poisoned the store.",
        u64::from(store.is_poisoned()),
    );
    gauge(
        "petrel_store_disk_full",
        "1 when writes are refused because the disk is too full.",
        u64::from(store.is_disk_full()),
    );
    gauge(
        "petrel_topics",
        "Topics in this shard's topic table.",
        shard.topics().len() as u64,
    );
    gauge(
        "petrel_boot_timestamp_seconds",
        "When this shard started (Unix time).",
        u64::try_from(m.boot_timestamp_ms / 1000).unwrap_or(0),
    );
    out
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Binds `bindAddress:metricsPort + shard_id` and serves this shard's metrics until `stop`;
/// `None` when `metricsPort` is 0. Call inside the shard's executor.
pub fn start(
    shard: &Rc<Shard>,
    stop: &Rc<StopSignal>,
) -> Result<Option<glommio::Task<()>>, ListenError> {
    let config = &shard.context().config;
    if config.metrics_port == 0 {
        return Ok(None);
    }
    let addr = SocketAddr::new(
        config.bind_address,
        config.metrics_port.saturating_add(shard.id()),
    );
    let listener = bind_listener(addr)?;
    log::info!("shard {} metrics on http://{addr}/metrics", shard.id());
    Ok(Some(glommio::spawn_local(serve(
        listener,
        shard.clone(),
        stop.clone(),
    ))))
}

/// Accepts HTTP connections until `stop`.
pub async fn serve(listener: glommio::net::TcpListener, shard: Rc<Shard>, stop: Rc<StopSignal>) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                log::debug!("shard {}: metrics accept: {e}", shard.id());
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= HTTP_CONNECTIONS_MAX {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (shard, open) = (shard.clone(), open.clone());
        glommio::spawn_local(async move {
            if let Err(e) = answer(stream, &shard).await {
                log::debug!("shard {}: metrics connection: {e}", shard.id());
            }
            open.set(open.get().saturating_sub(1));
        })
        .detach();
    }
}

/// One request, one response, then close (`Connection: close`).
async fn answer(mut stream: glommio::net::TcpStream, shard: &Shard) -> std::io::Result<()> {
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= HTTP_REQUEST_BYTES_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|b| *b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => {
            let body = render(shard);
            respond(&mut stream, "200 OK", &body).await
        }
        (Some(b"GET"), _) => respond(&mut stream, "404 Not Found", "not found\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "").await,
    }
}

async fn respond(
    stream: &mut glommio::net::TcpStream,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_a_pull_body_are_counted_by_their_size_prefix() {
        let mut body = Vec::new();
        for size in [20u32, 8, 12] {
            body.extend_from_slice(&size.to_be_bytes());
            body.resize(body.len() + size as usize - 4, 0);
        }
        assert_eq!(count_records(&body), 3);
        assert_eq!(count_records(&[0, 0]), 0);
        assert_eq!(count_records(&[0, 0, 0, 1, 9]), 0);
    }

    #[test]
    fn sends_fill_counters_and_latency_buckets() {
        let m = ShardMetrics::new();
        let req = RemotingCommand::request(RequestCode::SEND_BATCH_MESSAGE)
            .with_body(bytes::Bytes::from_static(b"0123456789"));
        let ok =
            Ok(RemotingCommand::response(ResponseCode::SUCCESS, 1, None)
                .with_ext("msgId", "A,B,C"));
        m.observe(req.code, &req, &ok, Duration::from_micros(300));
        let busy = Err(BrokerError::SystemBusy("busy".into()));
        m.observe(req.code, &req, &busy, Duration::from_secs(10));
        assert_eq!(m.messages_put(), 3);
        assert_eq!(m.bytes_put(), 10);
        assert_eq!(m.put_errors[2].get(), 1);
        assert_eq!(m.send_latency_buckets[2].get(), 1);
        assert_eq!(
            m.send_latency_buckets[SEND_LATENCY_BUCKETS_US.len()].get(),
            1
        );
        assert_eq!(m.send_latency_count.get(), 2);
        assert_eq!(seconds(1_500_000), "1.500000");
    }
}
