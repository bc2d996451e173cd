//! [`Shared`]: what the event loop, the workers and the watchdog share, in a file of its own so
//! that none of them imports another through it (`server.rs` builds it, `event_loop.rs`,
//! `worker/` and `watchdog.rs` read it).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::Limits;
use crate::bulkhead::Bulkheads;
use crate::clock::Clock;
use crate::control::{ControlMsg, ControlSender};
use crate::handler::Handler;
use crate::pool::Queue;
use crate::workers::Workers;

/// What the event loop and the workers share.
pub(crate) struct Shared {
    pub handler: Arc<dyn Handler>,
    /// Swapped whole when the configuration is reloaded; read once per connection turn.
    pub limits: ArcSwap<Limits>,
    pub clock: Clock,
    pub queue: Queue,
    /// Workers report closed connections here; handles send shutdown and reload.
    pub control: ControlSender,
    /// Connections closed by workers, for the loop to forget (see [`Shared::report_closed`]).
    pub closed: Mutex<Closed>,
    /// The loop's registry, for a worker to add write interest when a socket's buffer is full.
    pub registry: mio::Registry,
    /// Set when shutdown begins: responses say `Connection: close` and idle connections close.
    pub draining: AtomicBool,
    /// Counters the loop keeps for [`ServerHandle::stats`](crate::ServerHandle::stats).
    pub stats: LoopStats,
    /// The bulkheads requests run in, read by the watchdog.
    pub bulkheads: Arc<Bulkheads>,
    /// The worker threads and what each runs now.
    pub workers: Workers,
    /// The pool's size, which replacements keep.
    pub workers_wanted: usize,
    /// Bytes connections hold in buffers between turns ([`Limits::max_buffered_bytes`]).
    pub buffered: Arc<std::sync::atomic::AtomicUsize>,
}

/// Tokens of connections that workers closed and the loop has not forgotten yet.
#[derive(Default)]
pub(crate) struct Closed {
    pub tokens: Vec<usize>,
    /// A `Closed` datagram for these tokens is on its way; later closes need none. A send that
    /// failed unsets it, so the next close tries again, and the loop's tick takes the list
    /// anyway: one lost datagram cannot stop the count of open connections going down.
    pub signalled: bool,
}

impl Shared {
    /// Tells the loop a connection is closed: one datagram per burst of closes.
    pub fn report_closed(&self, token: usize) {
        if !self.lock_closed().push(token) {
            return;
        }
        if let Err(e) = self.control.send(ControlMsg::Closed(token)) {
            self.lock_closed().unsent();
            if self.draining.load(Ordering::Acquire) {
                // After shutdown the loop is gone, and nothing needs the count any more.
                tracing::debug!(error = %e, "control channel closed");
            } else {
                tracing::warn!(error = %e, "cannot signal a closed connection; the loop's tick will see it");
            }
        }
    }

    fn lock_closed(&self) -> std::sync::MutexGuard<'_, Closed> {
        self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loop: the connections closed since the last call.
    pub fn take_closed(&self) -> Vec<usize> {
        self.lock_closed().take()
    }

    /// Stuck workers that are replaced ([`Limits::max_lost_workers`]).
    pub fn max_lost_workers(&self) -> usize {
        self.limits
            .load()
            .max_lost_workers
            .unwrap_or(self.workers_wanted)
    }
}

impl Closed {
    /// Adds `token`; `true` when the caller must send the `Closed` datagram (no other is on its
    /// way).
    fn push(&mut self, token: usize) -> bool {
        self.tokens.push(token);
        !std::mem::replace(&mut self.signalled, true)
    }

    /// The datagram the last `push` asked for could not be sent: the next close sends one.
    fn unsent(&mut self) {
        self.signalled = false;
    }

    /// Loop: every token so far; the next close signals again.
    fn take(&mut self) -> Vec<usize> {
        self.signalled = false;
        std::mem::take(&mut self.tokens)
    }
}

/// What the event loop counts; written by the loop only.
#[derive(Default)]
pub(crate) struct LoopStats {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused_busy: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_signal_is_retried_by_the_next_close() {
        let mut closed = Closed::default();
        assert!(closed.push(1), "the first close signals");
        assert!(!closed.push(2), "one datagram per burst");
        // That datagram never reached the loop (ENOBUFS, say).
        closed.unsent();
        assert!(closed.push(3), "the next close signals again");
        assert_eq!(closed.take(), [1, 2, 3]);
        assert!(closed.push(4));
    }
}
