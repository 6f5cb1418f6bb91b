//! Random choices of a test (kill times) made replayable: the seed is taken from
//! `PETREL_TEST_SEED` when set (to replay a failure), else from the clock; it is printed and
//! appended, with what it chose, to `/var/tmp/petrel-test-seeds/<test>.log` before the test
//! acts on it, so a failing run leaves its seed behind even if the test then hangs or dies.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// Where seeds and kill times are recorded.
pub const SEED_DIR: &str = "/var/tmp/petrel-test-seeds";

/// A small replayable generator (xorshift64*).
pub struct Seeded {
    pub seed: u64,
    state: u64,
    test: String,
}

impl Seeded {
    /// The seed for `test`: `PETREL_TEST_SEED` if set, else drawn from the clock and pid.
    pub fn new(test: &str) -> Result<Seeded> {
        let seed = match std::env::var("PETREL_TEST_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .with_context(|| format!("PETREL_TEST_SEED={s:?} is not a u64"))?,
            Err(_) => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos ^ u64::from(std::process::id()).rotate_left(32)
            }
        };
        let s = Seeded {
            seed,
            state: seed | 1,
            test: test.to_string(),
        };
        s.record("drawn")?;
        Ok(s)
    }

    /// A number in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }

    /// Prints `what` and appends it, with the test name, seed and time, to the test's file.
    pub fn record(&self, what: &str) -> Result<()> {
        let line = format!(
            "{} {} seed={} {what} (replay: PETREL_TEST_SEED={})",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            self.test,
            self.seed,
            self.seed
        );
        eprintln!("{line}");
        std::fs::create_dir_all(SEED_DIR).with_context(|| format!("creating {SEED_DIR}"))?;
        let path = format!("{SEED_DIR}/{}.log", self.test);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {path}"))?;
        writeln!(f, "{line}").with_context(|| format!("writing {path}"))
    }
}
