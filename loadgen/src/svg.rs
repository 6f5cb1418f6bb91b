//! Hand-written SVG plots (no plotting crate):
//! - [`percentile_plot`]: latency percentile distributions, several runs overlaid. The x axis
//!   is in "nines" (x = −log10(1 − q): 0 → p0, 1 → p90, 2 → p99, 3 → p99.9 …), the y axis is
//!   latency on a log scale. The 1 ms line and the 99.6% claim are drawn for reference.
//! - [`throughput_plot`]: p50 / p99 / p99.9 against achieved throughput (the sweep curve).

use std::fmt::Write as _;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 310.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

/// One distribution to draw: a label, the total count (sets where the max sits on the
/// nines axis), and (quantile, µs) points as in `LatencySummary::distribution`.
pub struct Series<'a> {
    pub label: String,
    pub count: u64,
    pub points: &'a [[f64; 2]],
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nines(q: f64, count: u64) -> f64 {
    let cap = (count.max(1) as f64).log10();
    if q >= 1.0 {
        cap
    } else {
        (-(1.0 - q).log10()).min(cap)
    }
}

fn latency_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else {
        format!("{us} µs")
    }
}

fn nines_label(n: i32) -> String {
    match n {
        0 => "p0".to_string(),
        1 => "p90".to_string(),
        2 => "p99".to_string(),
        n => format!("p99.{}", "9".repeat(usize::try_from(n - 2).unwrap_or(0))),
    }
}

struct Frame {
    x_min: f64,
    x_max: f64,
    y_min_log: f64,
    y_max_log: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x_min) / (self.x_max - self.x_min) * (WIDTH - LEFT - RIGHT)
    }
    fn py(&self, us: f64) -> f64 {
        let l = us.max(1e-3).log10();
        TOP + (self.y_max_log - l) / (self.y_max_log - self.y_min_log) * (HEIGHT - TOP - BOTTOM)
    }
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(title)
    );
}

fn y_axis(out: &mut String, f: &Frame) {
    let mut d = f.y_min_log as i32;
    while f64::from(d) <= f.y_max_log + 1e-9 {
        let us = 10f64.powi(d);
        let y = f.py(us);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            latency_label(us)
        );
        d += 1;
    }
    let _ = writeln!(
        out,
        "<text x=\"18\" y=\"{:.1}\" transform=\"rotate(-90 18 {:.1})\" text-anchor=\"middle\">latency (log scale)</text>",
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0
    );
}

fn legend(out: &mut String, labels: &[(String, String, &str)]) {
    for (i, (label, color, dash)) in labels.iter().enumerate() {
        let y = TOP + 14.0 + i as f64 * 20.0;
        let x = WIDTH - RIGHT + 16.0;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"2.5\" stroke-dasharray=\"{dash}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            x + 26.0,
            x + 32.0,
            y + 4.0,
            escape(label)
        );
    }
}

fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 3.0);
    }
    let lo_log = lo.log10().floor().min(2.0);
    let hi_log = hi.log10().ceil().max(lo_log + 1.0).max(3.0);
    (lo_log, hi_log)
}

