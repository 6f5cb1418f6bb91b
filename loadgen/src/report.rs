//! The report: one JSON document (everything measured, including the distributions), a
//! markdown rendering of it, and SVG plots. Every latency figure of a broker is printed
//! beside the floors measured in the same run, as ratios.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::e2e::E2eResult;
use crate::floor::FloorResult;
use crate::produce::ProduceResult;
use crate::stats::{LatencySummary, CLAIM_SHARE_UNDER_1MS};
use crate::svg;
use crate::sweep::SweepResult;
use crate::windows::{self, FloorWindow};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub title: String,
    pub tool: String,
    pub started_utc: String,
    pub command: String,
    pub host: HostInfo,
    pub broker: BrokerInfo,
    pub floor: Option<FloorResult>,
    /// The floors measured again between runs (the first is `floor`).
    pub floor_windows: Vec<FloorWindow>,
    pub runs: Vec<RunEntry>,
    pub sweeps: Vec<SweepResult>,
    /// Pass/fail against the targets (standard suite only).
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostInfo {
    pub cpus: usize,
    pub kernel: String,
    pub cpu_model: String,
    /// /proc/loadavg when the report was started (other work on the host skews every figure).
    pub load_average: String,
}

impl HostInfo {
    pub fn detect() -> HostInfo {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        HostInfo {
            load_average,
            cpus: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            kernel,
            cpu_model,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokerInfo {
    /// "petrel (embedded)", or what the user said it is.
    pub name: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunEntry {
    pub name: String,
    /// SYNC_FLUSH / ASYNC_FLUSH as reported by the broker or given by flag, else "unknown".
    pub flush_mode: String,
    pub produce: ProduceResult,
    pub consume: Option<E2eResult>,
    pub ratios: Option<Ratios>,
    /// The floor windows before and after this run, which `ratios` are to (else `floor`).
    pub floor_windows: Option<[usize; 2]>,
    #[serde(skip)]
    floor_before: Option<usize>,
}

/// A run's latency divided by the floors of the same report.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub p50_over_disk_p50: Option<f64>,
    pub p99_over_disk_p99: Option<f64>,
    pub p99_9_over_disk_p99_9: Option<f64>,
    pub p50_over_loopback_p50: f64,
    pub p99_over_loopback_p99: f64,
    pub p99_9_over_loopback_p99_9: f64,
    /// p50 − (disk p50 + loopback p50), µs: what the broker adds on top of both floors.
    pub p50_minus_floors_us: Option<f64>,
}

impl Ratios {
    pub fn of(latency: &LatencySummary, floor: &FloorResult) -> Ratios {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let disk = floor.disk.as_ref();
        let lo = &floor.loopback;
        Ratios {
            p50_over_disk_p50: disk.map(|d| div(latency.p50_us, d.p50_us)),
            p99_over_disk_p99: disk.map(|d| div(latency.p99_us, d.p99_us)),
            p99_9_over_disk_p99_9: disk.map(|d| div(latency.p99_9_us, d.p99_9_us)),
            p50_over_loopback_p50: div(latency.p50_us, lo.p50_us),
            p99_over_loopback_p99: div(latency.p99_us, lo.p99_us),
            p99_9_over_loopback_p99_9: div(latency.p99_9_us, lo.p99_9_us),
            p50_minus_floors_us: disk.map(|d| latency.p50_us - d.p50_us - lo.p50_us),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

/// Files a report was written to.
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub svgs: Vec<PathBuf>,
}

impl Report {
    pub fn new(title: &str, broker: BrokerInfo) -> Report {
        Report {
            title: title.to_string(),
            tool: format!("loadgen {}", env!("CARGO_PKG_VERSION")),
            started_utc: utc_now(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            host: HostInfo::detect(),
            broker,
            floor: None,
            floor_windows: Vec::new(),
            runs: Vec::new(),
            sweeps: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a run, computing its ratios to this report's floor if there is one.
    pub fn push_run(
        &mut self,
        name: &str,
        flush_mode: &str,
        produce: ProduceResult,
        consume: Option<E2eResult>,
    ) {
        let ratios = self.floor.as_ref().map(|f| Ratios::of(&produce.latency, f));
        self.runs.push(RunEntry {
            name: name.to_string(),
            flush_mode: flush_mode.to_string(),
            produce,
            consume,
            ratios,
            floor_windows: None,
            floor_before: self.floor_windows.len().checked_sub(1),
        });
    }

    /// Adds floors measured after the runs pushed so far. The runs since the previous window
    /// get their ratios to the two windows around them.
    pub fn add_floor_window(&mut self, after: &str, floor: FloorResult) {
        let i = self.floor_windows.len();
        self.floor_windows.push(FloorWindow {
            after: after.to_string(),
            floor,
        });
        let Some(before) = i.checked_sub(1) else {
            return;
        };
        let merged = self.floor_windows[before]
            .floor
            .merged(&self.floor_windows[i].floor);
        for r in &mut self.runs {
            if r.floor_before == Some(before) && r.floor_windows.is_none() {
                r.ratios = Some(Ratios::of(&r.produce.latency, &merged));
                r.floor_windows = Some([before, i]);
            }
        }
    }

    /// The floors a run is judged against: its two adjacent windows together, else `floor`.
    pub fn adjacent_floor(&self, run: &RunEntry) -> Option<FloorResult> {
        if let Some([a, b]) = run.floor_windows {
            if let (Some(x), Some(y)) = (self.floor_windows.get(a), self.floor_windows.get(b)) {
                return Some(x.floor.merged(&y.floor));
            }
        }
        self.floor.clone()
    }

    /// Writes `<stem>.json`, `<stem>.md` and the SVG plots into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Written> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let json = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(self).context("serialize report")?;
        std::fs::write(&json, text).with_context(|| format!("write {}", json.display()))?;
        let mut svgs = Vec::new();
        let series = self.percentile_series();
        if !series.is_empty() {
            let path = dir.join(format!("{stem}-percentiles.svg"));
            let plot =
                svg::percentile_plot(&format!("{} — latency by percentile", self.title), &series);
            std::fs::write(&path, plot).with_context(|| format!("write {}", path.display()))?;
            svgs.push(path);
        }
        if !self.sweeps.is_empty() {
            let curves: Vec<svg::Curve> = self.sweeps.iter().map(sweep_curve).collect();
            let path = dir.join(format!("{stem}-sweep.svg"));
            let plot =
                svg::throughput_plot(&format!("{} — latency vs throughput", self.title), &curves);
            std::fs::write(&path, plot).with_context(|| format!("write {}", path.display()))?;
            svgs.push(path);
        }
        let markdown = dir.join(format!("{stem}.md"));
        let svg_names: Vec<String> = svgs
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        std::fs::write(&markdown, self.markdown(&svg_names))
            .with_context(|| format!("write {}", markdown.display()))?;
        Ok(Written {
            json,
            markdown,
            svgs,
        })
    }

    fn percentile_series(&self) -> Vec<svg::Series<'_>> {
        let mut series = Vec::new();
        if let Some(f) = &self.floor {
            if let Some(d) = &f.disk {
                series.push(svg::Series {
                    label: "floor: 4 KiB write+fdatasync".into(),
                    count: d.count,
                    points: &d.distribution,
                });
            }
            series.push(svg::Series {
                label: "floor: loopback 64 B RTT".into(),
                count: f.loopback.count,
                points: &f.loopback.distribution,
            });
        }
        for r in &self.runs {
            series.push(svg::Series {
                label: if r.consume.is_some() {
                    format!("{} send ({})", r.name, short_flush(&r.flush_mode))
                } else {
                    format!("{} ({})", r.name, short_flush(&r.flush_mode))
                },
                count: r.produce.latency.count,
                points: &r.produce.latency.distribution,
            });
            if let Some(c) = &r.consume {
                series.push(svg::Series {
                    label: format!("{} receive (e2e)", r.name),
                    count: c.e2e_latency.count,
                    points: &c.e2e_latency.distribution,
                });
            }
        }
        series
    }

    /// The markdown rendering; `svgs` are file names next to it.
    pub fn markdown(&self, svgs: &[String]) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# {}\n", self.title);
        let _ = writeln!(
            m,
            "- broker: {} at {}\n- host: {} CPUs, {}, kernel {}, load average at start {}\n- started: {} UTC\n- tool: {}\n- command: `{}`\n",
            self.broker.name,
            self.broker.endpoint,
            self.host.cpus,
            self.host.cpu_model,
            self.host.kernel,
            self.host.load_average,
            self.started_utc,
            self.tool,
            self.command
        );
        let _ = writeln!(
            m,
            "Latency is measured open loop: from each request's *intended* send time on a fixed-rate \
             schedule to its response, so a stall is charged to every request it delays. All times in µs. \
             \"<1 ms\" is the share of all measured sends answered SUCCESS in under 1 ms (errors and \
             timeouts count against it); RocketMQ's claim is {:.1}%. Every failure (an error reply, \
             no reply, a closed connection, a request that could not be sent) is in the latency \
             histogram at the run's deadline (the window's end plus the drain timeout), and is \
             counted by kind in \"errors\".\n",
            CLAIM_SHARE_UNDER_1MS * 100.0
        );
        for s in svgs {
            let _ = writeln!(m, "![{s}]({s})\n");
        }
        if let Some(f) = &self.floor {
            let _ = writeln!(m, "## Floors (same run)\n\nDirectory: `{}`\n", f.dir);
            let _ = writeln!(m, "{}", latency_table_header("floor"));
            if let Some(d) = &f.disk {
                let _ = writeln!(
                    m,
                    "{}",
                    latency_row(
                        "4 KiB O_DIRECT write + fdatasync (one page rewritten in place)",
                        d
                    )
                );
            }
            let _ = writeln!(
                m,
                "{}",
                latency_row("loopback TCP round trip, 64 B", &f.loopback)
            );
            if let Some(e) = &f.disk_error {
                let _ = writeln!(m, "\nDisk floor could not run: {e}");
            }
            m.push('\n');
        }
        if self.floor_windows.len() > 1 {
            m.push_str(&windows::markdown(&self.floor_windows));
        }
        if !self.runs.is_empty() {
            let _ = writeln!(m, "## Runs\n");
            let _ = writeln!(
                m,
                "| run | flush | conns × in-flight | body × batch | offered msg/s | achieved msg/s | p50 | p90 | p99 | p99.6 | p99.9 | p99.99 | max | <1 ms | errors | loadgen CPUs |"
            );
            let _ = writeln!(
                m,
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for r in &self.runs {
                let p = &r.produce;
                let l = &p.latency;
                let _ = writeln!(
                    m,
                    "| {} | {} | {} × {} | {} B × {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.3}% | {} | {:.2} |",
                    r.name,
                    r.flush_mode,
                    p.connections,
                    p.max_in_flight,
                    p.body_size_bytes,
                    p.batch,
                    p.offered_msgs_per_s,
                    p.achieved_msgs_per_s,
                    us(l.p50_us),
                    us(l.p90_us),
                    us(l.p99_us),
                    us(l.p99_6_us),
                    us(l.p99_9_us),
                    us(l.p99_99_us),
                    us(l.max_us),
                    p.share_under_1ms * 100.0,
                    errors_text(&p.errors),
                    p.generator_cpu_cores
                );
            }
            m.push('\n');
            let _ = writeln!(
                m,
                "\"loadgen CPUs\": CPU time the generator's own process used during the run (1.00 = one \
                 core). On a {}-CPU host the generator and the broker share the cores, so at high \
                 rates part of the latency is the generator's CPU, not the broker's.\n",
                self.host.cpus
            );
            if self.runs.iter().any(|r| r.ratios.is_some()) {
                let _ = writeln!(m, "### Ratios to the floors\n");
                let _ = writeln!(
                    m,
                    "| run | floor windows | p50 / disk p50 | p99 / disk p99 | p99.9 / disk p99.9 | p50 − (disk + loopback p50) µs | p50 / loopback p50 | p99 / loopback p99 | p99.9 / loopback p99.9 |"
                );
                let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|");
                for r in &self.runs {
                    if let Some(x) = &r.ratios {
                        let _ = writeln!(
                            m,
                            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                            r.name,
                            r.floor_windows
                                .map_or("first".into(), |[a, b]| format!("{a}, {b}")),
                            opt(x.p50_over_disk_p50),
                            opt(x.p99_over_disk_p99),
                            opt(x.p99_9_over_disk_p99_9),
                            x.p50_minus_floors_us
                                .map_or("–".into(), |v| format!("{v:.0}")),
                            x.p50_over_loopback_p50,
                            x.p99_over_loopback_p99,
                            x.p99_9_over_loopback_p99_9
                        );
                    }
                }
                m.push('\n');
            }
            let _ = writeln!(m, "### Service time and generator lag\n");
            let _ = writeln!(
                m,
                "Service time: from the instant the sender took the request to its response. Generator lag: \
                 how late the sender took requests against their intended time (a large lag means the \
                 generator or the in-flight bound, not only the broker, held requests back).\n"
            );
            let _ = writeln!(m, "{}", latency_table_header("run"));
            for r in &self.runs {
                let _ = writeln!(
                    m,
                    "{}",
                    latency_row(&format!("{} service time", r.name), &r.produce.service_time)
                );
                let _ = writeln!(
                    m,
                    "{}",
                    latency_row(
                        &format!("{} generator lag", r.name),
                        &r.produce.generator_lag
                    )
                );
            }
            m.push('\n');
            let e2e: Vec<&RunEntry> = self.runs.iter().filter(|r| r.consume.is_some()).collect();
            if !e2e.is_empty() {
                let _ = writeln!(m, "### End to end (intended send → consumer receipt)\n");
                let _ = writeln!(m, "{}", latency_table_header("run"));
                for r in &e2e {
                    if let Some(c) = &r.consume {
                        let _ = writeln!(m, "{}", latency_row(&r.name, &c.e2e_latency));
                    }
                }
                for r in &e2e {
                    if let Some(c) = &r.consume {
                        let _ = writeln!(
                            m,
                            "\n{}: {} queues; {}; undelivered messages of the window are in the \
                             histogram at the deadline, {:.0} s after the window; pull errors: {}",
                            r.name,
                            c.queues,
                            c.verdict(),
                            c.deadline_after_window_s,
                            errors_text(&c.pull_errors)
                        );
                    }
                }
                m.push('\n');
            }
        }
        for s in &self.sweeps {
            let _ = writeln!(m, "## Sweep: {}\n", s.label);
            let _ = writeln!(
                m,
                "Max achieved before saturation: **{:.0} msg/s** (max achieved in any step: {:.0} msg/s). Stopped: {}.\n",
                s.max_unsaturated_msgs_per_s, s.max_achieved_msgs_per_s, s.stop_reason
            );
            let _ = writeln!(
                m,
                "| offered msg/s | achieved msg/s | p50 | p99 | p99.9 | max | <1 ms | errors | loadgen CPUs |"
            );
            let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|");
            for p in &s.steps {
                let l = &p.latency;
                let _ = writeln!(
                    m,
                    "| {:.0} | {:.0} | {} | {} | {} | {} | {:.3}% | {} | {:.2} |",
                    p.offered_msgs_per_s,
                    p.achieved_msgs_per_s,
                    us(l.p50_us),
                    us(l.p99_us),
                    us(l.p99_9_us),
                    us(l.max_us),
                    p.share_under_1ms * 100.0,
                    errors_text(&p.errors),
                    p.generator_cpu_cores
                );
            }
            m.push('\n');
        }
        if !self.checks.is_empty() {
            let _ = writeln!(m, "## Targets (issue 4), judged within this run\n");
            let _ = writeln!(m, "| target | measured | met |");
            let _ = writeln!(m, "|---|---|---|");
            for c in &self.checks {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} |",
                    c.target,
                    c.measured,
                    if c.pass { "yes" } else { "**no**" }
                );
            }
            m.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(m, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
        }
        m
    }
}

fn sweep_curve(s: &SweepResult) -> svg::Curve {
    svg::Curve {
        label: s.label.clone(),
        points: s
            .steps
            .iter()
            .map(|p| {
                [
                    p.achieved_msgs_per_s,
                    p.latency.p50_us,
                    p.latency.p99_us,
                    p.latency.p99_9_us,
                ]
            })
            .collect(),
    }
}

fn short_flush(mode: &str) -> &str {
    match mode {
        "SYNC_FLUSH" => "sync",
        "ASYNC_FLUSH" => "async",
        other => other,
    }
}

/// A µs figure: one decimal under 100 µs, whole µs above.
pub fn us(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

fn errors_text(errors: &std::collections::BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".into();
    }
    errors
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn latency_table_header(first: &str) -> String {
    format!(
        "| {first} | count | p50 | p90 | p99 | p99.6 | p99.9 | p99.99 | max | <1 ms |\n|---|---|---|---|---|---|---|---|---|---|"
    )
}

fn latency_row(name: &str, l: &LatencySummary) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3}% |",
        name,
        l.count,
        us(l.p50_us),
        us(l.p90_us),
        us(l.p99_us),
        us(l.p99_6_us),
        us(l.p99_9_us),
        us(l.p99_99_us),
        us(l.max_us),
        l.share_under_1ms * 100.0
    )
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, mo, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `YYYYMMDD-HHMMSS` in UTC, for directory names.
pub fn utc_stamp() -> String {
    utc_now().replace(['-', ':'], "").replace(' ', "-")
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The parts of a saved report the `plot` and `summarize` commands read back.
#[derive(Deserialize)]
pub struct SavedReport {
    pub title: String,
    #[serde(default)]
    pub broker: Option<SavedBroker>,
    #[serde(default)]
    pub runs: Vec<SavedRun>,
    #[serde(default)]
    pub sweeps: Vec<SavedSweep>,
    #[serde(default)]
    pub floor: Option<SavedFloor>,
}

#[derive(Deserialize)]
pub struct SavedBroker {
    pub name: String,
}

#[derive(Deserialize)]
pub struct SavedRun {
    pub name: String,
    pub flush_mode: String,
    pub produce: SavedProduce,
}

#[derive(Deserialize)]
pub struct SavedProduce {
    pub latency: LatencySummary,
    #[serde(default)]
    pub offered_msgs_per_s: f64,
    #[serde(default)]
    pub achieved_msgs_per_s: f64,
    #[serde(default)]
    pub share_under_1ms: f64,
    #[serde(default)]
    pub errors: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize)]
pub struct SavedSweep {
    pub label: String,
    pub max_unsaturated_msgs_per_s: f64,
    pub max_achieved_msgs_per_s: f64,
    pub stop_reason: String,
    #[serde(default)]
    pub steps: Vec<SavedProduce>,
}

#[derive(Deserialize)]
pub struct SavedFloor {
    pub disk: Option<LatencySummary>,
    pub loopback: LatencySummary,
}

/// A markdown comparison of saved reports: every run (same offered rate side by side when
/// the inputs were made with the same settings), every sweep's maximum, and the floors.
pub fn summarize(reports: &[(String, SavedReport)]) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "| broker | report | run | flush | offered msg/s | achieved msg/s | p50 µs | p99 µs | p99.9 µs | max µs | <1 ms | errors |");
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (file, r) in reports {
        let broker = r.broker.as_ref().map_or("?", |b| b.name.as_str());
        for run in &r.runs {
            let p = &run.produce;
            let _ = writeln!(
                m,
                "| {broker} | {file} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.3}% | {} |",
                run.name,
                run.flush_mode,
                p.offered_msgs_per_s,
                p.achieved_msgs_per_s,
                us(p.latency.p50_us),
                us(p.latency.p99_us),
                us(p.latency.p99_9_us),
                us(p.latency.max_us),
                p.share_under_1ms * 100.0,
                errors_text(&p.errors)
            );
        }
        for s in &r.sweeps {
            for p in &s.steps {
                let _ = writeln!(
                    m,
                    "| {broker} | {file} | sweep step | {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.3}% | {} |",
                    s.label,
                    p.offered_msgs_per_s,
                    p.achieved_msgs_per_s,
                    us(p.latency.p50_us),
                    us(p.latency.p99_us),
                    us(p.latency.p99_9_us),
                    us(p.latency.max_us),
                    p.share_under_1ms * 100.0,
                    errors_text(&p.errors)
                );
            }
        }
    }
    let _ = writeln!(m, "\n| broker | sweep | max achieved before saturation, msg/s | max achieved in any step, msg/s | stopped |");
    let _ = writeln!(m, "|---|---|---|---|---|");
    for (_, r) in reports {
        let broker = r.broker.as_ref().map_or("?", |b| b.name.as_str());
        for s in &r.sweeps {
            let _ = writeln!(
                m,
                "| {broker} | {} | {:.0} | {:.0} | {} |",
                s.label, s.max_unsaturated_msgs_per_s, s.max_achieved_msgs_per_s, s.stop_reason
            );
        }
    }
    let _ = writeln!(
        m,
        "\n| report | disk floor p50 / p99 µs | loopback floor p50 / p99 µs |"
    );
    let _ = writeln!(m, "|---|---|---|");
    for (file, r) in reports {
        if let Some(f) = &r.floor {
            let disk = f.disk.as_ref().map_or("–".to_string(), |d| {
                format!("{} / {}", us(d.p50_us), us(d.p99_us))
            });
            let _ = writeln!(
                m,
                "| {file} | {disk} | {} / {} |",
                us(f.loopback.p50_us),
                us(f.loopback.p99_us)
            );
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
