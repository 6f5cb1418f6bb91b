//! Engine benchmark: the disk floor and Store put latency/throughput, in one run.
//!
//! Command (from the workspace root):
//!   cargo bench -p engine --bench engine-bench
//! Options (env): PETREL_BENCH_DIR (default /var/tmp), PETREL_BENCH_SECS (per case, default 2),
//! PETREL_BENCH_OUT (default bench-results/ of the workspace).
//!
//! Measures, on the store's filesystem:
//! 1. the floor: 4 KiB O_DIRECT write + fdatasync at QD1 into a pre-written (zero-filled) file,
//!    and the same into a fallocate-only file (the preallocation comparison);
//! 2. SYNC_FLUSH put latency (put -> ticket resolved) and throughput with 1, 16, 256
//!    concurrent appenders, 128 B and 4 KiB bodies;
//! 3. ASYNC_FLUSH put latency (put returned; the broker answers then) and throughput.
//!
//! Writes bench-results/engine.json and bench-results/engine.md.
#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use engine::{FlushMode, PutError, PutMessage, QueueId, Store, StoreConfig};
use glommio::io::{DmaFile, OpenOptions};
use histogram::Histogram;

#[derive(Clone, Debug)]
struct Stats {
    name: String,
    count: u64,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    flushes: u64,
}

impl Stats {
    fn from_hist(
        name: &str,
        h: &Histogram,
        count: u64,
        secs: f64,
        max_ns: u64,
        flushes: u64,
    ) -> Self {
        let q = |x: f64| {
            h.quantile_bucket(x)
                .ok()
                .flatten()
                .map_or(0, |b| b.end() / 1000)
        };
        Stats {
            name: name.to_string(),
            count,
            secs,
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: max_ns / 1000,
            flushes,
        }
    }
    fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }
}

fn new_hist() -> Histogram {
    Histogram::new(7, 40).unwrap()
}

