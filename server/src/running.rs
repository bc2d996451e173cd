//! What each worker is running now: one [`Record`] per worker thread, written by that worker around
//! every handler call and read by the watchdog (`watchdog.rs`), which times out the calls past their
//! deadline.
//!
//! The record is a small state machine in one atomic, so that a worker and the watchdog never both
//! act on a connection:
//! ```text
//!  Idle --begin--> Running --end--> Idle
//!                     |
//!                  claim (watchdog: past the deadline)
//!                     v
//!                  Claimed --written_off--> Lost --end--> Idle
//! ```
//! While a record is `Claimed`, the worker cannot leave the call ([`Record::end`] waits), so the
//! socket and the request bytes the record points to stay as they are while the watchdog answers
//! the client with a `504`. Once `Lost`, the connection belongs to no one: the worker drops it when
//! the handler returns, and `workers.rs` decides whether its thread serves on or exits.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize};

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const CLAIMED: u8 = 2;
const LOST: u8 = 3;

/// One worker's current handler call. Cache-line aligned: only its worker writes it per request.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Record {
    state: AtomicU8,
    /// When the call began and when it must have answered, in clock milliseconds.
    started: AtomicU64,
    deadline: AtomicU64,
    /// The time the call is given (its handler timeout, in ms), by which a stream's progress moves
    /// the deadline on.
    budget: AtomicU64,
    /// The bulkhead the call runs in: its index in [`Bulkheads`](crate::Bulkheads) plus one; 0 for
    /// none.
    bulkhead: AtomicUsize,
    /// The connection's socket and its token in the event loop.
    fd: AtomicI32,
    token: AtomicUsize,
    /// Nothing earlier on this connection is still waiting to be written, so a `504` can follow.
    clean: AtomicBool,
    /// The request is a `HEAD`: its `504` has no body.
    head: AtomicBool,
    /// The request's method and target, in the worker's read buffer (valid while not `Idle`).
    method: (AtomicPtr<u8>, AtomicUsize),
    target: (AtomicPtr<u8>, AtomicUsize),
    /// The bulkhead a written-off call ran in, for its worker to report its return.
    lost_in: AtomicUsize,
    /// What a written-off call was (plugin and request), for shutdown to name it.
    lost_what: std::sync::Mutex<String>,
}

/// What a worker writes when a call begins.
pub(crate) struct Call<'a> {
    pub started: u64,
    pub deadline: u64,
    /// The handler timeout the deadline was set from, in ms.
    pub budget: u64,
    pub fd: RawFd,
    pub token: usize,
    pub clean: bool,
    pub method: &'a str,
    pub target: &'a str,
}

/// How a call ended, for its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// In time: the worker answers.
    InTime,
    /// Past its deadline: the client was answered without it. `bulkhead`: the one it ran in (id,
    /// 0 for none).
    Lost { bulkhead: usize },
}

/// A call the watchdog claimed, as it reads it.
pub(crate) struct Claimed {
    pub started: u64,
    pub bulkhead: usize,
    pub fd: RawFd,
    pub token: usize,
    pub clean: bool,
    pub head: bool,
    /// `METHOD target`, lossily decoded.
    pub request: String,
}

impl Record {
    /// Worker: a handler call begins. The request bytes must stay alive and unchanged until
    /// [`end`](Self::end) returns.
    #[inline]
    pub fn begin(&self, call: &Call<'_>) {
        self.started.store(call.started, Relaxed);
        self.deadline.store(call.deadline, Relaxed);
        self.budget.store(call.budget, Relaxed);
        self.bulkhead.store(0, Relaxed);
        self.fd.store(call.fd, Relaxed);
        self.token.store(call.token, Relaxed);
        self.clean.store(call.clean, Relaxed);
        self.head.store(call.method == "HEAD", Relaxed);
        let keep = |slot: &(AtomicPtr<u8>, AtomicUsize), s: &str| {
            slot.0.store(s.as_ptr().cast_mut(), Relaxed);
            slot.1.store(s.len(), Relaxed);
        };
        keep(&self.method, call.method);
        keep(&self.target, call.target);
        // Publishes the fields above to a watchdog that sees `RUNNING`.
        self.state.store(RUNNING, Release);
    }

