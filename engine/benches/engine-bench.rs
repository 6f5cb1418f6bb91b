//! Engine benchmark: Store put latency/throughput beside the disk floor, measured interleaved.
//!
//! Command (from the workspace root):
//!   cargo bench -p engine --bench engine-bench
//! Options (env): PETREL_BENCH_DIR (default /var/tmp), PETREL_BENCH_SECS (per case, default 2),
//! PETREL_BENCH_FLOOR_SECS (per floor window, default half a case), PETREL_BENCH_OUT (default
//! bench-results/ of the workspace; setting it also writes the quick and manual variants),
//! PETREL_BENCH_QUICK=1 (SYNC_FLUSH 128 B with 1 and 256 appenders only), PETREL_BENCH_MANUAL=1
//! (no background checkpoint pass), PETREL_BENCH_SYNC_TIMEOUT_MS (the store's
//! sync_flush_timeout_ms, default 5000; a tiny one shows the failure accounting at work).
//!
//! Measures, on the store's filesystem:
//! 1. the floor: 4 KiB O_DIRECT write + fdatasync at QD1, rewriting one page in place in a
//!    zero-filled file, which is what the store's flusher does with its partial tail page (a
//!    128 B record at one appender rewrites the same page about 30 times before it moves on).
//!    It is measured in a window before the first case and after every case, so every case has
//!    a floor window on each side; each case's ratios are to those two windows together, and
//!    the report shows every window (the spread). Once, before everything, the two appending
//!    patterns are measured for reference: new pages of a zero-filled file and of a
//!    fallocate-only file;
//! 2. SYNC_FLUSH put latency (put -> ticket resolved) and throughput with 1, 16, 256
//!    concurrent appenders, 128 B and 4 KiB bodies;
//! 3. ASYNC_FLUSH put latency (put returned; the broker answers then) and throughput.
//!
//! Every failure is charged. A put refused (other than BufferFull, which is retried), a ticket
//! that fails or times out, and a put still refused BufferFull at the case's deadline, each
//! enter the latency histogram at the later of its full wait and the case's deadline (never
//! better than a success), and are counted by kind. A refused put stops its appender (a
//! poisoned or full store refuses every put). Under ASYNC_FLUSH the last ticket of every
//! appender is awaited after the case: one that fails counts as ASYNC_NOT_DURABLE.
//!
//! Writes engine.json and engine.md into PETREL_BENCH_OUT.
#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine::{FlushError, FlushMode, PutError, PutMessage, QueueId, Store, StoreConfig};
use glommio::io::{DmaFile, OpenOptions};
use histogram::Histogram;

