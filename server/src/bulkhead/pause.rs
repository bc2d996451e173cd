//! Pausing a bulkhead: no call starts until the pause ends, and whoever paused it learns when the
//! calls in flight have ended. The registry pauses a plugin's bulkhead for the exact hand-over of
//! its state from one generation to the next (`plugin/handover.rs`).
//!
//! While paused, a request that would start a call waits in the bulkhead's queue exactly as it
//! does at the limit (its worker goes on with other connections), and is re-driven when the pause
//! ends. The place counting in `mod.rs` takes care that no call slips in: a call counts its place
//! and then reads the pause; a pause is set and then the count is read; both `SeqCst`, so at least
//! one of them sees the other.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Bulkhead;

/// A bulkhead held paused; the pause ends when this drops.
pub(crate) struct Paused<'a>(&'a Arc<Bulkhead>);

impl Bulkhead {
    /// Holds every new call back until the returned guard drops. One pause at a time (the
    /// loader, which alone pauses, loads one file at a time).
    pub(crate) fn pause(self: &Arc<Self>) -> Paused<'_> {
        let was = self.paused.swap(true, Ordering::SeqCst);
        debug_assert!(!was, "a bulkhead paused twice");
        Paused(self)
    }
}

impl Paused<'_> {
    /// Waits until no call is in flight, at most `within`; returns whether that happened. Calls
    /// written off by the watchdog (their clients were answered `504` already, nothing they do
    /// is acknowledged) do not count: a hung handler would otherwise block every reload.
    pub(crate) fn drained(&self, within: Duration) -> bool {
        let bulkhead = self.0;
        let until = Instant::now() + within;
        let mut polls = 0u32;
        loop {
            if bulkhead.in_flight.load(Ordering::SeqCst) <= bulkhead.lost.load(Ordering::SeqCst) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            // Calls of a plugin with state are mostly short: yield first, then sleep a little.
            polls += 1;
            if polls < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let bulkhead = self.0;
        bulkhead.paused.store(false, Ordering::SeqCst);
        // The requests that waited get their places. A request parking right now either is seen
        // here or sees the pause gone (it pushes, then dispatches; we clear, then look).
        if bulkhead.waiting.load(Ordering::SeqCst) > 0 {
            bulkhead.dispatch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_takes_no_place_and_waits_for_the_calls_in_flight() {
        let bulkhead = Arc::new(Bulkhead::new(1, "p"));
        assert!(bulkhead.take_below(4));
        let paused = bulkhead.pause();
        // No new place while paused, and the one taken keeps the pause from draining.
        assert!(!bulkhead.take_below(4));
        assert_eq!(bulkhead.in_flight.load(Ordering::SeqCst), 1);
        assert!(!paused.drained(Duration::from_millis(2)));
        // The call ends: the place is not handed on (nobody waits) and the pause drains.
        bulkhead.exit();
        assert!(paused.drained(Duration::from_secs(5)));
        drop(paused);
        assert!(bulkhead.take_below(4));
    }

    #[test]
    fn a_pause_ignores_calls_written_off() {
        let bulkhead = Arc::new(Bulkhead::new(1, "p"));
        assert!(bulkhead.take_below(4));
        bulkhead.count_lost(true);
        let paused = bulkhead.pause();
        assert!(paused.drained(Duration::ZERO));
    }
}
