//! The end-to-end judgement: every message the broker acknowledged must reach a consumer.
//!
//! The producer keeps every send answered SUCCESS ([`Acked`], its intended instant and message
//! count); the consumers keep every receipt of this run's messages ([`Receipt`]). Receipts are
//! matched to acknowledged sends by the intended instant each body carries (a multiset: a
//! batch's messages share one). Then:
//! - `received == acknowledged` is judged on the counts; a shortfall fails the run;
//! - an acknowledged message with no receipt by the deadline is *undelivered*: counted, and,
//!   when its send was in the measured window, charged in the e2e histogram at
//!   `deadline − intended` (stragglers are not dropped: the percentiles include them);
//! - a receipt with no acknowledged send (a send whose reply was lost or refused after the
//!   message was stored, or a duplicate delivery) is counted beside.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::consume::Receipts;
use crate::produce::Acked;
use crate::stats::{LatencyRecorder, LatencySummary};

/// The judged end-to-end result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct E2eResult {
    pub queues: usize,
    /// Messages answered SUCCESS to the producer (warm-up included).
    pub acknowledged: u64,
    /// Messages of this run the consumers received (warm-up and duplicates included).
    pub received: u64,
    /// `acknowledged − received` when positive: the run fails.
    pub shortfall: u64,
    /// Acknowledged messages with no receipt by the deadline (warm-up included).
    pub undelivered: u64,
    /// Of those, the ones in the measured window (each charged in `e2e_latency`).
    pub undelivered_in_window: u64,
    /// Receipts matching no acknowledged send (reply lost or refused after storing, or a
    /// duplicate delivery).
    pub received_unmatched: u64,
    /// Seconds from the end of the measured window to the e2e deadline.
    pub deadline_after_window_s: f64,
    /// Acknowledged messages of the window, intended send → receipt; undelivered ones at
    /// the deadline.
    pub e2e_latency: LatencySummary,
    pub pull_errors: BTreeMap<String, u64>,
}

impl E2eResult {
    /// Every acknowledged message arrived (no shortfall, none undelivered).
    pub fn complete(&self) -> bool {
        self.shortfall == 0 && self.undelivered == 0
    }

    /// One line saying whether the run is complete, for logs and errors.
    pub fn verdict(&self) -> String {
        let head = if self.complete() {
            "complete"
        } else {
            "SHORTFALL"
        };
        format!(
            "{head}: received {} / {} acknowledged (shortfall {}), {} undelivered by the deadline ({} in the window), {} received unmatched",
            self.received,
            self.acknowledged,
            self.shortfall,
            self.undelivered,
            self.undelivered_in_window,
            self.received_unmatched
        )
    }
}