/// Zero-filled size of the floor's in-place file (only its first page is rewritten).
const FLOOR_FILE_BYTES: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// Quantiles of a set of samples (ns in, µs out).
#[derive(Clone, Copy, Debug, Default)]
struct Quantiles {
    count: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

impl Quantiles {
    fn of_samples(samples: &[u64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let q = |x: f64| {
            if s.is_empty() {
                return 0;
            }
            // Nearest rank.
            let rank = ((x * s.len() as f64).ceil() as usize).clamp(1, s.len());
            s[rank - 1] / 1000
        };
        Quantiles {
            count: s.len() as u64,
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: s.last().copied().unwrap_or(0) / 1000,
        }
    }

    fn of_hist(h: &Histogram, count: u64, max_ns: u64) -> Self {
        let q = |x: f64| {
            h.quantile_bucket(x)
                .ok()
                .flatten()
                .map_or(0, |b| b.end().min(max_ns) / 1000)
        };
        Quantiles {
            count,
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: max_ns / 1000,
        }
    }
}

/// One floor measurement.
#[derive(Clone, Debug)]
struct FloorWindow {
    name: String,
    samples: Vec<u64>,
    secs: f64,
}

impl FloorWindow {
    fn quantiles(&self) -> Quantiles {
        Quantiles::of_samples(&self.samples)
    }
    fn rate(&self) -> f64 {
        self.samples.len() as f64 / self.secs
    }
}

/// One store case.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    /// Puts that succeeded (durable under SYNC_FLUSH), after the warm-up.
    ok: u64,
    /// Failures after the warm-up, by kind; each is in `latency` too.
    failures: BTreeMap<String, u64>,
    /// Failures during the warm-up (not in `latency`).
    warmup_failures: u64,
    /// Successes and failures together.
    latency: Quantiles,
    secs: f64,
    flushes: u64,
    /// Index of the floor window before this case (the one after is `+ 1`).
    floor_before: usize,
}

impl Case {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

fn new_hist() -> Histogram {
    Histogram::new(7, 40).unwrap()
}

async fn zero_filled(path: &Path, size: u64, zero_fill: bool) -> DmaFile {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .unwrap();
    f.pre_allocate(size, false).await.unwrap();
    if zero_fill {
        let mut pos = 0;
        while pos < size {
            let mut b = f.alloc_dma_buffer(1 << 20);
            b.as_bytes_mut().fill(0);
            f.write_at(b, pos).await.unwrap();
            pos += 1 << 20;
        }
    }
    f.fdatasync().await.unwrap();
    f
}

/// `secs` of 4 KiB write + fdatasync at QD1: page 0 rewritten in place, or (with `append`)
/// consecutive new pages.
async fn floor_samples(f: &DmaFile, secs: f64, append: bool, size: u64) -> (Vec<u64>, f64) {
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut pos = 0u64;
    let mut fill = 0u8;
    while start.elapsed().as_secs_f64() < secs && pos < size {
        let mut b = f.alloc_dma_buffer(PAGE as usize);
        fill = fill.wrapping_add(1);
        b.as_bytes_mut().fill(fill);
        let t = Instant::now();
        f.write_at(b, pos).await.unwrap();
        f.fdatasync().await.unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
        if append {
            pos += PAGE;
        }
    }
    (samples, start.elapsed().as_secs_f64())
}

/// The appending patterns, once, for reference (not interleaved).
async fn floor_append(dir: &Path, zero_fill: bool, secs: f64) -> FloorWindow {
    let path = dir.join(if zero_fill {
        "floor-append-prewritten"
    } else {
        "floor-append-fallocate"
    });
    let size: u64 = 64 << 20;
    let f = zero_filled(&path, size, zero_fill).await;
    let (samples, secs) = floor_samples(&f, secs, true, size).await;
    f.close().await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let name = if zero_fill {
        "reference: appending new pages, zero-filled file"
    } else {
        "reference: appending new pages, fallocate-only file"
    };
    FloorWindow {
        name: name.into(),
        samples,
        secs,
    }
}

fn msg<'a>(body: &'a [u8], queue: u32) -> PutMessage<'a> {
    PutMessage {
        topic: "BenchTopic",
        queue_id: QueueId(queue),
        flag: 0,
        body,
        properties: "TAGS\u{1}bench\u{2}KEYS\u{1}k\u{2}WAIT\u{1}true\u{2}",
        sys_flag: 0,
        born_timestamp_ms: 0,
        born_host: SocketAddr::from(([127, 0, 0, 1], 50000)),
        store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// What the appenders of one case share.
struct Tally {
    hist: RefCell<Histogram>,
    ok: Cell<u64>,
    max_ns: Cell<u64>,
    failures: RefCell<BTreeMap<String, u64>>,
    warmup_failures: Cell<u64>,
    flushes_at_warm: Cell<Option<u64>>,
}

impl Tally {
    fn record(&self, ns: u64) {
        self.hist.borrow_mut().increment(ns.max(1)).unwrap();
        self.max_ns.set(self.max_ns.get().max(ns));
    }

    /// A failure of the op started at `t`: charged at the later of its wait and the case's
    /// deadline, counted under `kind` (or as a warm-up failure).
    fn fail(&self, kind: &str, t: Instant, measured: bool, deadline: Instant) {
        if !measured {
            self.warmup_failures.set(self.warmup_failures.get() + 1);
            return;
        }
        let now = Instant::now();
        let wait = now.max(deadline).saturating_duration_since(t);
        self.record(wait.as_nanos() as u64);
        *self
            .failures
            .borrow_mut()
            .entry(kind.to_string())
            .or_insert(0) += 1;
    }
}

fn put_error_kind(e: &PutError) -> &'static str {
    match e {
        PutError::BodyTooLarge { .. } | PutError::PropertiesTooLong { .. } => "PUT_ILLEGAL",
        PutError::TopicTooLong { .. } => "PUT_ILLEGAL",
        PutError::BufferFull => "BUFFER_FULL_AT_DEADLINE",
        PutError::DiskFull => "PUT_DISK_FULL",
        PutError::Poisoned => "PUT_POISONED",
        PutError::ShuttingDown => "PUT_SHUTTING_DOWN",
    }
}

fn flush_error_kind(e: &FlushError) -> &'static str {
    match e {
        FlushError::Timeout => "TICKET_TIMEOUT",
        FlushError::Poisoned => "TICKET_POISONED",
    }
}

