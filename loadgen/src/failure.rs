//! How a request that did not succeed is charged. A benchmark that leaves failures out of its
//! latency histogram rewards a broker for refusing or dropping the requests it finds hard, so
//! every failure here enters the same histogram as the successes, and is also counted by kind.
//!
//! A failed request never delivered what its user asked for, within the whole run. So it is
//! charged at the run's *deadline* (the end of the measured window plus the drain timeout),
//! measured from its intended send instant: never less than the drain timeout, always above
//! every success of the same run. Charging a fast rejection (a SYSTEM_BUSY answered in 50 µs)
//! at its reply time would make a broker that sheds load look faster than one that serves it.
//!
//! Kinds: a response code's name for a non-SUCCESS reply (`SYSTEM_BUSY`, `FLUSH_DISK_TIMEOUT`,
//! …), and [`TIMEOUT`], [`CONNECTION_CLOSED`], [`NOT_SENT`] for the requests that got no reply.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::stats::LatencyRecorder;

/// No reply by the run's deadline.
pub const TIMEOUT: &str = "TIMEOUT";
/// The connection closed (or failed to read or decode) with the request unanswered.
pub const CONNECTION_CLOSED: &str = "CONNECTION_CLOSED";
/// The schedule owed the request but it was never written (the connection was gone).
pub const NOT_SENT: &str = "NOT_SENT";

/// A failure: counted under `kind` in `errors` and recorded in `latency` at
/// `deadline − intended`.
pub fn charge(
    latency: &mut LatencyRecorder,
    errors: &mut BTreeMap<String, u64>,
    kind: &str,
    intended: Instant,
    deadline: Instant,
) {
    latency.record(deadline.saturating_duration_since(intended));
    *errors.entry(kind.to_string()).or_insert(0) += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_failure_enters_the_histogram_at_the_deadline_and_is_counted_by_kind() {
        let mut latency = LatencyRecorder::new(Duration::from_millis(10));
        let mut errors = BTreeMap::new();
        let t0 = Instant::now();
        // 999 fast successes and one fast rejection: the rejection must not look fast.
        for _ in 0..999 {
            latency.record(Duration::from_micros(100));
        }
        let deadline = t0 + Duration::from_secs(12);
        charge(
            &mut latency,
            &mut errors,
            "SYSTEM_BUSY",
            t0 + Duration::from_secs(2),
            deadline,
        );
        let s = latency.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(errors.get("SYSTEM_BUSY"), Some(&1));
        assert!(
            (s.max_us - 10_000_000.0).abs() < 1.0,
            "charged at deadline − intended = 10 s, max {} µs",
            s.max_us
        );
        assert_eq!(s.late_count, 1);
        assert_eq!(s.under_1ms_count, 999);
        // p99.99 lands on the failure: it is in the distribution, not beside it.
        assert!(s.p99_99_us >= 9_900_000.0, "p99.99 {} µs", s.p99_99_us);
    }

    #[test]
    fn kinds_are_counted_separately() {
        let mut latency = LatencyRecorder::new(Duration::from_millis(10));
        let mut errors = BTreeMap::new();
        let t = Instant::now();
        for kind in [TIMEOUT, TIMEOUT, CONNECTION_CLOSED, NOT_SENT] {
            charge(
                &mut latency,
                &mut errors,
                kind,
                t,
                t + Duration::from_secs(1),
            );
        }
        assert_eq!(latency.count(), 4);
        assert_eq!(errors.get(TIMEOUT), Some(&2));
        assert_eq!(errors.get(CONNECTION_CLOSED), Some(&1));
        assert_eq!(errors.get(NOT_SENT), Some(&1));
    }
}
