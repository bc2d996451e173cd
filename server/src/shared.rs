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
        {
            let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            closed.tokens.push(token);
            if std::mem::replace(&mut closed.signalled, true) {
                return;
            }
        }
        if let Err(e) = self.control.send(ControlMsg::Closed(token)) {
            self.closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .signalled = false;
            if self.draining.load(Ordering::Acquire) {
                // After shutdown the loop is gone, and nothing needs the count any more.
                tracing::debug!(error = %e, "control channel closed");
            } else {
                tracing::warn!(error = %e, "cannot signal a closed connection; the loop's tick will see it");
            }
        }
    }

    /// Loop: the connections closed since the last call.
    pub fn take_closed(&self) -> Vec<usize> {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        closed.signalled = false;
        std::mem::take(&mut closed.tokens)
    }

    /// Stuck workers that are replaced ([`Limits::max_lost_workers`]).
    pub fn max_lost_workers(&self) -> usize {
        self.limits
            .load()
            .max_lost_workers
            .unwrap_or(self.workers_wanted)
    }
}

/// What the event loop counts; written by the loop only.
#[derive(Default)]
pub(crate) struct LoopStats {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused_busy: AtomicU64,
}