    /// Worker: the call moved into a bulkhead (index + 1) with its own deadline.
    #[inline]
    pub fn enter(&self, bulkhead: usize, deadline: u64, budget: u64) {
        self.bulkhead.store(bulkhead, Relaxed);
        self.budget.store(budget, Relaxed);
        self.deadline.store(deadline, Relaxed);
    }

    /// Worker: the call's response head is on its way (a streamed body follows), so a `504` can no
    /// longer follow it: past its deadline the connection is closed instead.
    ///
    /// Called before the first byte of the response is sent. Sequentially consistent, as is the
    /// watchdog's read after its claim: either the watchdog sees this store, or the worker sees the
    /// claim (and sends nothing) when it next checks the call.
    #[inline]
    pub fn streaming(&self) {
        self.clean.store(false, SeqCst);
    }

    /// Worker: a streamed body made progress at `now`, so the call's deadline moves on by the
    /// time it is given. A handler that keeps its client fed is not hung.
    pub fn progress(&self, now: u64) {
        self.extend_to(now.saturating_add(self.budget.load(Relaxed)));
    }

    /// Worker: the call may run until `deadline` at least (a stream waiting for its client, which
    /// the write timeout bounds, not the handler's deadline).
    pub fn extend_to(&self, deadline: u64) {
        if deadline > self.deadline.load(Relaxed) {
            self.deadline.store(deadline, Relaxed);
        }
    }

    /// Worker: the call left its bulkhead.
    #[inline]
    pub fn leave(&self) {
        self.bulkhead.store(0, Relaxed);
    }

    /// Worker, as its call gives its bulkhead place back: whether the call was written off, once
    /// the watchdog is done with it (so that the bulkhead has counted it lost).
    #[inline]
    pub fn was_written_off(&self) -> bool {
        loop {
            match self.state.load(Acquire) {
                LOST => return true,
                CLAIMED => std::thread::yield_now(),
                _ => return false,
            }
        }
    }

    /// Worker: the handler returned. Waits while the watchdog is answering for it.
    #[inline]
    pub fn end(&self) -> Ended {
        match self.state.compare_exchange(RUNNING, IDLE, AcqRel, Acquire) {
            Ok(_) => Ended::InTime,
            Err(_) => loop {
                match self.state.load(Acquire) {
                    LOST => {
                        let bulkhead = self.lost_in.load(Relaxed);
                        self.state.store(IDLE, Release);
                        break Ended::Lost { bulkhead };
                    }
                    // Claimed: the watchdog is writing the 504, a few system calls.
                    _ => std::thread::yield_now(),
                }
            },
        }
    }

    /// Whether a call is running and not yet written off.
    #[inline]
    pub fn is_running(&self) -> bool {
        self.state.load(Acquire) == RUNNING
    }

    /// What the call written off was, while its thread is still inside it.
    pub fn lost_what(&self) -> Option<String> {
        let what = self
            .lost_what
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (self.state.load(Acquire) == LOST).then_some(what)
    }

    /// Whether its thread is inside a handler, in time or not.
    pub fn is_busy(&self) -> bool {
        self.state.load(Acquire) != IDLE
    }

    /// When the call began, its deadline and its bulkhead; `None` when idle. A call written off
    /// shows too: it still holds its place in its bulkhead.
    pub fn peek(&self) -> Option<(u64, u64, usize)> {
        if self.state.load(Acquire) == IDLE {
            return None;
        }
        let read = (
            self.started.load(Relaxed),
            self.deadline.load(Relaxed),
            self.bulkhead.load(Relaxed),
        );
        // A call that ended meanwhile shows the figures of the next one or none: both harmless
        // for a deadline check, which `claim` makes exact.
        Some(read)
    }

