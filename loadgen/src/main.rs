//! `loadgen`: the command line. With no subcommand and no address it runs the embedded
//! standard suite (starts `petrel` itself); see `loadgen --help` and loadgen/README.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use loadgen::codec::SendCode;
use loadgen::floor::{self, FloorConfig};
use loadgen::produce::{self, Pacing, ProduceConfig};
use loadgen::report::{self, BrokerInfo, Report, SavedReport};
use loadgen::route::{self, Endpoint, Target};
use loadgen::suite::{self, SuiteOptions};
use loadgen::svg;
use loadgen::sweep::{self, SweepConfig};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Open-loop latency benchmark for RocketMQ-remoting brokers (Petrel or another).",
    long_about = "Open-loop latency benchmark for RocketMQ-remoting brokers.\n\n\
        Without a subcommand and without --namesrv/--broker it runs the standard suite: it starts \
        a petrel child process (temporary store, loopback ports), measures the disk and loopback \
        floors, SYNC_FLUSH and ASYNC_FLUSH produce, a sweep and end-to-end latency, and writes \
        JSON + markdown + SVG under bench-results/loadgen-<UTC stamp>/."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    suite: SuiteArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open-loop sync sends at a fixed rate (what the 1 ms claim is about).
    Produce(LoadArgs),
    /// Sends plus a long-polling PULL consumer per queue: intended send time → receipt.
    E2e(LoadArgs),
    /// Offered rate stepped up until saturation: the latency vs throughput curve.
    Sweep {
        #[command(flatten)]
        load: LoadArgs,
        /// Multiply the rate by this at each step.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Saturated when achieved < this share of offered.
        #[arg(long, default_value_t = 0.9)]
        saturation_ratio: f64,
        /// Saturated when p99 exceeds this many ms.
        #[arg(long, default_value_t = 50.0)]
        p99_limit_ms: f64,
    },
    /// 4 KiB O_DIRECT write + fdatasync latency on a directory's filesystem, and loopback RTT.
    Floor {
        /// Directory on the filesystem to measure (a real disk; tmpfs has no O_DIRECT).
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2000)]
        disk_samples: usize,
        #[arg(long, default_value_t = 20_000)]
        loopback_samples: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The standard suite against an embedded petrel (the default).
    Suite {
        #[command(flatten)]
        suite: SuiteArgs,
        /// Parent directory of the report (default: the workspace's bench-results/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// CPU an idle petrel uses: per-thread CPU time over a window with no client traffic.
    Idle {
        #[command(flatten)]
        suite: SuiteArgs,
        /// Length of the measured window.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        window: Duration,
        /// Wait this long after start-up before measuring.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        settle: Duration,
        /// Also write the markdown report here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A markdown comparison table of saved JSON reports (e.g. Petrel and a peer broker).
    Summarize {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Overlays the latency distributions of saved JSON reports in one SVG.
    Plot {
        /// loadgen JSON reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long, default_value = "overlay.svg")]
        out: PathBuf,
        #[arg(long, default_value = "latency by percentile")]
        title: String,
    },
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Nameserver address (routes come from GET_ROUTEINFO_BY_TOPIC).
    #[arg(long, conflicts_with = "broker")]
    namesrv: Option<String>,
    /// A broker address (sends go to its queues 0..queues).
    #[arg(long)]
    broker: Option<String>,
    #[arg(long, default_value = "loadgen_bench")]
    topic: String,
    /// Queues per broker (created if the topic does not exist; at most this many used).
    #[arg(long, default_value_t = 4)]
    queues: u32,
    /// Messages per second, all connections together (sweep: the first step).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time before the measurement starts (sent, not measured).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Connections (at least one per broker).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Requests in flight per connection before the sender waits (latency still counts from
    /// the intended time).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    #[arg(long, default_value_t = 128)]
    body_size: usize,
    /// Messages per send; > 1 uses SEND_BATCH_MESSAGE (320).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// SEND_MESSAGE_V2 (310, short header names) or SEND_MESSAGE (10).
    #[arg(long, value_enum, default_value_t = SendCodeArg::V2)]
    send_code: SendCodeArg,
    /// One request at a time, latency from the actual send (coordinated omission, for comparison).
    #[arg(long)]
    closed_loop: bool,
    /// Latencies above this many ms count as late.
    #[arg(long, default_value_t = 10.0)]
    late_ms: f64,
    /// Busy-wait the last N µs before each intended send (0: sleep only).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Flush mode to print when the broker does not report one (SYNC_FLUSH / ASYNC_FLUSH).
    #[arg(long)]
    flush_mode: Option<String>,
    /// Broker name for the report (e.g. "rocketmq-broker-rust 1.0.0").
    #[arg(long, default_value = "external broker")]
    broker_label: String,
    /// Where to measure the disk floor for the ratios ("none" to skip the floors).
    #[arg(long, default_value = "/var/tmp")]
    floor_dir: String,
    /// Output directory (default: bench-results/loadgen-<stamp>-<mode>).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct SuiteArgs {
    /// The petrel binary (default: next to loadgen, built if missing).
    #[arg(long)]
    petrel: Option<PathBuf>,
    /// Where the temporary store directories go (must support O_DIRECT).
    #[arg(long, default_value = "/var/tmp")]
    store_root: PathBuf,
    /// Short runs, for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Extra argument for petrel (repeatable), e.g. --petrel-arg=--shards --petrel-arg=2.
    #[arg(long = "petrel-arg", allow_hyphen_values = true)]
    petrel_args: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SendCodeArg {
    /// SEND_MESSAGE_V2 (310).
    V2,
    /// SEND_MESSAGE (10).
    V1,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s}"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("not a duration: {s}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn bench_results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bench-results")
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        None if cli.load.namesrv.is_none() && cli.load.broker.is_none() => {
            run_suite(&cli.suite, cli.load.out.clone(), &cli.load)
        }
        None => run_produce(&cli.load, false),
        Some(Command::Suite { suite, out }) => run_suite(&suite, out, &cli.load),
        Some(Command::Idle {
            suite,
            window,
            settle,
            out,
        }) => run_idle(&suite, window, settle, out.as_deref()),
        Some(Command::Produce(a)) => run_produce(&a, false),
        Some(Command::E2e(a)) => run_produce(&a, true),
        Some(Command::Sweep {
            load,
            factor,
            steps,
            saturation_ratio,
            p99_limit_ms,
        }) => run_sweep(&load, factor, steps, saturation_ratio, p99_limit_ms),
        Some(Command::Floor {
            dir,
            disk_samples,
            loopback_samples,
            out,
        }) => run_floor(&dir, disk_samples, loopback_samples, out),
        Some(Command::Plot { inputs, out, title }) => run_plot(&inputs, &out, &title),
        Some(Command::Summarize { inputs, out }) => run_summarize(&inputs, out.as_deref()),
    }
}

fn run_idle(s: &SuiteArgs, window: Duration, settle: Duration, out: Option<&Path>) -> Result<()> {
    let binary = loadgen::petrel::find_binary(s.petrel.as_deref())?;
    let stamp = std::process::id();
    let store = s.store_root.join(format!("loadgen-idle-{stamp}"));
    let log = std::env::temp_dir().join(format!("loadgen-idle-{stamp}.log"));
    eprintln!(
        "loadgen: idle petrel {}, {window:?} window",
        binary.display()
    );
    let report = loadgen::idle::measure(
        &binary,
        store.clone(),
        log,
        s.petrel_args.clone(),
        settle,
        window,
    );
    let _ = std::fs::remove_dir_all(&store);
    let report = report?;
    let command: Vec<String> = std::env::args().collect();
    let md = report.to_markdown(&command.join(" "));
    print!("{md}");
    if let Some(path) = out {
        std::fs::write(path, &md).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn run_suite(s: &SuiteArgs, out: Option<PathBuf>, load: &LoadArgs) -> Result<()> {
    let opts = SuiteOptions {
        petrel: s.petrel.clone(),
        store_root: s.store_root.clone(),
        out_dir: out.unwrap_or_else(bench_results_dir),
        topic: load.topic.clone(),
        queues: load.queues,
        quick: s.quick,
        petrel_args: s.petrel_args.clone(),
    };
    let (report, dir) = suite::run(&opts)?;
    println!("{}", report.markdown(&[]));
    println!("report written to {}", dir.display());
    Ok(())
}

fn endpoint(a: &LoadArgs) -> Result<Endpoint> {
    match (&a.namesrv, &a.broker) {
        (Some(n), _) => Ok(Endpoint::Namesrv(route::parse_addr(n)?)),
        (None, Some(b)) => Ok(Endpoint::Broker(route::parse_addr(b)?)),
        (None, None) => bail!("give --namesrv or --broker"),
    }
}

fn produce_config(a: &LoadArgs) -> ProduceConfig {
    let mut c = ProduceConfig::new(&a.topic, a.rate);
    c.duration = a.duration;
    c.warmup = a.warmup;
    c.connections = a.connections;
    c.max_in_flight = a.max_in_flight;
    c.body_size_bytes = a.body_size;
    c.batch = a.batch;
    c.send_code = match a.send_code {
        SendCodeArg::V2 => SendCode::SendMessageV2,
        SendCodeArg::V1 => SendCode::SendMessage,
    };
    c.pacing = if a.closed_loop {
        Pacing::ClosedLoop
    } else {
        Pacing::OpenLoop
    };
    c.late_threshold = Duration::from_secs_f64(a.late_ms / 1e3);
    c.spin = Duration::from_micros(a.spin_us);
    c.run_id = u64::from(std::process::id());
    c
}

/// Targets, flush mode and a report with the floors measured (unless --floor-dir none).
fn prepare(a: &LoadArgs, title: &str) -> Result<(Vec<Target>, String, Report)> {
    let ep = endpoint(a)?;
    let targets = route::resolve_targets(ep, &a.topic, a.queues)?;
    suite::prime(&targets, &a.topic)?;
    eprintln!(
        "loadgen: {} broker(s): {}",
        targets.len(),
        targets
            .iter()
            .map(|t| format!("{} {} q{:?}", t.broker_name, t.addr, t.queue_ids))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let flush = targets
        .first()
        .and_then(|t| route::broker_flush_mode(t.addr))
        .or_else(|| a.flush_mode.clone())
        .unwrap_or_else(|| "unknown".into());
    let endpoint_text = match ep {
        Endpoint::Namesrv(n) => format!("nameserver {n}"),
        Endpoint::Broker(b) => format!("broker {b}"),
    };
    let mut report = Report::new(
        title,
        BrokerInfo {
            name: a.broker_label.clone(),
            endpoint: endpoint_text,
        },
    );
    if a.floor_dir != "none" {
        let mut fc = FloorConfig::new(Path::new(&a.floor_dir));
        fc.disk_samples = 1000;
        fc.loopback_samples = 10_000;
        let f = floor::run(&fc)?;
        suite::print_floor(&f);
        report.floor = Some(f.clone());
        report.add_floor_window("start", f);
    }
    Ok((targets, flush, report))
}

fn out_dir(a: &LoadArgs, mode: &str) -> PathBuf {
    a.out.clone().unwrap_or_else(|| {
        bench_results_dir().join(format!("loadgen-{}-{mode}", report::utc_stamp()))
    })
}

fn finish(report: &Report, dir: &Path) -> Result<()> {
    let w = report.write(dir, "report")?;
    println!("{}", report.markdown(&[]));
    println!(
        "report written to {} (+ {} SVG)",
        w.markdown.display(),
        w.svgs.len()
    );
    Ok(())
}

fn run_produce(a: &LoadArgs, e2e: bool) -> Result<()> {
    let mode = if e2e { "e2e" } else { "produce" };
    let (targets, flush, mut report) = prepare(a, &format!("loadgen {mode}"))?;
    let cfg = produce_config(a);
    let name = format!("{mode} {:.0}/s", a.rate);
    let mut shortfall = None;
    if e2e {
        let (p, c) = suite::run_e2e(&cfg, &targets, cfg.connections, cfg.max_in_flight)?;
        suite::print_run_line(&p);
        eprintln!("    e2e {}", c.verdict());
        if !c.complete() {
            shortfall = Some(c.verdict());
        }
        report.push_run(&name, &flush, p, Some(c));
    } else {
        let p = produce::run(&cfg, &targets)?;
        suite::print_run_line(&p);
        report.push_run(&name, &flush, p, None);
    }
    if a.floor_dir != "none" {
        // A second floor window, so the run is between two and the floors' drift shows.
        let mut fc = FloorConfig::new(Path::new(&a.floor_dir));
        fc.disk_samples = 1000;
        fc.loopback_samples = 10_000;
        let f = floor::run(&fc)?;
        suite::print_floor(&f);
        report.add_floor_window(&name, f);
    }
    finish(&report, &out_dir(a, mode))?;
    if let Some(v) = shortfall {
        // The report is written; the exit status says the run lost acknowledged messages.
        bail!("end to end: {v}");
    }
    Ok(())
}

fn run_sweep(
    a: &LoadArgs,
    factor: f64,
    steps: usize,
    saturation_ratio: f64,
    p99_limit_ms: f64,
) -> Result<()> {
    if factor <= 1.0 {
        bail!("--factor must be above 1");
    }
    let (targets, flush, mut report) = prepare(a, "loadgen sweep")?;
    let cfg = SweepConfig {
        base: produce_config(a),
        start_rate_per_s: a.rate,
        factor,
        steps_max: steps,
        saturation_ratio,
        p99_limit: Duration::from_secs_f64(p99_limit_ms / 1e3),
    };
    let label = format!("{} {}", a.broker_label, flush);
    let s = sweep::run(&label, &cfg, &targets, suite::print_run_line)?;
    report.sweeps.push(s);
    finish(&report, &out_dir(a, "sweep"))
}

fn run_floor(
    dir: &Path,
    disk_samples: usize,
    loopback_samples: usize,
    out: Option<PathBuf>,
) -> Result<()> {
    let mut fc = FloorConfig::new(dir);
    fc.disk_samples = disk_samples;
    fc.loopback_samples = loopback_samples;
    let f = floor::run(&fc)?;
    suite::print_floor(&f);
    let mut report = Report::new(
        "loadgen floor",
        BrokerInfo {
            name: "none".into(),
            endpoint: "-".into(),
        },
    );
    report.floor = Some(f);
    let dir = out.unwrap_or_else(|| {
        bench_results_dir().join(format!("loadgen-{}-floor", report::utc_stamp()))
    });
    finish(&report, &dir)
}

fn read_reports(inputs: &[PathBuf]) -> Result<Vec<(String, SavedReport)>> {
    let mut reports = Vec::new();
    for p in inputs {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        let r: SavedReport =
            serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))?;
        let name = p.parent().and_then(Path::file_name).map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        reports.push((name, r));
    }
    Ok(reports)
}

fn run_summarize(inputs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let text = report::summarize(&read_reports(inputs)?);
    match out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn run_plot(inputs: &[PathBuf], out: &Path, title: &str) -> Result<()> {
    let mut reports = Vec::new();
    for p in inputs {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        let r: SavedReport =
            serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))?;
        reports.push(r);
    }
    let mut series = Vec::new();
    for r in &reports {
        for run in &r.runs {
            series.push(svg::Series {
                label: format!("{}: {} ({})", r.title, run.name, run.flush_mode),
                count: run.produce.latency.count,
                points: &run.produce.latency.distribution,
            });
        }
    }
    std::fs::write(out, svg::percentile_plot(title, &series))
        .with_context(|| format!("write {}", out.display()))?;
    println!("wrote {} ({} series)", out.display(), series.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
