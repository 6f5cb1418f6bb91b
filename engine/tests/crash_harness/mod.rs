//! The seeded crash harness (see `crash_recovery.rs` for what it checks): one seed runs
//! rounds of open, check, produce, then crash or clean shutdown.

pub mod checks;
pub mod workload;

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use engine::clock::ManualClock;
use engine::disk::sim::{SimDisk, SimRng};
use engine::disk::Disk;
use engine::{Background, FlushMode, Store, StoreConfig};

use checks::{check_invariants, state};
use workload::{producer, Ledger};

/// What one seed did; the test requires progress of every kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub acked: u64,
    pub written: u64,
    pub crashes: u64,
    pub kills: u64,
    pub sectors_torn: u64,
    pub sectors_dropped: u64,
    pub entries_dropped: u64,
    pub files_lost: u64,
    pub truncations: u64,
    /// Recoveries that served an unacknowledged record with a torn properties tail (the
    /// known gap, counted once per recovery that found it).
    pub torn_records_served: u64,
}

impl Stats {
    /// Adds another seed's counts.
    pub fn add(&mut self, o: &Stats) {
        self.acked += o.acked;
        self.written += o.written;
        self.crashes += o.crashes;
        self.kills += o.kills;
        self.sectors_torn += o.sectors_torn;
        self.sectors_dropped += o.sectors_dropped;
        self.entries_dropped += o.entries_dropped;
        self.files_lost += o.files_lost;
        self.truncations += o.truncations;
        self.torn_records_served += o.torn_records_served;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acked of {} written, {} crashes, {} kills, {} torn / {} dropped sectors, \
             {} dropped directory entries ({} files lost), {} truncating recoveries, \
             {} torn unacknowledged records served (known gap)",
            self.acked,
            self.written,
            self.crashes,
            self.kills,
            self.sectors_torn,
            self.sectors_dropped,
            self.entries_dropped,
            self.files_lost,
            self.truncations,
            self.torn_records_served
        )
    }
}

pub fn config() -> StoreConfig {
    StoreConfig {
        root_dir: PathBuf::from("/sim/store"),
        segment_size_bytes: 128 << 10,
        body_size_max: 4096,
        append_buffer_bytes_max: 256 << 10,
        tail_cache_bytes_max: 16 << 10,
        ..Default::default()
    }
}

