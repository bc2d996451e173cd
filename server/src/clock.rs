//! Monotonic milliseconds since the server started: the unit of every deadline the loop and the
//! workers exchange through [`Slot`](crate::conn::Slot)'s atomic deadline.

use std::time::{Duration, Instant};

/// A monotonic clock whose readings fit in a `u64` and are never 0 (0 means "no deadline").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the epoch, plus one so that no reading is 0.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// `now` plus `d`, as a deadline.
    pub fn after(&self, now: u64, d: Duration) -> u64 {
        now.saturating_add(d.as_millis() as u64)
    }
}
