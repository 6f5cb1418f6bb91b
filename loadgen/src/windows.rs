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
