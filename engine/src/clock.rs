//! Time goes through `Clock`, so retention and timestamps are testable with `ManualClock`.

use std::cell::Cell;

/// Wall-clock milliseconds since the Unix epoch.
pub trait Clock {
    /// Now, ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: Cell<i64>,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            now_ms: Cell::new(now_ms),
        }
    }
    /// Moves the clock to `now_ms`.
    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.set(now_ms);
    }
    /// Moves the clock forward.
    pub fn advance_ms(&self, by_ms: i64) {
        self.now_ms.set(self.now_ms.get() + by_ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }
}
