//! The standard suite (`cargo run --release -p loadgen` with no address): the floors, then
//! Petrel under SYNC_FLUSH at several rates, then restarted under ASYNC_FLUSH for a sweep to
//! saturation, a run at half of it and an end-to-end run. Each figure is judged against the
//! issue's targets as a ratio to the floors measured in the same run. The whole suite takes
//! about three minutes on the 2-core development machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::client::Client;
use crate::codec::{self, SendCode, SendHeader};
use crate::consume::{self, ConsumeConfig};
use crate::e2e::{self, E2eResult};
use crate::floor::{self, FloorConfig, FloorResult};
use crate::petrel::{self, FlushDiskType, PetrelOptions, PetrelProcess};
use crate::produce::{self, ProduceConfig, ProduceResult};
use crate::report::{self, BrokerInfo, Check, Report};
use crate::route::{self, Endpoint, Target};
use crate::sweep::{self, SweepConfig};

/// Commitlog segment size the suite gives petrel (unless --petrel-arg sets one).
const SEGMENT_SIZE_BYTES: u64 = 256 << 20;
/// A fresh broker may take this long to answer its first send.
const PRIME_TIMEOUT: Duration = Duration::from_secs(60);
/// End to end: how long after the producer's deadline the consumers may take to receive
/// every acknowledged message. What has not arrived by then is undelivered.
const E2E_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct SuiteOptions {
    pub petrel: Option<PathBuf>,
    /// Parent of the temporary store directories (a real disk).
    pub store_root: PathBuf,
    pub out_dir: PathBuf,
    pub topic: String,
    pub queues: u32,
    /// Shorter runs (for a smoke test).
    pub quick: bool,
    pub petrel_args: Vec<String>,
}

struct Timing {
    warmup: Duration,
    duration: Duration,
    sweep_step: Duration,
}

