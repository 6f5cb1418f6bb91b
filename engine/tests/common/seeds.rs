//! Random seeds of seeded tests: printed, written to a file, and a failing one replayed first.
//!
//! Files live in `$PETREL_SEED_DIR` (default `/var/tmp/petrel-test-seeds/`), named by test:
//! - `<test>.last`: the seeds of the latest run, written before any of them runs, so a hang
//!   (killed by nextest's timeout) still leaves its seed behind;
//! - `<test>.failed`: seeds that failed (a panic caught here); the next run replays them
//!   first, and drops one from the file once it passes.
//!
//! `PETREL_SEED=<seed>` runs that one seed only. The rule: every seed that ever fails becomes
//! a fixed seed in the test's source (its `FIXED_SEEDS`), so it runs on every CI run even
//! after the file is gone. A failure prints a reminder.

use std::path::PathBuf;

/// The seed files of one test.
pub struct SeedLog {
    dir: PathBuf,
    name: &'static str,
}

impl SeedLog {
    /// The seed files of test `name`.
    pub fn new(name: &'static str) -> Self {
        let dir = std::env::var_os("PETREL_SEED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/petrel-test-seeds"));
        Self { dir, name }
    }

    fn path(&self, kind: &str) -> PathBuf {
        self.dir.join(format!("{}.{kind}", self.name))
    }

    fn read(&self, kind: &str) -> Vec<u64> {
        std::fs::read_to_string(self.path(kind))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn write(&self, kind: &str, seeds: &[u64]) {
        let _ = std::fs::create_dir_all(&self.dir);
        let text: String = seeds.iter().map(|s| format!("{s}\n")).collect();
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = self.path(&format!("{kind}.{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, self.path(kind));
        }
    }

    /// Seeds to run: `PETREL_SEED` alone if set, else the recorded failures first, then
    /// `fixed`, then `random_n` fresh random seeds (no seed twice). Printed and recorded.
    pub fn plan(&self, fixed: &[u64], random_n: usize) -> Vec<u64> {
        if let Ok(s) = std::env::var("PETREL_SEED") {
            let seed = s.trim().parse().expect("PETREL_SEED must be a u64");
            return vec![seed];
        }
        let mut seeds: Vec<u64> = Vec::new();
        let random = (0..random_n).map(|_| rand::random::<u64>());
        for s in self.read("failed").into_iter().chain(fixed.iter().copied()) {
            if !seeds.contains(&s) {
                seeds.push(s);
            }
        }
        seeds.extend(random);
        println!(
            "{}: seeds {seeds:?} (recorded in {})",
            self.name,
            self.path("last").display()
        );
        self.write("last", &seeds);
        seeds
    }

    /// Runs `f` for `seed`; a panic is recorded in `<test>.failed` and raised again.
    pub fn run<T>(&self, seed: u64, f: impl FnOnce() -> T) -> T {
        println!("{}: PETREL_SEED={seed}", self.name);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(t) => {
                let mut failed = self.read("failed");
                if failed.contains(&seed) {
                    failed.retain(|s| *s != seed);
                    self.write("failed", &failed);
                }
                t
            }
            Err(panic) => {
                let mut failed = self.read("failed");
                if !failed.contains(&seed) {
                    failed.push(seed);
                    self.write("failed", &failed);
                }
                eprintln!(
                    "{}: seed {seed} FAILED; recorded in {} (replayed first next run). \
                     Add it to the test's FIXED_SEEDS: every seed that ever failed stays a \
                     fixed test seed. Replay alone with PETREL_SEED={seed}.",
                    self.name,
                    self.path("failed").display()
                );
                std::panic::resume_unwind(panic)
            }
        }
    }
}
