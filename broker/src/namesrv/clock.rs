//! The nameserver's clock. A broker's lease (when it was last heard from, and whether that is
//! longer ago than its heartbeat timeout) is read from a [`Clock`] the [`super::Namesrv`] is
//! given: the system clock in production, a [`ManualClock`] that moves only when told in
//! tests, so a lease of minutes can be run through without waiting for it.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Where the nameserver reads the time.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it (one executor only).
#[derive(Debug)]
pub struct ManualClock {
    now: Cell<Instant>,
}

impl ManualClock {
    /// Starts at the current system time.
    pub fn new() -> Self {
        Self {
            now: Cell::new(Instant::now()),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now.get()
    }
}