/// Latency percentile distributions of several runs on one chart.
pub fn percentile_plot(title: &str, series: &[Series<'_>]) -> String {
    let x_max = series
        .iter()
        .map(|s| (s.count.max(10) as f64).log10().ceil())
        .fold(3.0_f64, f64::max)
        .min(7.0);
    let (y_min_log, y_max_log) = y_range(series.iter().flat_map(|s| s.points.iter().map(|p| p[1])));
    let f = Frame {
        x_min: 0.0,
        x_max,
        y_min_log,
        y_max_log,
    };
    let mut out = String::new();
    header(&mut out, title);
    y_axis(&mut out, &f);
    for n in 0..=(x_max as i32) {
        let x = f.px(f64::from(n));
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0,
            nines_label(n)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile (log \"nines\" scale)</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 14.0
    );
    // References: the 1 ms line and the 99.6% claim.
    let y1ms = f.py(1000.0);
    let xclaim = f.px(nines(0.996, u64::MAX));
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y1ms:.1}\" x2=\"{:.1}\" y2=\"{y1ms:.1}\" stroke=\"#444\" stroke-dasharray=\"6 4\"/>\
         <line x1=\"{xclaim:.1}\" y1=\"{TOP}\" x2=\"{xclaim:.1}\" y2=\"{:.1}\" stroke=\"#444\" stroke-dasharray=\"2 3\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#444\">99.6% under 1 ms (RocketMQ claim)</text>",
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        xclaim + 4.0,
        TOP + 12.0
    );
    let mut labels = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for p in s.points {
            let _ = write!(pts, "{:.1},{:.1} ", f.px(nines(p[0], s.count)), f.py(p[1]));
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.trim_end()
        );
        labels.push((s.label.clone(), color.to_string(), ""));
    }
    legend(&mut out, &labels);
    out.push_str("</svg>\n");
    out
}

/// One sweep: (achieved msgs/s, p50 µs, p99 µs, p99.9 µs) per step.
pub struct Curve {
    pub label: String,
    pub points: Vec<[f64; 4]>,
}

/// p50 (solid), p99 (dashed) and p99.9 (dotted) latency against achieved throughput.
pub fn throughput_plot(title: &str, curves: &[Curve]) -> String {
    let x_max_raw = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p[0]))
        .fold(1.0_f64, f64::max);
    let step = nice_step(x_max_raw / 5.0);
    let x_max = (x_max_raw / step).ceil() * step;
    let (y_min_log, y_max_log) = y_range(
        curves
            .iter()
            .flat_map(|c| c.points.iter().flat_map(|p| [p[1], p[2], p[3]])),
    );
    let f = Frame {
        x_min: 0.0,
        x_max,
        y_min_log,
        y_max_log,
    };
    let mut out = String::new();
    header(&mut out, title);
    y_axis(&mut out, &f);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let px = f.px(x);
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0,
            throughput_label(x)
        );
        x += step;
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">achieved throughput (messages/s)</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 14.0
    );
    let mut labels = Vec::new();
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (k, (name, dash)) in [("p50", ""), ("p99", "8 4"), ("p99.9", "2 3")]
            .iter()
            .enumerate()
        {
            let mut pts = String::new();
            for p in &c.points {
                let _ = write!(pts, "{:.1},{:.1} ", f.px(p[0]), f.py(p[k + 1]));
            }
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>",
                pts.trim_end()
            );
            for p in &c.points {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                    f.px(p[0]),
                    f.py(p[k + 1])
                );
            }
            labels.push((format!("{} {name}", c.label), color.to_string(), *dash));
        }
    }
    legend(&mut out, &labels);
    out.push_str("</svg>\n");
    out
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.max(1e-9).log10().floor());
    let r = raw / mag;
    let m = if r <= 1.0 {
        1.0
    } else if r <= 2.0 {
        2.0
    } else if r <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn throughput_label(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{}k", x / 1e3)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_plot_draws_each_series() {
        let a = [[0.5, 100.0], [0.99, 900.0], [1.0, 5000.0]];
        let b = [[0.5, 200.0], [1.0, 20000.0]];
        let svg = percentile_plot(
            "t <x>",
            &[
                Series {
                    label: "a".into(),
                    count: 1000,
                    points: &a,
                },
                Series {
                    label: "b".into(),
                    count: 10,
                    points: &b,
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains("p99.9"));
    }

    #[test]
    fn nines_axis_maps_percentiles() {
        assert!((nines(0.99, 1_000_000) - 2.0).abs() < 1e-9);
        assert!((nines(1.0, 1000) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(3), "p99.9");
        assert_eq!(nines_label(2), "p99");
    }
}
