//! Requests in flight at SIGTERM, on the real `petrel` binary (`broker::runtime`: stop
//! accepting, release held pulls, drain in-flight requests ≤ 5 s, flush and checkpoint, close
//! connections; the supervisor's bound is 10 s):
//! - several connections keep 8 sends each in flight while the broker gets SIGTERM; every
//!   request gets an answer or sees its connection closed (none hangs), the process exits 0
//!   within its bound, and every send answered SEND_OK is in the store after a restart, at the
//!   queue offset its answer named;
//! - the same under ASYNC_FLUSH, where SEND_OK leaves before the record is written: the
//!   graceful shutdown must write (and sync) everything it acknowledged.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use broker::remoting::ResponseCode;
use common::paths::*;
use common::*;

const CONNECTIONS: usize = 4;
const DEPTH: usize = 8;
const QUEUES: i32 = 8;
/// Acknowledged sends (over all connections) before the SIGTERM: the senders are well under
/// way, whatever the machine's load.
const ACKED_BEFORE_STOP: usize = 200;
/// The supervisor's shutdown bound (10 s) plus room for a loaded machine to run the exit.
const EXIT_BOUND: Duration = Duration::from_secs(14);

/// Starts the senders, SIGTERMs the broker once `ACKED_BEFORE_STOP` sends are acknowledged,
/// checks the exit and the senders' ends, restarts and checks every acknowledged send.
fn sigterm_under_sends(extra_conf: &[&str], topic: &str) -> Result<()> {
    let mut broker = Broker::start_with(extra_conf)?;
    {
        let mut c = broker.client()?;
        create_topic(&mut c, topic, QUEUES, 6)?;
    }
    let addr = broker.addr();
    let acked_count = AtomicUsize::new(0);
    let (reports, status, took, acked_at_signal) = std::thread::scope(|s| {
        let senders: Vec<_> = (0..CONNECTIONS)
            .map(|conn| {
                let acked_count = &acked_count;
                s.spawn(move || {
                    pipelined_sender(
                        addr,
                        topic,
                        QUEUES,
                        conn,
                        DEPTH,
                        Duration::from_secs(30),
                        acked_count,
                    )
                })
            })
            .collect();
        let started = wait_until(
            "the senders' first acknowledgements",
            Duration::from_secs(60),
            || Ok((acked_count.load(Ordering::Relaxed) >= ACKED_BEFORE_STOP).then_some(())),
        );
        let stop = started.and_then(|()| {
            let acked_at_signal = acked_count.load(Ordering::Relaxed);
            let t0 = Instant::now();
            let status = broker.terminate(EXIT_BOUND)?;
            Ok((status, t0.elapsed(), acked_at_signal))
        });
        if stop.is_err() {
            // Stopped or killed, so that the senders' connections close and they end.
            let _ = broker.stop();
        }
        let reports: Vec<Result<SenderReport>> = senders
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("sender panicked")))
            })
            .collect();
        stop.map(|(status, took, at)| (reports, status, took, at))
    })?;
    assert!(
        status.success(),
        "petrel exit {status}; log:\n{}",
        broker.log()
    );
    assert!(took < EXIT_BOUND, "exit took {took:?}");

    let mut acked = Vec::new();
    let mut refused = std::collections::BTreeMap::new();
    let mut unanswered = 0;
    for (conn, report) in reports.into_iter().enumerate() {
        let report = report.with_context(|| format!("sender {conn}"))?;
        if !report.was_closed {
            bail!("sender {conn} ended without its connection closing");
        }
        unanswered += report.unanswered_at_close;
        for (code, n) in report.refused {
            *refused.entry(code).or_insert(0) += n;
        }
        acked.extend(report.acked);
    }
    for code in refused.keys() {
        assert!(
            [
                ResponseCode::SERVICE_NOT_AVAILABLE,
                ResponseCode::SYSTEM_BUSY,
                ResponseCode::FLUSH_DISK_TIMEOUT
            ]
            .contains(code),
            "unexpected answers during shutdown: {refused:?}"
        );
    }
    assert!(
        acked.len() > acked_at_signal,
        "sends in flight at the signal were answered: {} acknowledged, {acked_at_signal} at \
         the signal",
        acked.len()
    );

    broker.start_again()?;
    let mut c = broker.client()?;
    let stored = assert_all_acked_present(&mut c, topic, QUEUES, &acked)?;
    eprintln!(
        "SIGTERM after {acked_at_signal} acknowledged sends; exit 0 in {took:?}; {} \
         acknowledged in all, refused by code {refused:?}, {unanswered} unanswered when their \
         connection closed; {stored} records stored, every acknowledged one among them",
        acked.len()
    );
    Ok(())
}

/// SYNC_FLUSH: SEND_OK only after fdatasync; SIGTERM in the middle of pipelined sends.
#[test]
fn sigterm_with_sync_sends_in_flight_answers_or_closes_exits_zero_and_loses_nothing() -> Result<()>
{
    sigterm_under_sends(&[], "InFlightSync")
}

/// ASYNC_FLUSH: SEND_OK before the record is written; the shutdown writes and syncs it.
#[test]
fn sigterm_with_async_sends_in_flight_keeps_every_acknowledged_send() -> Result<()> {
    sigterm_under_sends(
        &["flushDiskType=ASYNC_FLUSH", "flushIntervalCommitLog=500"],
        "InFlightAsync",
    )
}