/// Runs one seed over the simulated disk as the store sees it through `wrap` (the plain
/// `SimDisk`, or a wrapper that breaks something on purpose).
/// `strict` fails on the known gap (see `checks::is_torn_properties_tail`) instead of counting
/// it.
pub async fn run_seed(seed: u64, wrap: fn(SimDisk) -> Rc<dyn Disk>, strict: bool) -> Stats {
    let mut rng = SimRng::new(seed);
    let clock = Rc::new(ManualClock::new(1_700_000_000_000));
    let disk = SimDisk::new(1 << 40, clock.clone());
    let store_disk = wrap(disk.clone());
    let mut cfg = config();
    let ledger = Rc::new(Ledger::default());
    let mut stats = Stats::default();
    let rounds = 6;
    for round in 0..=rounds {
        // Half the rounds run ASYNC_FLUSH: many written-but-unsynced sectors at the crash.
        cfg.flush_mode = if rng.below(2) == 0 {
            FlushMode::Sync
        } else {
            FlushMode::Async
        };
        cfg.flush_interval_ms = 1 + rng.below(20);
        let open = || {
            Store::open_with(
                cfg.clone(),
                store_disk.clone(),
                clock.clone(),
                Background::Manual,
            )
        };
        let (mut store, report) = open().await.expect("open");
        if report.truncated_at.is_some() {
            stats.truncations += 1;
        }
        let acked = ledger.acked.borrow().clone();
        let written = ledger.written.borrow().clone();
        let (s1, torn_served) =
            check_invariants(&store, &disk, &cfg, &written, &acked, strict).await;
        stats.torn_records_served += torn_served;
        if round % 2 == 1 {
            // 4: recovering twice gives the same state.
            drop(store);
            disk.crash(&mut rng);
            let (again, _) = open().await.expect("reopen");
            let s2 = state(&again, &disk, &cfg).await;
            assert_eq!(
                s1, s2,
                "second recovery differs (seed {seed}, round {round})"
            );
            store = again;
        }
        if round == rounds {
            break;
        }
        let stop = Rc::new(Cell::new(false));
        let puts = Rc::new(Cell::new(0u64));
        let alive = Rc::new(Cell::new(0u32));
        for p in 0..4 {
            let r = SimRng::new(seed ^ (round as u64 * 1000 + p + 1).wrapping_mul(0x9E37_79B9));
            glommio::spawn_local(producer(
                store.clone(),
                r,
                ledger.clone(),
                stop.clone(),
                puts.clone(),
                alive.clone(),
            ))
            .detach();
        }
        let target = 20 + rng.below(400);
        let fail_at = (rng.below(4) == 0).then(|| rng.below(target));
        // Some rounds hold directory syncs: the round ends when one is caught at the gate
        // (a new segment or consume-queue file whose entry is not durable yet), and the crash
        // finds that entry volatile.
        let is_dir_gate_round = rng.below(4) == 0;
        if is_dir_gate_round {
            disk.hold_dir_syncs();
        }
        let started = std::time::Instant::now();
        let mut turns = 0u64;
        while puts.get() < target && !store.is_poisoned() {
            futures_lite::future::yield_now().await;
            turns += 1;
            if turns > 1000 && alive.get() == 0 {
                break; // every producer stopped (e.g. a ticket failed): crash now
            }
            if disk.dir_syncs_held() > 0 {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "seed {seed} round {round}: workload stalled ({} puts of {target})",
                puts.get()
            );
            clock.advance_ms(1);
            if fail_at == Some(puts.get()) {
                if rng.below(2) == 0 {
                    disk.fail_next_syncs(1);
                } else {
                    disk.fail_next_writes(1);
                }
            }
            if rng.below(100) == 0 {
                if is_dir_gate_round {
                    // It may stop at the gate (a new consume-queue directory or file).
                    let s = store.clone();
                    glommio::spawn_local(async move {
                        let _ = s.checkpoint_now().await;
                    })
                    .detach();
                } else {
                    let _ = store.checkpoint_now().await;
                }
            }
        }
        if is_dir_gate_round && rng.below(2) == 0 {
            // SIGKILL, not power loss: nothing is lost now, but what the killed process left
            // unsynced (an entry held at the gate) stays volatile until the next store syncs
            // it; a later crash drops it if not.
            disk.kill_process();
            stats.kills += 1;
            stop.set(true);
        } else if !is_dir_gate_round && rng.below(4) == 0 && !store.is_poisoned() {
            stop.set(true);
            for _ in 0..50 {
                futures_lite::future::yield_now().await;
            }
            store.shutdown().await.expect("clean shutdown");
        } else {
            // Crash at a random moment: often between a write and its fdatasync.
            for _ in 0..rng.below(12) {
                futures_lite::future::yield_now().await;
            }
            let c = disk.crash(&mut rng);
            stats.sectors_torn += c.sectors_torn;
            stats.sectors_dropped += c.sectors_dropped;
            stats.entries_dropped += c.entries_dropped;
            stats.files_lost += c.files_lost;
            stats.crashes += 1;
            stop.set(true);
        }
        disk.release_dir_syncs();
        disk.fail_next_syncs(0);
        disk.fail_next_writes(0);
        drop(store);
        for _ in 0..50 {
            futures_lite::future::yield_now().await;
        }
    }
    stats.acked = ledger.acked.borrow().len() as u64;
    stats.written = ledger.written.borrow().len() as u64;
    stats
}
