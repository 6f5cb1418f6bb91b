//! Floor windows: the disk and loopback floors measured again between runs, so a report shows
//! how much the floors themselves moved (their spread) and each run is divided by the floors
//! measured just before and just after it (see `Report::add_floor_window`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::floor::FloorResult;
use crate::report::us;

#[derive(Clone, Debug, Serialize)]
pub struct FloorWindow {
    /// "start", or the name of the run this window followed.
    pub after: String,
    pub floor: FloorResult,
}

/// Min and max of `f` over the windows.
fn spread(windows: &[FloorWindow], f: impl Fn(&FloorResult) -> Option<f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = windows.iter().filter_map(|w| f(&w.floor)).collect();
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

fn range(r: Option<(f64, f64)>) -> String {
    r.map_or("–".into(), |(lo, hi)| format!("{}–{}", us(lo), us(hi)))
}

/// The windows' table and their spread, in markdown.
pub fn markdown(windows: &[FloorWindow]) -> String {
    let mut m = String::new();
    if windows.is_empty() {
        return m;
    }
    let _ = writeln!(m, "### Floor windows (between the runs)\n");
    let _ = writeln!(
        m,
        "Spread over {} windows: disk p50 {} µs, disk p99 {} µs, loopback p50 {} µs, loopback p99 {} µs. \
         Each run's ratios are to the two windows around it, their samples together.\n",
        windows.len(),
        range(spread(windows, |f| f.disk.as_ref().map(|d| d.p50_us))),
        range(spread(windows, |f| f.disk.as_ref().map(|d| d.p99_us))),
        range(spread(windows, |f| Some(f.loopback.p50_us))),
        range(spread(windows, |f| Some(f.loopback.p99_us))),
    );
    let _ = writeln!(
        m,
        "| window | after | disk samples | disk p50 | disk p99 | disk p99.9 | disk max | loopback p50 | loopback p99 | loopback p99.9 |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, w) in windows.iter().enumerate() {
        let d = w.floor.disk.as_ref();
        let cell =
            |f: fn(&crate::stats::LatencySummary) -> f64| d.map_or("–".into(), |d| us(f(d)));
        let l = &w.floor.loopback;
        let _ = writeln!(
            m,
            "| {i} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            w.after,
            d.map_or(0, |d| d.count),
            cell(|d| d.p50_us),
            cell(|d| d.p99_us),
            cell(|d| d.p99_9_us),
            cell(|d| d.max_us),
            us(l.p50_us),
            us(l.p99_us),
            us(l.p99_9_us)
        );
    }
    m.push('\n');
    m
}

#[cfg(test)]
mod tests {
    use crate::floor::loopback_only;
    use crate::produce::{Pacing, ProduceResult};
    use crate::report::{BrokerInfo, Report};
    use crate::stats::LatencySummary;

    fn run_with_p50(p50_us: f64) -> ProduceResult {
        ProduceResult {
            pacing: Pacing::OpenLoop,
            rate_per_s: 1.0,
            duration_s: 1.0,
            warmup_s: 0.0,
            connections: 1,
            max_in_flight: 1,
            body_size_bytes: 128,
            batch: 1,
            targets: Vec::new(),
            offered_msgs_per_s: 1.0,
            achieved_msgs_per_s: 1.0,
            sends_measured: 1,
            sends_ok: 1,
            messages_ok: 1,
            latency: LatencySummary {
                count: 1,
                p50_us,
                ..LatencySummary::default()
            },
            deadline_after_window_s: 10.0,
            service_time: LatencySummary::default(),
            generator_lag: LatencySummary::default(),
            sent_late_count: 0,
            share_under_1ms: 1.0,
            errors: Default::default(),
            generator_cpu_cores: 0.0,
            acked: Vec::new(),
        }
    }

    #[test]
    fn a_run_is_divided_by_the_two_windows_around_it() {
        let mut report = Report::new(
            "t",
            BrokerInfo {
                name: "b".into(),
                endpoint: "e".into(),
            },
        );
        let first = loopback_only(&[100; 10]);
        report.floor = Some(first.clone());
        report.add_floor_window("start", first);
        report.push_run("a", "SYNC_FLUSH", run_with_p50(600.0), None);
        let before = report.runs[0]
            .ratios
            .as_ref()
            .map(|r| r.p50_over_loopback_p50);
        assert!((before.unwrap_or(0.0) - 6.0).abs() < 0.1, "{before:?}");
        assert_eq!(report.runs[0].floor_windows, None);

        // The floor tripled during the run: the window after it counts too.
        report.add_floor_window("a", loopback_only(&[300; 30]));
        report.push_run("b", "SYNC_FLUSH", run_with_p50(600.0), None);
        let a = &report.runs[0];
        assert_eq!(a.floor_windows, Some([0, 1]));
        let ratio = a.ratios.as_ref().map_or(0.0, |r| r.p50_over_loopback_p50);
        assert!((ratio - 2.0).abs() < 0.05, "600 / merged p50 300: {ratio}");
        assert_eq!(
            report.runs[1].floor_windows, None,
            "b has no window after it yet"
        );
        let spread = super::markdown(&report.floor_windows);
        assert!(spread.contains("loopback p50 100–300 µs"), "{spread}");
    }
}
