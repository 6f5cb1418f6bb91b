//! Seeded crash-recovery harness over the simulated disk.
//!
//! Each seed runs rounds of: open (recover), check the invariants, run concurrent producers
//! (single puts and batches, SYNC or ASYNC flush), sometimes inject a failed fdatasync or
//! write, sometimes hold directory syncs, then crash at a random moment (every unsynced 4 KiB
//! sector is kept, dropped or torn; every directory entry not yet synced is kept or dropped),
//! kill the process (nothing lost, unsynced stays unsynced) or shut down cleanly. Every message handed to `put` is kept (topic, queue, body, tags,
//! keys, properties, header fields). Invariants checked after every recovery:
//! 1. every acknowledged record reads back byte-identical, its consume-queue entry points
//!    at it with its tags code, and a query by its key finds it;
//! 2. walking the commitlog from min to end finds only valid records, each at its own offset,
//!    separated only by end-of-segment blanks, and each is exactly one message that was
//!    written (acknowledged or not: header fields, properties and body), none twice;
//! 3. every consume-queue entry points at a valid record of that topic, queue and offset;
//! 4. recovering twice (crash right after recovery) gives the same state;
//! 5. offsets never go back: the end is past every acked record.
//!
//! Progress is required: every seed has acknowledged puts, and across the seeds of a run
//! there were crashes, torn and dropped sectors, and dropped directory entries.
//!
//! Seeds: the fixed ones, a few random ones (more with `--features sim`), and first of all any
//! seed a previous run recorded as failing (`common::seeds`). Every seed that ever fails is
//! added to `FIXED_SEEDS`. Replay one with
//! `PETREL_SEED=<seed> cargo nextest run -p engine --test crash_recovery`.
mod common;
mod crash_harness;

use std::rc::Rc;

use common::seeds::SeedLog;
use crash_harness::{run_seed, Stats};
use engine::disk::sim::SimDisk;
use engine::disk::{Disk, DiskFile, DiskSpace, LocalBoxFuture};
use engine::IoError;

/// Fixed seeds; every seed that ever failed joins this list, with what it found:
/// - 5209437006908026291, 6254002986910234490: a killed process's unsynced commitlog tail,
///   kept by recovery and covered by a new checkpoint without an fdatasync, torn by a later
///   crash below the checkpoint (fixed: recovery syncs the segments it scanned).
const FIXED_SEEDS: &[u64] = &[
    1,
    2,
    3,
    42,
    1337,
    0xDEAD_BEEF,
    20261122,
    5209437006908026291,
    6254002986910234490,
];

fn plain(disk: SimDisk) -> Rc<dyn Disk> {
    Rc::new(disk)
}

#[test]
fn crash_recovery_fixed_and_random_seeds() {
    let log = SeedLog::new("crash_recovery");
    let random_n = if cfg!(feature = "sim") { 20 } else { 3 };
    let seeds = log.plan(FIXED_SEEDS, random_n);
    let mut total = Stats::default();
    for seed in &seeds {
        let seed = *seed;
        let stats = log.run(seed, || {
            let stats = common::run(move || run_seed(seed, plain, false));
            assert!(
                stats.acked > 0,
                "seed {seed}: no acknowledged put ({stats})"
            );
            stats
        });
        println!("  seed {seed}: {stats}");
        total.add(&stats);
    }
    println!("all seeds: {total}");
    if seeds.len() > 1 {
        assert!(total.crashes > 0, "no crash happened: {total}");
        assert!(total.sectors_torn > 0, "no sector was torn: {total}");
        assert!(total.sectors_dropped > 0, "no sector was dropped: {total}");
        assert!(
            total.entries_dropped > 0,
            "no directory entry was dropped: {total}"
        );
    }
}

/// A seed that shows the known gap (5 torn unacknowledged records served).
const TORN_RECORD_SEED: u64 = 1676246442435989806;

/// KNOWN ENGINE GAP, ignored until fixed: a record's CRC covers only its body, so a crash that
/// loses the sector holding the end of an unacknowledged record's properties leaves a record
/// that recovery accepts and serves with that end zeroed (`TORN_RECORD_SEED` shows it). Nothing
/// acknowledged is affected. A fix needs a check over the whole record (RocketMQ 5 appends a
/// `__CRC32#` property for this). Run with `--run-ignored only`.
#[test]
#[ignore = "known gap: recovery serves an unacknowledged record with a torn properties tail"]
fn recovery_never_serves_a_torn_record() {
    let log = SeedLog::new("crash_recovery_strict");
    let mut fixed = FIXED_SEEDS.to_vec();
    fixed.push(TORN_RECORD_SEED);
    for seed in log.plan(&fixed, 20) {
        log.run(seed, || common::run(move || run_seed(seed, plain, true)));
    }
}

/// The store's disk with `sync_dir` doing nothing: a store that never makes its new files'
/// directory entries durable.
struct NoDirSync(SimDisk);

impl Disk for NoDirSync {
    fn open<'a>(
        &'a self,
        path: &'a std::path::Path,
    ) -> LocalBoxFuture<'a, Result<Rc<dyn DiskFile>, IoError>> {
        self.0.open(path)
    }
    fn remove(&self, path: &std::path::Path) -> Result<(), IoError> {
        self.0.remove(path)
    }
    fn create_dir_all(&self, path: &std::path::Path) -> Result<(), IoError> {
        self.0.create_dir_all(path)
    }
    fn list_dir(&self, path: &std::path::Path) -> Result<Vec<String>, IoError> {
        self.0.list_dir(path)
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> Result<(), IoError> {
        self.0.remove_dir_all(path)
    }
    fn space(&self, path: &std::path::Path) -> Result<DiskSpace, IoError> {
        self.0.space(path)
    }
    fn modified_ms(&self, path: &std::path::Path) -> Result<i64, IoError> {
        self.0.modified_ms(path)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        self.0.exists(path)
    }
    fn sync_dir<'a>(
        &'a self,
        _dir: &'a std::path::Path,
    ) -> LocalBoxFuture<'a, Result<(), IoError>> {
        Box::pin(async { Ok(()) })
    }
}

fn without_dir_sync(disk: SimDisk) -> Rc<dyn Disk> {
    Rc::new(NoDirSync(disk))
}

/// The harness catches a store that skips `sync_dir`: over the fixed seeds, at least one
/// loses acknowledged records (the directory entry of their file, or of a directory above it,
/// dropped at a crash). Other seeds may fail other invariants first; that is caught too.
#[test]
fn harness_catches_a_missing_sync_dir() {
    let mut caught = Vec::new();
    for seed in FIXED_SEEDS {
        let seed = *seed;
        match common::run_catching(move || run_seed(seed, without_dir_sync, false)) {
            Ok(stats) => println!("seed {seed}: not caught ({stats})"),
            Err(message) => {
                println!("seed {seed}: caught: {message}");
                caught.push((seed, message));
            }
        }
    }
    let lost: Vec<u64> = caught
        .iter()
        .filter(|(_, m)| m.contains("LOST ACKED RECORD"))
        .map(|(seed, _)| *seed)
        .collect();
    println!("seeds that lost acknowledged records: {lost:?}");
    assert!(
        !lost.is_empty(),
        "no seed caught the missing directory sync as lost acknowledged records: {caught:?}"
    );
}