async fn floor(dir: &Path, zero_fill: bool, secs: f64) -> Stats {
    let path = dir.join(if zero_fill {
        "floor-prewritten"
    } else {
        "floor-fallocate"
    });
    let size: u64 = 64 << 20;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
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
    let mut h = new_hist();
    let (mut n, mut max) = (0u64, 0u64);
    let start = Instant::now();
    let mut pos = 0u64;
    while start.elapsed().as_secs_f64() < secs && pos < size {
        let mut b = f.alloc_dma_buffer(4096);
        b.as_bytes_mut().fill(0xAB);
        let t = Instant::now();
        f.write_at(b, pos).await.unwrap();
        f.fdatasync().await.unwrap();
        let ns = t.elapsed().as_nanos() as u64;
        h.increment(ns).unwrap();
        max = max.max(ns);
        n += 1;
        pos += 4096;
    }
    let el = start.elapsed().as_secs_f64();
    f.close().await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let name = if zero_fill {
        "floor: 4 KiB write+fdatasync, pre-written file"
    } else {
        "floor: 4 KiB write+fdatasync, fallocate-only file"
    };
    Stats::from_hist(name, &h, n, el, max, n)
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

async fn store_case(
    dir: &Path,
    mode: FlushMode,
    body_size: usize,
    appenders: usize,
    secs: f64,
) -> Stats {
    let root = dir.join(format!("store-{mode:?}-{body_size}-{appenders}"));
    let _ = std::fs::remove_dir_all(&root);
    let cfg = StoreConfig {
        root_dir: root.clone(),
        segment_size_bytes: 64 << 20,
        flush_mode: mode,
        append_buffer_bytes_max: 16 << 20,
        tail_cache_bytes_max: 32 << 20,
        disk_clean_ratio: 1.0,
        disk_max_used_ratio: 1.0,
        ..Default::default()
    };
    // PETREL_BENCH_MANUAL=1: no background checkpoint pass (isolates its fdatasyncs).
    let (store, _) = if std::env::var("PETREL_BENCH_MANUAL").is_ok() {
        let disk = engine::disk::glommio::GlommioDisk::new(&root)
            .await
            .unwrap();
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
    let hist = Rc::new(RefCell::new(new_hist()));
    let count = Rc::new(Cell::new(0u64));
    let max = Rc::new(Cell::new(0u64));
    let warmup = Duration::from_millis(300);
    let begin = Instant::now();
    let deadline = begin + warmup + Duration::from_secs_f64(secs);
    let flushes_at_warm = Rc::new(Cell::new(None::<u64>));
    let timeouts = Rc::new(Cell::new(0u64));
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let (store, hist, count, max, fw) = (
            store.clone(),
            hist.clone(),
            count.clone(),
            max.clone(),
            flushes_at_warm.clone(),
        );
        let timeouts = timeouts.clone();
        tasks.push(glommio::spawn_local(async move {
            let body = vec![b'x'; body_size];
            let m = msg(&body, (a % 8) as u32);
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let t = Instant::now();
                let put = loop {
                    match store.put(&m) {
                        Ok(r) => break r,
                        Err(PutError::BufferFull) => futures_lite::future::yield_now().await,
                        Err(e) => panic!("put failed: {e}"),
                    }
                };
                if mode == FlushMode::Sync {
                    if let Err(e) = put.ticket.await {
                        eprintln!("ticket failed: {e}");
                        timeouts.set(timeouts.get() + 1);
                        continue;
                    }
                } else {
                    n += 1;
                    if n.is_multiple_of(64) {
                        futures_lite::future::yield_now().await;
                    }
                }
                if t >= begin + warmup {
                    if fw.get().is_none() {
                        fw.set(Some(store.flush_count()));
                    }
                    let ns = t.elapsed().as_nanos() as u64;
                    hist.borrow_mut().increment(ns).unwrap();
                    max.set(max.get().max(ns));
                    count.set(count.get() + 1);
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let el = secs;
    let flushes = store.flush_count() - flushes_at_warm.get().unwrap_or(0);
    store.shutdown().await.unwrap();
    drop(store);
    std::fs::remove_dir_all(&root).unwrap();
    let name = format!(
        "{} {} B x {appenders}",
        if mode == FlushMode::Sync {
            "SYNC_FLUSH"
        } else {
            "ASYNC_FLUSH"
        },
        body_size
    );
    let name = if timeouts.get() > 0 {
        format!("{name} ({} ticket failures)", timeouts.get())
    } else {
        name
    };
    let h = hist.borrow();
    Stats::from_hist(&name, &h, count.get(), el, max.get(), flushes)
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let base =
        PathBuf::from(std::env::var("PETREL_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));
    let dir = base.join(format!("petrel-engine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secs: f64 = std::env::var("PETREL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let out_dir = PathBuf::from(
        std::env::var("PETREL_BENCH_OUT")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results").into()),
    );
    let d = dir.clone();
    let results: Vec<Stats> = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(8 << 20)
        .preempt_timer(Duration::from_millis(1))
        // As the broker runtime.
        .spin_before_park(Duration::from_micros(20))
        .spawn(move || async move {
            // iopoll probe (GLOMMIO.md pitfall 2): a non-empty file first.
            let probe = d.join("probe");
            std::fs::write(&probe, vec![0u8; 4096]).unwrap();
            DmaFile::open(&probe).await.unwrap().close().await.unwrap();
            let mut r = Vec::new();
            r.push(floor(&d, true, secs).await);
            eprintln!("{:?}", r.last().unwrap());
            r.push(floor(&d, false, secs).await);
            eprintln!("{:?}", r.last().unwrap());
            // PETREL_BENCH_QUICK=1: SYNC_FLUSH 128 B with 1 and 256 appenders only.
            let quick = std::env::var("PETREL_BENCH_QUICK").is_ok();
            let modes: &[FlushMode] = if quick {
                &[FlushMode::Sync]
            } else {
                &[FlushMode::Sync, FlushMode::Async]
            };
            let sizes: &[usize] = if quick { &[128] } else { &[128, 4096] };
            let counts: &[usize] = if quick { &[1, 256] } else { &[1, 16, 256] };
            for &mode in modes {
                for &size in sizes {
                    for &n in counts {
                        r.push(store_case(&d, mode, size, n, secs).await);
                        eprintln!("{:?}", r.last().unwrap());
                    }
                }
            }
            r
        })
        .unwrap()
        .join()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let floor_p50 = results[0].p50_us.max(1) as f64;
    let floor_p99 = results[0].p99_us.max(1) as f64;
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

    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"date\": \"{date}\",\n  \"command\": \"{command}\",\n  \"seconds_per_case\": {secs},\n  \"machine\": {{\"nproc\": {nproc}, \"kernel\": \"{kernel}\", \"device\": \"{device}\", \"disk\": \"{disk_model}\", \"filesystem\": \"{fs}\", \"dir\": \"{}\"}},\n  \"floor_p50_us\": {floor_p50}, \"floor_p99_us\": {floor_p99},\n  \"cases\": [\n",
        base.display()
    );
    for (i, s) in results.iter().enumerate() {
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"ops\": {}, \"ops_per_s\": {:.0}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \"fdatasyncs\": {}, \"p50_vs_floor_p50\": {:.2}, \"p99_vs_floor_p99\": {:.2}}}{}",
            s.name, s.count, s.rate(), s.p50_us, s.p99_us, s.p999_us, s.max_us, s.flushes,
            s.p50_us as f64 / floor_p50, s.p99_us as f64 / floor_p99,
            if i + 1 < results.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");

    let mut md = String::new();
    let _ = writeln!(md, "# Engine benchmark\n");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(md, "- command: `{command}` ({secs} s per case after 0.3 s warm-up, one glommio executor pinned to CPU 0, preempt_timer 1 ms)");
    let _ = writeln!(
        md,
        "- machine: {nproc} CPUs, kernel {kernel}, {device} ({disk_model}), {fs}, store dir {}",
        base.display()
    );
    let _ = writeln!(md, "- latency: SYNC_FLUSH = put until the ticket resolves (write + fdatasync); ASYNC_FLUSH = put until it returns (what the broker waits for); both include BufferFull retries");
    let _ = writeln!(md, "- ratios are to the pre-written floor measured in this run (p50 {floor_p50} µs, p99 {floor_p99} µs)\n");
    let _ = writeln!(md, "| case | ops/s | p50 µs | p99 µs | p99.9 µs | max µs | fdatasyncs | p50/floor | p99/floor |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &results {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
            s.name,
            s.rate(),
            s.p50_us,
            s.p99_us,
            s.p999_us,
            s.max_us,
            s.flushes,
            s.p50_us as f64 / floor_p50,
            s.p99_us as f64 / floor_p99
        );
    }
    if std::env::var("PETREL_BENCH_QUICK").is_err() && std::env::var("PETREL_BENCH_MANUAL").is_err()
    {
        std::fs::create_dir_all(&out_dir).unwrap();
        std::fs::write(out_dir.join("engine.json"), &json).unwrap();
        std::fs::write(out_dir.join("engine.md"), &md).unwrap();
    }
    print!("{md}");
}