/// Matches `receipts` with `acked` and judges them; `deadline_ns` (since the schedule epoch)
/// is where undelivered messages of the window are charged, `deadline_after_window` how far
/// that is past the window's end (for the report).
pub fn judge(
    acked: &[Acked],
    receipts: Receipts,
    deadline_ns: u64,
    deadline_after_window: Duration,
    late_threshold: Duration,
) -> E2eResult {
    let mut by_intended: HashMap<u64, Vec<u64>> = HashMap::new();
    let received = receipts.receipts.len() as u64;
    for &(intended, at) in &receipts.receipts {
        by_intended.entry(intended).or_default().push(at);
    }
    let mut latency = LatencyRecorder::new(late_threshold);
    let (mut acknowledged, mut undelivered, mut undelivered_in_window) = (0u64, 0u64, 0u64);
    for a in acked {
        acknowledged += u64::from(a.messages);
        let slot = by_intended.get_mut(&a.intended_ns);
        let mut slot = slot.map(std::mem::take).unwrap_or_default();
        for _ in 0..a.messages {
            let at = slot.pop();
            if at.is_none() {
                undelivered += 1;
                if a.measured {
                    undelivered_in_window += 1;
                }
            }
            if a.measured {
                let end = at.unwrap_or(deadline_ns);
                latency.record_ns(end.saturating_sub(a.intended_ns));
            }
        }
        if !slot.is_empty() {
            by_intended.insert(a.intended_ns, slot);
        }
    }
    let received_unmatched = by_intended.values().map(|v| v.len() as u64).sum();
    E2eResult {
        queues: receipts.queues,
        acknowledged,
        received,
        shortfall: acknowledged.saturating_sub(received),
        undelivered,
        undelivered_in_window,
        received_unmatched,
        deadline_after_window_s: deadline_after_window.as_secs_f64(),
        e2e_latency: latency.summary(),
        pull_errors: receipts.pull_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::Receipt;

    fn receipts(queues: usize, list: Vec<Receipt>) -> Receipts {
        Receipts {
            queues,
            receipts: list,
            pull_errors: BTreeMap::new(),
        }
    }

    const MS: u64 = 1_000_000;

    fn acked(intended_ms: u64, messages: u32, measured: bool) -> Acked {
        Acked {
            intended_ns: intended_ms * MS,
            messages,
            measured,
        }
    }

    #[test]
    fn all_delivered_is_complete_and_measures_each_receipt() {
        let sent = [acked(1, 1, false), acked(2, 1, true), acked(3, 2, true)];
        let got = receipts(
            1,
            vec![
                (MS, 2 * MS),
                (2 * MS, 3 * MS),
                (3 * MS, 5 * MS),
                (3 * MS, 6 * MS),
            ],
        );
        let r = judge(
            &sent,
            got,
            100 * MS,
            Duration::from_secs(1),
            Duration::from_millis(10),
        );
        assert!(r.complete(), "{}", r.verdict());
        assert_eq!((r.acknowledged, r.received, r.shortfall), (4, 4, 0));
        assert_eq!(r.e2e_latency.count, 3, "warm-up send not measured");
        assert!((r.e2e_latency.max_us - 3000.0).abs() < 1.0);
    }

    #[test]
    fn a_missing_message_is_a_shortfall_charged_at_the_deadline() {
        let sent = [acked(10, 1, true), acked(20, 1, true), acked(30, 1, true)];
        // The message sent at 20 ms never arrives.
        let got = receipts(1, vec![(10 * MS, 11 * MS), (30 * MS, 31 * MS)]);
        let deadline = 10_020 * MS;
        let r = judge(
            &sent,
            got,
            deadline,
            Duration::from_secs(10),
            Duration::from_millis(10),
        );
        assert!(!r.complete());
        assert!(r.verdict().starts_with("SHORTFALL"), "{}", r.verdict());
        assert_eq!((r.acknowledged, r.received, r.shortfall), (3, 2, 1));
        assert_eq!((r.undelivered, r.undelivered_in_window), (1, 1));
        assert_eq!(
            r.e2e_latency.count, 3,
            "the undelivered one is in the histogram"
        );
        assert!(
            (r.e2e_latency.max_us - 10_000_000.0).abs() < 1.0,
            "charged at deadline − intended = 10 s: {} µs",
            r.e2e_latency.max_us
        );
        assert_eq!(r.e2e_latency.late_count, 1);
    }

    #[test]
    fn a_duplicate_cannot_hide_a_missing_message() {
        // Counts match (2 = 2), but one message arrived twice and the other never.
        let sent = [acked(10, 1, true), acked(20, 1, true)];
        let got = receipts(1, vec![(10 * MS, 11 * MS), (10 * MS, 12 * MS)]);
        let r = judge(
            &sent,
            got,
            1000 * MS,
            Duration::from_secs(1),
            Duration::from_millis(10),
        );
        assert_eq!(r.shortfall, 0);
        assert_eq!(r.undelivered, 1);
        assert_eq!(r.received_unmatched, 1);
        assert!(!r.complete(), "{}", r.verdict());
    }

    #[test]
    fn a_batch_is_matched_message_by_message() {
        let sent = [acked(5, 3, true)];
        let got = receipts(2, vec![(5 * MS, 6 * MS), (5 * MS, 7 * MS)]);
        let r = judge(
            &sent,
            got,
            50 * MS,
            Duration::from_secs(1),
            Duration::from_millis(10),
        );
        assert_eq!((r.acknowledged, r.received, r.shortfall), (3, 2, 1));
        assert_eq!(r.undelivered_in_window, 1);
        assert_eq!(r.e2e_latency.count, 3);
        assert!((r.e2e_latency.max_us - 45_000.0).abs() < 1.0);
    }
}