    /// Watchdog: takes over the running call if it is past its deadline at `now` (`None` for
    /// never), so that the worker cannot leave it until [`written_off`](Self::written_off).
    /// `None` if it is in time, or ended meanwhile.
    pub fn claim(&self, now: Option<u64>) -> Option<Claimed> {
        self.state
            .compare_exchange(RUNNING, CLAIMED, AcqRel, Acquire)
            .ok()?;
        // The call peeked at may have ended and another begun since: judge the one claimed.
        if now.is_some_and(|now| now <= self.deadline.load(Relaxed)) {
            self.state.store(RUNNING, Release);
            return None;
        }
        let text = |slot: &(AtomicPtr<u8>, AtomicUsize)| {
            let (ptr, len) = (slot.0.load(Relaxed), slot.1.load(Relaxed));
            // SAFETY: `begin` stored a pointer and length of a `str` that its caller keeps alive
            // and unchanged until `end` returns, and `end` cannot return while the state is
            // `CLAIMED`, which we set above; the Acquire above pairs with `begin`'s Release.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
            String::from_utf8_lossy(&bytes[..len.min(200)]).into_owned()
        };
        Some(Claimed {
            started: self.started.load(Relaxed),
            bulkhead: self.bulkhead.load(Relaxed),
            fd: self.fd.load(Relaxed),
            token: self.token.load(Relaxed),
            clean: self.clean.load(SeqCst),
            head: self.head.load(Relaxed),
            request: format!("{} {}", text(&self.method), text(&self.target)),
        })
    }

    /// Watchdog: done with a claimed call, which ran in `bulkhead` (id) and was `what`; the worker,
    /// when its handler returns, drops the connection.
    pub fn written_off(&self, bulkhead: usize, what: String) {
        *self.lost_what.lock().unwrap_or_else(|e| e.into_inner()) = what;
        self.lost_in.store(bulkhead, Relaxed);
        self.state.store(LOST, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, target: &str) -> Call<'static> {
        let leak = |s: &str| &*Box::leak(s.to_owned().into_boxed_str());
        Call {
            started: 5,
            deadline: 10,
            budget: 5,
            fd: 7,
            token: 3,
            clean: true,
            method: leak(method),
            target: leak(target),
        }
    }

    #[test]
    fn a_call_in_time_ends_in_time() {
        let r = Record::default();
        assert_eq!(r.peek(), None);
        r.begin(&call("GET", "/a"));
        assert_eq!(r.peek(), Some((5, 10, 0)));
        r.enter(2, 20, 15);
        assert_eq!(r.peek(), Some((5, 20, 2)));
        assert!(r.claim(Some(20)).is_none(), "in time");
        assert!(r.is_running(), "a claim in time gives the call back");
        assert_eq!(r.end(), Ended::InTime);
        assert!(r.claim(None).is_none(), "an ended call cannot be claimed");
    }

    #[test]
    fn a_claimed_call_ends_lost_once_written_off() {
        let r = std::sync::Arc::new(Record::default());
        r.begin(&call("HEAD", "/slow?x=1"));
        let claimed = r.claim(Some(11)).expect("past its deadline");
        assert_eq!(claimed.request, "HEAD /slow?x=1");
        assert!(claimed.head && claimed.clean);
        assert_eq!((claimed.fd, claimed.token), (7, 3));
        assert!(r.claim(None).is_none(), "claimed once");
        let worker = {
            let r = std::sync::Arc::clone(&r);
            std::thread::spawn(move || r.end())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!worker.is_finished(), "end waits while the call is claimed");
        r.written_off(4, "GET /x".into());
        assert_eq!(worker.join().unwrap(), Ended::Lost { bulkhead: 4 });
        assert_eq!(r.peek(), None);
    }

    #[test]
    fn a_call_written_off_still_shows_until_its_handler_returns() {
        let r = Record::default();
        r.begin(&call("GET", "/x"));
        r.enter(2, 10, 5);
        r.claim(Some(11)).expect("past its deadline");
        r.written_off(2, "plugin slow: GET /x".into());
        assert_eq!(r.lost_what().as_deref(), Some("plugin slow: GET /x"));
        assert_eq!(r.peek(), Some((5, 10, 2)), "it still holds its place");
        assert!(r.is_busy() && !r.is_running());
        assert_eq!(r.end(), Ended::Lost { bulkhead: 2 });
        assert_eq!(r.lost_what(), None);
    }
}
