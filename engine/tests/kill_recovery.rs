//! Real-process crash test: a child process (this test binary, re-invoked) writes under
//! SYNC_FLUSH with several concurrent producers and prints every acknowledgement; the parent
//! kills it with SIGKILL at a random moment after its first acknowledgement, several times,
//! reopening the store each time (bounded: a recovery hang fails), and checks that every
//! acknowledged record is intact.
//!
//! The kill delays come from a seed, printed and recorded like the crash harness's
//! (`common::seeds`; replay with `PETREL_SEED=<seed>`). The delays replay exactly; where in
//! the child's work they land still depends on timing.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::seeds::SeedLog;
use engine::disk::sim::SimRng;
use engine::{CommitLogOffset, Store};

const CHILD_ENV: &str = "PETREL_KILL_CHILD_DIR";

fn body_for(seq: u64) -> Vec<u8> {
    let unit = format!("rec-{seq}-");
    let len = 50 + (seq as usize * 7919) % 3000;
    unit.bytes().cycle().take(len).collect()
}

/// The child: only runs when re-invoked by `acked_records_survive_sigkill`.
#[test]
#[ignore = "child process of acked_records_survive_sigkill"]
fn kill_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var("PETREL_KILL_CHILD_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    common::run(move || async move {
        let (store, _) = Store::open(common::config(dir.into()))
            .await
            .expect("child open");
        let next = std::rc::Rc::new(std::cell::Cell::new(start));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            let next = next.clone();
            tasks.push(glommio::spawn_local(async move {
                loop {
                    let seq = next.get();
                    next.set(seq + 1);
                    let body = body_for(seq);
                    let props = format!("KEYS\u{1}s{seq}\u{2}");
                    let Ok(r) = store.put(&common::msg("K", (seq % 4) as u32, &body, &props))
                    else {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    if r.ticket.await.is_ok() {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK {} {seq}", r.commit_log_offset.0);
                        let _ = out.flush();
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

/// Kills the child on drop, so a failing assertion never leaves it running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seeds of the kill delays that ever failed (see `common::seeds`): each stays here for good.
const FIXED_SEEDS: &[u64] = &[];
/// Bound on the child's first acknowledgement (start-up, recovery of the previous round's
/// store, the first put): a production path, so passing it fails the test.
const FIRST_ACK_WAIT_MAX: Duration = Duration::from_secs(120);
/// Bound on `Store::open` in the parent after a kill: recovery is a production path, so a
/// hang there fails the test with this message instead of being retried.
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(120);

#[test]
fn acked_records_survive_sigkill() {
    let log = SeedLog::new("kill_recovery");
    for seed in log.plan(FIXED_SEEDS, 1) {
        log.run(seed, || kill_rounds(seed));
    }
}

/// Five rounds of: start the child, wait for its first acknowledgement, let it run for a
/// delay drawn from `seed`, SIGKILL it, recover in this process and check every ack so far.
fn kill_rounds(seed: u64) {
    let mut rng = SimRng::new(seed);
    let dir = common::tempdir();
    let root = dir.path().to_path_buf();
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut next_seq = 0u64;
    for round in 0..5 {
        let mut child = ChildGuard(
            Command::new(&exe)
                .args([
                    "--exact",
                    "kill_child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &root)
                .env("PETREL_KILL_CHILD_START", next_seq.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child"),
        );
        let stdout = child.0.stdout.take().expect("child stdout");
        let (first_ack_tx, first_ack_rx) = mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.split_whitespace();
                if it.next() == Some("ACK") {
                    let off = it.next().and_then(|s| s.parse::<u64>().ok());
                    let seq = it.next().and_then(|s| s.parse::<u64>().ok());
                    if let (Some(off), Some(seq)) = (off, seq) {
                        if acks.is_empty() {
                            let _ = first_ack_tx.send(());
                        }
                        acks.push((off, seq));
                    }
                }
            }
            acks
        });
        // The kill window starts at the first acknowledgement, not at process start.
        match first_ack_rx.recv_timeout(FIRST_ACK_WAIT_MAX) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "round {round}: the child acknowledged nothing within {FIRST_ACK_WAIT_MAX:?} \
                 (start-up, recovery or first put hung)"
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "round {round}: the child closed its output before any acknowledgement \
                 (exit status {:?})",
                child.0.wait()
            ),
        }
        let wait_ms = 50 + rng.below(500);
        std::thread::sleep(Duration::from_millis(wait_ms));
        drop(child); // SIGKILL, then reap
        let acks = reader.join().expect("reader thread");
        println!(
            "round {round}: killed {wait_ms} ms after the first ack, {} acks",
            acks.len()
        );
        next_seq = acks
            .iter()
            .map(|a| a.1 + 1)
            .max()
            .unwrap_or(next_seq)
            .max(next_seq)
            + 10_000;
        acked.extend(acks);
        // Reopen in this process and check every ack so far.
        let root2 = root.clone();
        let check = acked.clone();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let recovery = std::thread::spawn(move || {
            common::run(move || async move {
                let (store, report) = Store::open(common::config(root2)).await.expect("reopen");
                let _ = done_tx.send(());
                println!(
                    "  report {report:?} min {:?} max {:?}",
                    store.min_commit_log_offset(),
                    store.max_commit_log_offset()
                );
                for (off, seq) in &check {
                    let b = store
                        .read_message(CommitLogOffset(*off))
                        .await
                        .expect("acked record readable");
                    let v = engine::record::decode(&b).expect("acked record valid");
                    assert_eq!(
                        v.body(),
                        &body_for(*seq)[..],
                        "acked record {seq} at {off} intact"
                    );
                }
                println!(
                    "  recovered to {}, truncated: {:?}",
                    report.end_offset, report.truncated_at
                );
                store.shutdown().await.expect("shutdown");
            })
        });
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(RECOVERY_WAIT_MAX) {
            panic!(
                "round {round}: Store::open after SIGKILL did not finish within \
                 {RECOVERY_WAIT_MAX:?}: recovery hangs (a production path; not retried)"
            );
        }
        if let Err(panic) = recovery.join() {
            std::panic::resume_unwind(panic);
        }
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged too few records: {}",
        acked.len()
    );
}
