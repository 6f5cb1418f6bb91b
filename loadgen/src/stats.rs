//! Latency recording. Each thread owns its recorders (no sharing on the hot path) and the
//! runner merges them at the end. Values are recorded in nanoseconds into a
//! `histogram::Histogram` (grouping power 7: relative error under 0.8%); the count, the
//! count under 1 ms, the count over the "late" threshold and the exact min and max are
//! kept beside it, so the headline share and the max carry no bucket error.

use std::time::Duration;

use histogram::Histogram;
use serde::{Deserialize, Serialize};

/// 2^7 buckets per power of two: relative error at most 1/128.
const GROUPING_POWER: u8 = 7;
/// Values up to 2^40 ns (about 18 minutes); anything longer is clamped to it.
const MAX_VALUE_POWER: u8 = 40;
const VALUE_NS_MAX: u64 = (1 << MAX_VALUE_POWER) - 1;

/// RocketMQ's published claim: more than 99.6% of responses under 1 ms.
pub const CLAIM_SHARE_UNDER_1MS: f64 = 0.996;
const ONE_MS_NS: u64 = 1_000_000;

/// The percentiles every summary reports, as quantiles.
pub const REPORTED_QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.996, 0.999, 0.9999];

/// Records durations; merge recorders of the same kind with [`LatencyRecorder::merge`].
#[derive(Clone, Debug)]
pub struct LatencyRecorder {
    hist: Histogram,
    count: u64,
    under_1ms_count: u64,
    late_count: u64,
    late_threshold_ns: u64,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

impl LatencyRecorder {
    /// A recorder that counts values above `late_threshold` as late.
    pub fn new(late_threshold: Duration) -> Self {
        LatencyRecorder {
            hist: Histogram::new(GROUPING_POWER, MAX_VALUE_POWER)
                .expect("grouping power 7 < max value power 40 is a valid config"),
            count: 0,
            under_1ms_count: 0,
            late_count: 0,
            late_threshold_ns: duration_ns(late_threshold),
            min_ns: u64::MAX,
            max_ns: 0,
            sum_ns: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: Duration) {
        self.record_ns(duration_ns(value));
    }

    /// Records one value given in nanoseconds.
    pub fn record_ns(&mut self, value_ns: u64) {
        let v = value_ns.min(VALUE_NS_MAX);
        // Cannot fail: v is within the configured range.
        let _ = self.hist.increment(v);
        self.count += 1;
        if v < ONE_MS_NS {
            self.under_1ms_count += 1;
        }
        if v > self.late_threshold_ns {
            self.late_count += 1;
        }
        self.min_ns = self.min_ns.min(v);
        self.max_ns = self.max_ns.max(v);
        self.sum_ns += u128::from(v);
    }

    /// Adds every value recorded by `other` (same configuration by construction).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Cannot fail: both histograms come from `new` with the same parameters.
        let _ = self.hist.checked_add_assign(&other.hist);
        self.count += other.count;
        self.under_1ms_count += other.under_1ms_count;
        self.late_count += other.late_count;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.sum_ns += other.sum_ns;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn late_count(&self) -> u64 {
        self.late_count
    }

    pub fn under_1ms_count(&self) -> u64 {
        self.under_1ms_count
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The value at quantile `q` in µs (the upper edge of its bucket, capped at the max).
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let result = self.hist.quantile(q).ok()??;
        let bucket = result.entries().values().next()?;
        Some(bucket.end().min(self.max_ns) as f64 / 1e3)
    }

    /// The summary a report prints: the reported percentiles, the shares, and the
    /// distribution points the SVG plot draws.
    pub fn summary(&self) -> LatencySummary {
        let mut p = [0.0_f64; REPORTED_QUANTILES.len()];
        if let Ok(Some(result)) = self.hist.quantiles(&REPORTED_QUANTILES) {
            for (slot, bucket) in p.iter_mut().zip(result.entries().values()) {
                *slot = bucket.end().min(self.max_ns) as f64 / 1e3;
            }
        }
        let count = self.count;
        LatencySummary {
            count,
            min_us: if count == 0 {
                0.0
            } else {
                self.min_ns as f64 / 1e3
            },
            mean_us: if count == 0 {
                0.0
            } else {
                self.sum_ns as f64 / count as f64 / 1e3
            },
            p50_us: p[0],
            p90_us: p[1],
            p99_us: p[2],
            p99_6_us: p[3],
            p99_9_us: p[4],
            p99_99_us: p[5],
            max_us: self.max_ns as f64 / 1e3,
            under_1ms_count: self.under_1ms_count,
            share_under_1ms: if count == 0 {
                0.0
            } else {
                self.under_1ms_count as f64 / count as f64
            },
            late_threshold_us: self.late_threshold_ns as f64 / 1e3,
            late_count: self.late_count,
            distribution: self.distribution(),
        }
    }

    /// (quantile, value µs) at the upper edge of every non-empty bucket, in order; the last
    /// point is (1.0, exact max).
    fn distribution(&self) -> Vec<[f64; 2]> {
        let mut points = Vec::new();
        if self.count == 0 {
            return points;
        }
        let mut cumulative: u64 = 0;
        for bucket in self.hist.iter() {
            if bucket.count() == 0 {
                continue;
            }
            cumulative += bucket.count();
            let q = cumulative as f64 / self.count as f64;
            points.push([q, bucket.end().min(self.max_ns) as f64 / 1e3]);
        }
        points
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a report prints about one latency distribution. All times in µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_6_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub max_us: f64,
    pub under_1ms_count: u64,
    /// Share of the recorded values under 1 ms (0..1); compare with [`CLAIM_SHARE_UNDER_1MS`].
    pub share_under_1ms: f64,
    pub late_threshold_us: f64,
    /// Values above `late_threshold_us`.
    pub late_count: u64,
    /// (quantile 0..1, µs) points of the whole distribution, for plots.
    #[serde(default)]
    pub distribution: Vec<[f64; 2]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_within_bucket_error() {
        let mut r = LatencyRecorder::new(Duration::from_millis(10));
        for us in 1..=10_000u64 {
            r.record(Duration::from_micros(us));
        }
        let s = r.summary();
        assert_eq!(s.count, 10_000);
        assert!(
            (s.p50_us - 5000.0).abs() / 5000.0 < 0.01,
            "p50 {}",
            s.p50_us
        );
        assert!(
            (s.p99_us - 9900.0).abs() / 9900.0 < 0.01,
            "p99 {}",
            s.p99_us
        );
        assert!((s.max_us - 10_000.0).abs() < 1e-9);
        assert_eq!(s.under_1ms_count, 999);
        assert_eq!(s.late_count, 0);
        let last = s.distribution.last().expect("non-empty");
        assert!((last[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = LatencyRecorder::new(Duration::from_millis(1));
        let mut b = LatencyRecorder::new(Duration::from_millis(1));
        a.record(Duration::from_micros(10));
        b.record(Duration::from_millis(50));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.late_count, 1);
        assert!((s.min_us - 10.0).abs() < 1e-9);
        assert!((s.max_us - 50_000.0).abs() < 1e-9);
    }
}
