//! Open-loop send times. A schedule is a fixed-rate sequence of *intended* send instants;
//! the sender never moves a slot because an earlier request was slow (that would be
//! coordinated omission). Invariant: `intended(i)` is strictly increasing in `i` and does
//! not drift (computed from the start, never by adding intervals).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide reference instant. Intended send times travel inside message bodies as
/// nanoseconds since this instant, so the end-to-end consumer (same process) can recover them.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`epoch`] to `t` (0 if `t` is earlier).
pub fn epoch_ns(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `ns` nanoseconds after [`epoch`].
pub fn from_epoch_ns(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

/// One connection's share of a fixed-rate schedule.
///
/// With `phase_count` connections sharing a total rate `R`, connection `k` sends at
/// `start + (k + i * phase_count) / R`: the connections interleave evenly instead of all
/// firing at once.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    offset_ns: f64,
    interval_ns: f64,
}

impl Schedule {
    /// `rate_per_s` is the total rate over all `phase_count` phases; must be > 0.
    pub fn new(start: Instant, rate_per_s: f64, phase_index: usize, phase_count: usize) -> Self {
        assert!(
            rate_per_s > 0.0 && rate_per_s.is_finite(),
            "rate must be positive"
        );
        assert!(phase_count > 0 && phase_index < phase_count);
        let total_interval_ns = 1e9 / rate_per_s;
        Schedule {
            start,
            offset_ns: total_interval_ns * phase_index as f64,
            interval_ns: total_interval_ns * phase_count as f64,
        }
    }

    /// The intended send instant of this phase's `i`-th request.
    pub fn intended(&self, i: u64) -> Instant {
        let ns = self.offset_ns + self.interval_ns * i as f64;
        self.start + Duration::from_nanos(ns as u64)
    }

    /// Interval between two consecutive requests of this phase.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns as u64)
    }
}

/// Sleeps until `deadline`; the last `spin` of the wait is a busy loop (0 = never spin).
/// On this VM a sleeping thread wakes 50–130 µs late (p99 ~4 ms); the generator's lag
/// histogram shows how late, and latency is charged from the intended time regardless.
pub fn sleep_until(deadline: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_interleave_evenly_without_drift() {
        let start = Instant::now();
        let a = Schedule::new(start, 1000.0, 0, 2);
        let b = Schedule::new(start, 1000.0, 1, 2);
        assert_eq!(a.intended(0), start);
        assert_eq!(b.intended(0) - start, Duration::from_millis(1));
        assert_eq!(a.intended(1) - start, Duration::from_millis(2));
        assert_eq!(a.intended(1_000_000) - start, Duration::from_secs(2000));
    }

    #[test]
    fn epoch_ns_round_trips() {
        let t = Instant::now() + Duration::from_millis(5);
        let back = from_epoch_ns(epoch_ns(t));
        assert!(back <= t && t - back < Duration::from_micros(1));
    }
}