async fn open_store(root: &Path, mode: FlushMode) -> Rc<Store> {
    let cfg = StoreConfig {
        root_dir: root.to_path_buf(),
        segment_size_bytes: 64 << 20,
        flush_mode: mode,
        append_buffer_bytes_max: 16 << 20,
        tail_cache_bytes_max: 32 << 20,
        disk_clean_ratio: 1.0,
        disk_max_used_ratio: 1.0,
        sync_flush_timeout_ms: std::env::var("PETREL_BENCH_SYNC_TIMEOUT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5000),
        ..Default::default()
    };
    // PETREL_BENCH_MANUAL=1: no background checkpoint pass (isolates its fdatasyncs).
    let (store, _) = if std::env::var("PETREL_BENCH_MANUAL").is_ok() {
        let disk = engine::disk::glommio::GlommioDisk::new(root).await.unwrap();
        let clock = Rc::new(engine::clock::SystemClock);
        Store::open_with(cfg, Rc::new(disk), clock, engine::Background::Manual)
            .await
            .unwrap()
    } else {
        Store::open(cfg).await.unwrap()
    };
    while !store.is_next_segment_ready() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    store
}

async fn store_case(
    dir: &Path,
    mode: FlushMode,
    body_size: usize,
    appenders: usize,
    secs: f64,
    floor_before: usize,
) -> Case {
    let root = dir.join(format!("store-{mode:?}-{body_size}-{appenders}"));
    let _ = std::fs::remove_dir_all(&root);
    let store = open_store(&root, mode).await;
    let tally = Rc::new(Tally {
        hist: RefCell::new(new_hist()),
        ok: Cell::new(0),
        max_ns: Cell::new(0),
        failures: RefCell::new(BTreeMap::new()),
        warmup_failures: Cell::new(0),
        flushes_at_warm: Cell::new(None),
    });
    let warmup = Duration::from_millis(300);
    let begin = Instant::now();
    let warm = begin + warmup;
    let deadline = warm + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let (store, tally) = (store.clone(), tally.clone());
        tasks.push(glommio::spawn_local(async move {
            let body = vec![b'x'; body_size];
            let m = msg(&body, (a % 8) as u32);
            let mut n = 0u64;
            let mut last_ticket = None;
            'ops: while Instant::now() < deadline {
                let t = Instant::now();
                let measured = t >= warm;
                let put = loop {
                    match store.put(&m) {
                        Ok(r) => break r,
                        Err(PutError::BufferFull) if Instant::now() < deadline => {
                            futures_lite::future::yield_now().await;
                        }
                        Err(e) => {
                            tally.fail(put_error_kind(&e), t, measured, deadline);
                            break 'ops;
                        }
                    }
                };
                if mode == FlushMode::Sync {
                    if let Err(e) = put.ticket.await {
                        tally.fail(flush_error_kind(&e), t, measured, deadline);
                        continue;
                    }
                } else {
                    last_ticket = Some(put.ticket);
                    n += 1;
                    if n.is_multiple_of(64) {
                        futures_lite::future::yield_now().await;
                    }
                }
                if measured {
                    if tally.flushes_at_warm.get().is_none() {
                        tally.flushes_at_warm.set(Some(store.flush_count()));
                    }
                    tally.record(t.elapsed().as_nanos() as u64);
                    tally.ok.set(tally.ok.get() + 1);
                }
            }
            if let Some(ticket) = last_ticket {
                if let Err(e) = ticket.await {
                    eprintln!("ASYNC_FLUSH ticket failed after the case: {e}");
                    *tally
                        .failures
                        .borrow_mut()
                        .entry("ASYNC_NOT_DURABLE".into())
                        .or_insert(0) += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let flushes = store.flush_count() - tally.flushes_at_warm.get().unwrap_or(0);
    if let Err(e) = store.shutdown().await {
        eprintln!("store shutdown failed: {e}");
        *tally
            .failures
            .borrow_mut()
            .entry("SHUTDOWN_FAILED".into())
            .or_insert(0) += 1;
    }
    drop(store);
    std::fs::remove_dir_all(&root).unwrap();
    let mode_name = if mode == FlushMode::Sync {
        "SYNC_FLUSH"
    } else {
        "ASYNC_FLUSH"
    };
    let h = tally.hist.borrow();
    let failures = tally.failures.borrow().clone();
    let recorded = tally.ok.get() + failures.values().sum::<u64>();
    Case {
        name: format!("{mode_name} {body_size} B x {appenders}"),
        ok: tally.ok.get(),
        failures,
        warmup_failures: tally.warmup_failures.get(),
        latency: Quantiles::of_hist(&h, recorded, tally.max_ns.get()),
        secs,
        flushes,
        floor_before,
    }
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn env_secs(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

struct Run {
    references: Vec<FloorWindow>,
    windows: Vec<FloorWindow>,
    cases: Vec<Case>,
}

async fn run_all(d: PathBuf, secs: f64, floor_secs: f64) -> Run {
    // iopoll probe (GLOMMIO.md pitfall 2): a non-empty file first.
    let probe = d.join("probe");
    std::fs::write(&probe, vec![0u8; 4096]).unwrap();
    DmaFile::open(&probe).await.unwrap().close().await.unwrap();
    let references = vec![
        floor_append(&d, true, floor_secs).await,
        floor_append(&d, false, floor_secs).await,
    ];
    for r in &references {
        eprintln!("{}: {:?}", r.name, r.quantiles());
    }
    let floor_path = d.join("floor-in-place");
    let floor_file = zero_filled(&floor_path, FLOOR_FILE_BYTES, true).await;
    let mut windows = Vec::new();
    let window = |n: usize| format!("floor window {n}");
    let (s, el) = floor_samples(&floor_file, floor_secs, false, FLOOR_FILE_BYTES).await;
    windows.push(FloorWindow {
        name: window(0),
        samples: s,
        secs: el,
    });
    let quick = std::env::var("PETREL_BENCH_QUICK").is_ok();
    let modes: &[FlushMode] = if quick {
        &[FlushMode::Sync]
    } else {
        &[FlushMode::Sync, FlushMode::Async]
    };
    let sizes: &[usize] = if quick { &[128] } else { &[128, 4096] };
    let counts: &[usize] = if quick { &[1, 256] } else { &[1, 16, 256] };
    let mut cases = Vec::new();
    for &mode in modes {
        for &size in sizes {
            for &n in counts {
                let c = store_case(&d, mode, size, n, secs, windows.len() - 1).await;
                eprintln!("{c:?}");
                cases.push(c);
                let (s, el) = floor_samples(&floor_file, floor_secs, false, FLOOR_FILE_BYTES).await;
                windows.push(FloorWindow {
                    name: window(windows.len()),
                    samples: s,
                    secs: el,
                });
                eprintln!("{:?}", windows.last().unwrap().quantiles());
            }
        }
    }
    floor_file.close().await.unwrap();
    std::fs::remove_file(&floor_path).unwrap();
    Run {
        references,
        windows,
        cases,
    }
}

/// The floor of a case: its two adjacent windows together.
fn adjacent_floor(run: &Run, c: &Case) -> Quantiles {
    let mut s = run.windows[c.floor_before].samples.clone();
    if let Some(w) = run.windows.get(c.floor_before + 1) {
        s.extend_from_slice(&w.samples);
    }
    Quantiles::of_samples(&s)
}

fn failures_text(c: &Case) -> String {
    let mut t = if c.failures.is_empty() {
        "none".to_string()
    } else {
        c.failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if c.warmup_failures > 0 {
        let _ = write!(t, " (+{} in warm-up)", c.warmup_failures);
    }
    t
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

fn main() {
    let base =
        PathBuf::from(std::env::var("PETREL_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let dir = base.join(format!("petrel-engine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secs = env_secs("PETREL_BENCH_SECS").unwrap_or(2.0);
    let floor_secs = env_secs("PETREL_BENCH_FLOOR_SECS").unwrap_or(secs / 2.0);
    let out_env = std::env::var("PETREL_BENCH_OUT").ok();
    let out_dir = PathBuf::from(
        out_env
            .clone()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results").into()),
    );
    let load_before = sh("cut -d' ' -f1-3 /proc/loadavg");
    let d = dir.clone();
    let run: Run = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(8 << 20)
        .preempt_timer(Duration::from_millis(1))
        // As the broker runtime.
        .spin_before_park(Duration::from_micros(20))
        .spawn(move || run_all(d, secs, floor_secs))
        .unwrap()
        .join()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let load_after = sh("cut -d' ' -f1-3 /proc/loadavg");

    let date = sh("date -u +%Y-%m-%dT%H:%M:%SZ");
    let kernel = sh("uname -r");
    let nproc = sh("nproc");
    let device = sh(&format!("df --output=source {} | tail -1", base.display()));
    let dev_name = device.trim_start_matches("/dev/").to_string();
    let disk_model = sh(&format!(
        "cat /sys/block/{dev_name}/device/model 2>/dev/null || echo virtio-blk; cat /sys/block/{dev_name}/queue/write_cache 2>/dev/null"
    ))
    .replace('\n', ", ");
    let fs = sh(&format!("df --output=fstype {} | tail -1", base.display()));
    let command = "cargo bench -p engine --bench engine-bench";
    let window_q: Vec<Quantiles> = run.windows.iter().map(FloorWindow::quantiles).collect();
    let spread = |f: fn(&Quantiles) -> u64| {
        let v: Vec<u64> = window_q.iter().map(f).collect();
        (
            v.iter().copied().min().unwrap_or(0),
            v.iter().copied().max().unwrap_or(0),
        )
    };
    let (p50_lo, p50_hi) = spread(|q| q.p50_us);
    let (p99_lo, p99_hi) = spread(|q| q.p99_us);

    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"date\": \"{date}\",\n  \"command\": \"{command}\",\n  \"seconds_per_case\": {secs},\n  \"seconds_per_floor_window\": {floor_secs},\n  \"machine\": {{\"nproc\": {nproc}, \"kernel\": \"{kernel}\", \"device\": \"{device}\", \"disk\": \"{disk_model}\", \"filesystem\": \"{fs}\", \"dir\": \"{}\", \"load_average_before\": \"{load_before}\", \"load_average_after\": \"{load_after}\"}},\n  \"floor_pattern\": \"4 KiB O_DIRECT write + fdatasync rewriting one page in place of a zero-filled file\",\n  \"floor_spread\": {{\"p50_us_min\": {p50_lo}, \"p50_us_max\": {p50_hi}, \"p99_us_min\": {p99_lo}, \"p99_us_max\": {p99_hi}}},\n",
        base.display()
    );
    let floor_json = |name: &str, q: &Quantiles, rate: f64| {
        format!(
            "{{\"name\": \"{name}\", \"ops\": {}, \"ops_per_s\": {rate:.0}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}}}",
            q.count, q.p50_us, q.p99_us, q.p999_us, q.max_us
        )
    };
    let refs: Vec<String> = run
        .references
        .iter()
        .map(|w| floor_json(&w.name, &w.quantiles(), w.rate()))
        .collect();
    let wins: Vec<String> = run
        .windows
        .iter()
        .zip(&window_q)
        .map(|(w, q)| floor_json(&w.name, q, w.rate()))
        .collect();
    let _ = writeln!(
        json,
        "  \"floor_references\": [\n    {}\n  ],\n  \"floor_windows\": [\n    {}\n  ],",
        refs.join(",\n    "),
        wins.join(",\n    ")
    );
    json.push_str("  \"cases\": [\n");
    for (i, c) in run.cases.iter().enumerate() {
        let f = adjacent_floor(&run, c);
        let failures: Vec<String> = c
            .failures
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        let l = &c.latency;
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"ok\": {}, \"failed\": {}, \"failures\": {{{}}}, \"warmup_failures\": {}, \"ok_per_s\": {:.0}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \"fdatasyncs\": {}, \"floor_windows\": [{}, {}], \"floor_p50_us\": {}, \"floor_p99_us\": {}, \"p50_vs_floor_p50\": {:.2}, \"p99_vs_floor_p99\": {:.2}}}{}",
            c.name, c.ok, c.failed(), failures.join(", "), c.warmup_failures, c.rate(),
            l.p50_us, l.p99_us, l.p999_us, l.max_us, c.flushes,
            c.floor_before, c.floor_before + 1, f.p50_us, f.p99_us,
            ratio(l.p50_us, f.p50_us), ratio(l.p99_us, f.p99_us),
            if i + 1 < run.cases.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");

    let mut md = String::new();
    let _ = writeln!(md, "# Engine benchmark\n");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(md, "- command: `{command}` ({secs} s per case after 0.3 s warm-up, {floor_secs} s per floor window, one glommio executor pinned to CPU 0, preempt_timer 1 ms, spin_before_park 20 µs as the broker runtime)");
    let _ = writeln!(
        md,
        "- machine: {nproc} CPUs, kernel {kernel}, {device} ({disk_model}), {fs}, store dir {}; load average before {load_before}, after {load_after}",
        base.display()
    );
    let _ = writeln!(md, "- latency: SYNC_FLUSH = put until the ticket resolves (write + fdatasync); ASYNC_FLUSH = put until it returns (what the broker waits for); both include BufferFull retries");
    let _ = writeln!(md, "- failures are in the latency columns, each at the later of its full wait and the case's deadline, and counted by kind in \"failures\"; ops/s counts successes only");
    let _ = writeln!(md, "- floor: 4 KiB O_DIRECT write + fdatasync at QD1 rewriting one page in place of a zero-filled file (the store's flusher rewrites its partial tail page in place), measured in a window before the first case and after every case; each case's ratios are to its two adjacent windows together");
    let _ = writeln!(md, "- floor spread across the {} windows: p50 {p50_lo}–{p50_hi} µs, p99 {p99_lo}–{p99_hi} µs\n", run.windows.len());
    let _ = writeln!(md, "| case | ok/s | p50 µs | p99 µs | p99.9 µs | max µs | failures | fdatasyncs | floor windows | floor p50 / p99 µs | p50/floor | p99/floor |");
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|"
    );
    for c in &run.cases {
        let f = adjacent_floor(&run, c);
        let l = &c.latency;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {}, {} | {} / {} | {:.2} | {:.2} |",
            c.name,
            c.rate(),
            l.p50_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            failures_text(c),
            c.flushes,
            c.floor_before,
            c.floor_before + 1,
            f.p50_us,
            f.p99_us,
            ratio(l.p50_us, f.p50_us),
            ratio(l.p99_us, f.p99_us)
        );
    }
    let _ = writeln!(
        md,
        "\n## Floor windows (in place) and the appending references\n"
    );
    let _ = writeln!(
        md,
        "| window | ops/s | p50 µs | p99 µs | p99.9 µs | max µs |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for w in run.windows.iter().chain(&run.references) {
        let q = w.quantiles();
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {} |",
            w.name,
            w.rate(),
            q.p50_us,
            q.p99_us,
            q.p999_us,
            q.max_us
        );
    }
    let variant =
        std::env::var("PETREL_BENCH_QUICK").is_ok() || std::env::var("PETREL_BENCH_MANUAL").is_ok();
    if out_env.is_some() || !variant {
        std::fs::create_dir_all(&out_dir).unwrap();
        std::fs::write(out_dir.join("engine.json"), &json).unwrap();
        std::fs::write(out_dir.join("engine.md"), &md).unwrap();
    }
    print!("{md}");
}