/// Runs the suite and writes the report; returns the report and the directory.
pub fn run(opts: &SuiteOptions) -> Result<(Report, PathBuf)> {
    let started = Instant::now();
    let timing = if opts.quick {
        Timing {
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            sweep_step: Duration::from_secs(1),
        }
    } else {
        Timing {
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(8),
            sweep_step: Duration::from_secs(3),
        }
    };
    let binary = petrel::find_binary(opts.petrel.as_deref())?;
    let stamp = report::utc_stamp();
    let out_dir = opts.out_dir.join(format!("loadgen-{stamp}"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let work = opts
        .store_root
        .join(format!("petrel-loadgen-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let result = run_in(opts, &timing, &binary, &work, &out_dir);
    let _ = std::fs::remove_dir_all(&work);
    let mut report = result?;
    report.notes.push(format!(
        "suite wall time: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    report.write(&out_dir, "report")?;
    Ok((report, out_dir))
}

fn run_in(
    opts: &SuiteOptions,
    timing: &Timing,
    binary: &std::path::Path,
    work: &std::path::Path,
    out_dir: &std::path::Path,
) -> Result<Report> {
    let mut report = Report::new(
        "Petrel standard suite",
        BrokerInfo {
            name: "petrel (embedded child process)".into(),
            endpoint: binary.display().to_string(),
        },
    );
    eprintln!("loadgen: measuring floors in {}", work.display());
    let mut floor_cfg = FloorConfig::new(work);
    if opts.quick {
        floor_cfg.disk_samples = 300;
        floor_cfg.loopback_samples = 3000;
    }
    let floor = floor::run(&floor_cfg)?;
    print_floor(&floor);
    report.floor = Some(floor.clone());
    report.add_floor_window("start", floor);
    // A shorter window after every run (and after the sweep).
    let mut window_cfg = FloorConfig::new(work);
    window_cfg.disk_samples = if opts.quick { 100 } else { 200 };
    window_cfg.loopback_samples = if opts.quick { 1000 } else { 2000 };
    let window = |report: &mut Report, after: &str| -> Result<()> {
        let f = floor::run(&window_cfg)?;
        eprintln!("  floor window after {after}:");
        print_floor(&f);
        report.add_floor_window(after, f);
        Ok(())
    };

    let base = |rate: f64| {
        let mut c = ProduceConfig::new(&opts.topic, rate);
        c.warmup = timing.warmup;
        c.duration = timing.duration;
        c.run_id = u64::from(std::process::id());
        c
    };
    // SYNC_FLUSH.
    {
        let broker = start_petrel(
            &mut report,
            binary,
            work,
            out_dir,
            FlushDiskType::SyncFlush,
            opts,
        )?;
        let targets =
            route::resolve_targets(Endpoint::Namesrv(broker.namesrv), &opts.topic, opts.queues)?;
        prime(&targets, &opts.topic)?;
        report.broker.endpoint = format!("{} (nameserver {})", binary.display(), broker.namesrv);
        let flush = flush_mode(&targets, FlushDiskType::SyncFlush);
        let mut one = base(500.0);
        one.connections = 1;
        one.max_in_flight = 16;
        let name = "sync 1 producer 500/s";
        record(&mut report, name, &flush, produce::run(&one, &targets)?);
        window(&mut report, name)?;
        for rate in [10_000.0, 100_000.0] {
            let mut c = base(rate);
            c.connections = 8;
            c.max_in_flight = 32;
            let name = format!("sync 256 in flight {}k/s", rate / 1000.0);
            record(&mut report, &name, &flush, produce::run(&c, &targets)?);
            window(&mut report, &name)?;
        }
        report
            .notes
            .push(format!("SYNC_FLUSH broker stop: {}", broker.stop()?));
    }
    // ASYNC_FLUSH, fresh store.
    {
        let broker = start_petrel(
            &mut report,
            binary,
            work,
            out_dir,
            FlushDiskType::AsyncFlush,
            opts,
        )?;
        let targets =
            route::resolve_targets(Endpoint::Namesrv(broker.namesrv), &opts.topic, opts.queues)?;
        prime(&targets, &opts.topic)?;
        let flush = flush_mode(&targets, FlushDiskType::AsyncFlush);
        let mut one = base(500.0);
        one.connections = 1;
        one.max_in_flight = 16;
        let name = "async 1 producer 500/s";
        record(&mut report, name, &flush, produce::run(&one, &targets)?);
        window(&mut report, name)?;

        let mut step = base(5000.0);
        step.warmup = Duration::from_millis(500);
        step.duration = timing.sweep_step;
        step.connections = 8;
        step.max_in_flight = 64;
        let sweep_cfg = SweepConfig {
            base: step,
            start_rate_per_s: 5000.0,
            factor: 1.6,
            steps_max: if opts.quick { 4 } else { 9 },
            saturation_ratio: 0.9,
            p99_limit: Duration::from_millis(250),
        };
        eprintln!("loadgen: ASYNC_FLUSH sweep");
        let sweep = sweep::run("petrel ASYNC_FLUSH", &sweep_cfg, &targets, print_run_line)?;
        // Saturation = the highest throughput any step achieved.
        let half = (sweep.max_achieved_msgs_per_s / 2.0).max(500.0);
        report.sweeps.push(sweep);
        window(&mut report, "the sweep")?;
        let mut c = base(half);
        c.connections = 8;
        c.max_in_flight = 64;
        let name = format!("async half saturation {half:.0}/s");
        record(&mut report, &name, &flush, produce::run(&c, &targets)?);
        window(&mut report, &name)?;

        let e2e_rate = 20_000.0;
        let (p, consumed) = run_e2e(&base(e2e_rate), &targets, 8, 64)?;
        print_run_line(&p);
        eprintln!(
            "    e2e {}; p50 {} p99 {} p99.9 {} µs",
            consumed.verdict(),
            report::us(consumed.e2e_latency.p50_us),
            report::us(consumed.e2e_latency.p99_us),
            report::us(consumed.e2e_latency.p99_9_us)
        );
        report.push_run("async e2e 20k/s", &flush, p, Some(consumed));
        window(&mut report, "async e2e 20k/s")?;
        report
            .notes
            .push(format!("ASYNC_FLUSH broker stop: {}", broker.stop()?));
    }
    report.checks = checks(&report);
    Ok(report)
}

fn start_petrel(
    report: &mut Report,
    binary: &std::path::Path,
    work: &std::path::Path,
    out_dir: &std::path::Path,
    flush: FlushDiskType,
    opts: &SuiteOptions,
) -> Result<PetrelProcess> {
    let name = flush.as_str().to_ascii_lowercase();
    let mut extra_args = opts.petrel_args.clone();
    if !extra_args
        .iter()
        .any(|a| a.contains("mappedFileSizeCommitLog"))
    {
        // 256 MiB segments instead of 1 GiB: each run fits in one or two, and the suite's
        // footprint stays small. The report's notes say so.
        extra_args.extend([
            "--set".to_string(),
            format!("mappedFileSizeCommitLog={SEGMENT_SIZE_BYTES}"),
        ]);
    }
    if !extra_args
        .iter()
        .any(|a| a.contains("diskSpaceWarningLevelRatio"))
    {
        // The suite does not exercise disk-full behaviour; a crowded development disk (or one
        // with a large root reserve) must not make the broker refuse writes mid-benchmark.
        extra_args.extend([
            "--set".to_string(),
            "diskSpaceWarningLevelRatio=0.99".to_string(),
            "--set".to_string(),
            "diskMaxUsedSpaceRatio=95".to_string(),
        ]);
    }
    let po = PetrelOptions {
        binary: binary.to_path_buf(),
        store_dir: work.join(format!("store-{name}")),
        flush,
        extra_args,
        log_path: out_dir.join(format!("petrel-{name}.log")),
    };
    eprintln!(
        "loadgen: starting petrel ({}) {}",
        flush.as_str(),
        po.extra_args.join(" ")
    );
    let p = PetrelProcess::start(&po)?;
    let note = format!(
        "petrel {} started with extra arguments: {}",
        flush.as_str(),
        po.extra_args.join(" ")
    );
    if !report.notes.contains(&note) {
        report.notes.push(note);
    }
    eprintln!(
        "loadgen: petrel up, {} broker(s) registered at {}",
        p.broker_count, p.namesrv
    );
    Ok(p)
}

/// One acknowledged send per queue before anything is measured, so one-time costs of a fresh
/// broker (creating and pre-writing the first commitlog segment) are not charged to a run.
pub fn prime(targets: &[Target], topic: &str) -> Result<()> {
    for t in targets {
        let mut client = Client::connect(t.addr, Duration::from_secs(5))?;
        for &queue_id in &t.queue_ids {
            let header = SendHeader {
                producer_group: "loadgen_prime",
                topic,
                queue_id,
                born_timestamp_ms: 0,
            };
            let request = codec::send_request(
                SendCode::SendMessageV2,
                &header,
                codec::body::encode(128, 0, 0),
            );
            let response = client.call(request, PRIME_TIMEOUT)?;
            if response.code != codec::response_code::SUCCESS {
                anyhow::bail!(
                    "priming send to {} queue {queue_id}: {} {}",
                    t.broker_name,
                    codec::response_code_name(response.code),
                    response.remark.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// The broker's own flush mode if it reports one, else the one it was started with.
fn flush_mode(targets: &[Target], started_with: FlushDiskType) -> String {
    targets
        .first()
        .and_then(|t| route::broker_flush_mode(t.addr))
        .unwrap_or_else(|| started_with.as_str().to_string())
}

fn record(report: &mut Report, name: &str, flush: &str, p: ProduceResult) {
    eprint!("  {name}: ");
    print_run_line(&p);
    report.push_run(name, flush, p, None);
}

/// One line per run on stderr while the suite goes.
pub fn print_run_line(p: &ProduceResult) {
    let l = &p.latency;
    eprintln!(
        "offered {:.0}/s achieved {:.0}/s  p50 {} p99 {} p99.9 {} max {} µs  <1ms {:.3}%  errors {}  late sends {}  loadgen {:.2} CPUs",
        p.offered_msgs_per_s,
        p.achieved_msgs_per_s,
        report::us(l.p50_us),
        report::us(l.p99_us),
        report::us(l.p99_9_us),
        report::us(l.max_us),
        p.share_under_1ms * 100.0,
        p.error_count(),
        p.sent_late_count,
        p.generator_cpu_cores
    );
}

pub fn print_floor(f: &FloorResult) {
    if let Some(d) = &f.disk {
        eprintln!(
            "  floor disk 4 KiB write+fdatasync: p50 {} p99 {} p99.9 {} max {} µs",
            report::us(d.p50_us),
            report::us(d.p99_us),
            report::us(d.p99_9_us),
            report::us(d.max_us)
        );
    }
    if let Some(e) = &f.disk_error {
        eprintln!("  floor disk: could not run: {e}");
    }
    let l = &f.loopback;
    eprintln!(
        "  floor loopback RTT 64 B: p50 {} p99 {} p99.9 {} max {} µs",
        report::us(l.p50_us),
        report::us(l.p99_us),
        report::us(l.p99_9_us),
        report::us(l.max_us)
    );
}

/// Starts consumers on every queue, produces, waits for the acknowledged messages to arrive
/// (until [`E2E_GRACE`] after the producer's deadline) and judges the receipts (see
/// [`crate::e2e`]): a shortfall shows in the result, and the caller fails the run on it.
pub fn run_e2e(
    base: &ProduceConfig,
    targets: &[Target],
    connections: usize,
    max_in_flight: usize,
) -> Result<(ProduceResult, E2eResult)> {
    let _ = crate::schedule::epoch();
    let mut cfg = base.clone();
    cfg.connections = connections;
    cfg.max_in_flight = max_in_flight;
    cfg.record_acked = true;
    let consume_cfg = ConsumeConfig {
        topic: cfg.topic.clone(),
        consumer_group: "loadgen_e2e".into(),
        run_id: cfg.run_id,
    };
    let consumers = consume::start(targets, &consume_cfg)?;
    let start = Instant::now() + Duration::from_millis(300);
    let window_end = start + cfg.warmup + cfg.duration;
    let deadline = window_end + cfg.drain_timeout + E2E_GRACE;
    let mut p = produce::run_at(&cfg, targets, start)?;
    consumers.wait_until(p.messages_ok, deadline);
    let receipts = consumers.stop();
    let acked = std::mem::take(&mut p.acked);
    let judged = e2e::judge(
        &acked,
        receipts,
        crate::schedule::epoch_ns(deadline),
        deadline - window_end,
        cfg.late_threshold,
    );
    Ok((p, judged))
}

fn find<'a>(report: &'a Report, prefix: &str) -> Option<&'a crate::report::RunEntry> {
    report.runs.iter().find(|r| r.name.starts_with(prefix))
}

/// The performance targets, judged as ratios to this run's floors.
fn checks(report: &Report) -> Vec<Check> {
    let mut out = Vec::new();
    for r in &report.runs {
        if let Some(c) = &r.consume {
            out.push(Check {
                target: format!("{}: every acknowledged message received", r.name),
                measured: c.verdict(),
                pass: c.complete(),
            });
        }
    }
    // Each run is judged against the floor windows around it.
    let with_floor = |prefix: &str| {
        let r = find(report, prefix)?;
        Some((r, report.adjacent_floor(r)?))
    };
    if let Some((r, floor)) = with_floor("sync 1 producer").filter(|(_, f)| f.disk.is_some()) {
        let (disk, lo) = (floor.disk.unwrap_or_default(), &floor.loopback);
        let l = &r.produce.latency;
        let limit = disk.p50_us + lo.p50_us + 50.0;
        out.push(Check {
            target: "SYNC_FLUSH one producer: p50 ≤ disk p50 + loopback p50 + 50 µs".into(),
            measured: format!(
                "p50 {} µs vs limit {} µs",
                report::us(l.p50_us),
                report::us(limit)
            ),
            pass: l.p50_us <= limit,
        });
        out.push(Check {
            target: "SYNC_FLUSH one producer: p99 ≤ 1.2 × disk p99".into(),
            measured: format!(
                "p99 {} µs = {:.2} × disk p99 {} µs",
                report::us(l.p99_us),
                l.p99_us / disk.p99_us,
                report::us(disk.p99_us)
            ),
            pass: l.p99_us <= 1.2 * disk.p99_us,
        });
    }
    if let Some((r, Some(disk))) = with_floor("sync 256 in flight 100k").map(|(r, f)| (r, f.disk)) {
        let p = &r.produce;
        out.push(Check {
            target: "SYNC_FLUSH 256 concurrent: ≥ 100k msg/s of 128 B at p99 ≤ 3 × disk p99".into(),
            measured: format!(
                "{:.0} msg/s, p99 {} µs = {:.2} × disk p99",
                p.achieved_msgs_per_s,
                report::us(p.latency.p99_us),
                p.latency.p99_us / disk.p99_us
            ),
            pass: p.achieved_msgs_per_s >= 100_000.0 && p.latency.p99_us <= 3.0 * disk.p99_us,
        });
    }
    if let Some((r, floor)) = with_floor("async half saturation") {
        let lo = &floor.loopback;
        let p = &r.produce;
        let diff_points = (lo.share_under_1ms - p.share_under_1ms) * 100.0;
        out.push(Check {
            target: "ASYNC_FLUSH at half saturation: share < 1 ms within 0.5 points of loopback's"
                .into(),
            measured: format!(
                "{:.3}% vs loopback {:.3}% ({:.3} points)",
                p.share_under_1ms * 100.0,
                lo.share_under_1ms * 100.0,
                diff_points
            ),
            pass: diff_points <= 0.5,
        });
        out.push(Check {
            target: "ASYNC_FLUSH at half saturation: p99.9 ≤ 1.5 × loopback p99.9".into(),
            measured: format!(
                "p99.9 {} µs = {:.2} × loopback p99.9 {} µs",
                report::us(p.latency.p99_9_us),
                p.latency.p99_9_us / lo.p99_9_us,
                report::us(lo.p99_9_us)
            ),
            pass: p.latency.p99_9_us <= 1.5 * lo.p99_9_us,
        });
    }
    if let Some((c, floor)) =
        with_floor("async e2e").and_then(|(r, f)| Some((r.consume.as_ref()?, f)))
    {
        let lo = &floor.loopback;
        let l = &c.e2e_latency;
        out.push(Check {
            target: "e2e ASYNC_FLUSH 20k msg/s: p50 ≤ 3 × loopback p50".into(),
            measured: format!(
                "p50 {} µs = {:.2} × loopback p50",
                report::us(l.p50_us),
                l.p50_us / lo.p50_us
            ),
            pass: l.count > 0 && l.p50_us <= 3.0 * lo.p50_us,
        });
        out.push(Check {
            target: "e2e ASYNC_FLUSH 20k msg/s: p99 ≤ 1.5 × loopback p99".into(),
            measured: format!(
                "p99 {} µs = {:.2} × loopback p99",
                report::us(l.p99_us),
                l.p99_us / lo.p99_us
            ),
            pass: l.count > 0 && l.p99_us <= 1.5 * lo.p99_us,
        });
    }
    out
}
