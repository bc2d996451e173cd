//! One client connection: the [`Slot`] the event loop and the workers share, and the [`Conn`] inside
//! it that only the current owner touches.
//!
//! Ownership moves by an atomic state, never by a message: the loop moves a slot from `IDLE` to
//! `QUEUED` when readiness arrives, a worker takes it to `BUSY`, and when the worker is done it puts
//! it back to `IDLE` with one compare-and-swap, so a keep-alive request costs no message to the
//! loop. mio is edge-triggered, so readiness that arrives while a worker owns the connection is
//! recorded as `PENDING`, and the worker drives the connection again before letting go.
//!
//! The [`Conn`] sits in a `Mutex` only so that safe code can hand `&mut Conn` between threads: the
//! state protocol guarantees that whoever locks it is its sole owner, so the lock is never
//! contended and never waits ([`Slot::conn`] asserts this).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mio::net::TcpStream;

use crate::bulkhead::Admission;
use crate::http::body::Chunked;

/// No one works on the connection; the loop may queue it or time it out.
const IDLE: u8 = 0;
/// In the work queue; the worker that pops it will read everything available.
const QUEUED: u8 = 1;
/// A worker owns it.
const BUSY: u8 = 2;
/// A worker owns it, and readiness arrived since it started: it must drive it again.
const PENDING: u8 = 3;
/// Closed; the loop will forget it on the `Closed` message.
const CLOSED: u8 = 4;

/// A connection as the loop's table holds it, shared with at most one worker at a time.
pub(crate) struct Slot {
    /// Its key in the loop's table, also its mio token.
    pub token: usize,
    /// Who may touch `conn`: one of the constants above.
    state: AtomicU8,
    /// The peer closed its side or the socket failed: a short read does not mean "drained".
    hup: AtomicBool,
    /// When the loop should close it if it is still idle, in [`Clock`](crate::clock::Clock)
    /// milliseconds; 0 for never. Written by the owner before it releases the slot.
    deadline: AtomicU64,
    /// When the loop last queued it: requests it holds were received then, and their deadline
    /// counts from there (time spent waiting for a worker counts).
    queued_at: AtomicU64,
    conn: Mutex<Conn>,
}

impl Slot {
    pub fn new(token: usize, conn: Conn, deadline: u64) -> Slot {
        Slot {
            token,
            state: AtomicU8::new(IDLE),
            hup: AtomicBool::new(false),
            deadline: AtomicU64::new(deadline),
            queued_at: AtomicU64::new(0),
            conn: Mutex::new(conn),
        }
    }

    /// Loop: readiness arrived at `now`. Returns whether the caller must queue the slot.
    pub fn notify(&self, now: u64) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let next = match current {
                IDLE => QUEUED,
                BUSY => PENDING,
                _ => return false,
            };
            match self
                .state
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next == QUEUED => {
                    self.queued_at.store(now, Ordering::Relaxed);
                    return true;
                }
                Ok(_) => return false,
                Err(actual) => current = actual,
            }
        }
    }

    /// Worker: takes the slot it popped from the queue; returns when it was queued (0 if it was
    /// not queued by the loop).
    pub fn begin(&self) -> u64 {
        self.state.swap(BUSY, Ordering::AcqRel);
        self.queued_at.swap(0, Ordering::Relaxed)
    }

    /// Loop: the peer hung up (or the socket failed).
    pub fn hang_up(&self) {
        self.hup.store(true, Ordering::Release);
    }

    /// Worker: whether the peer hung up.
    pub fn hung_up(&self) -> bool {
        self.hup.load(Ordering::Acquire)
    }

    /// Worker: hands the slot back to the loop, to be closed at `deadline` if still idle.
    ///
    /// Returns `false`, keeping ownership, when readiness arrived while the worker had it: the
    /// caller drives the connection again. The caller must have unlocked [`Slot::conn`].
    pub fn release(&self, deadline: u64) -> bool {
        self.deadline.store(deadline, Ordering::Relaxed);
        match self
            .state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                // PENDING: only the owner leaves it, so a plain store cannot race.
                self.state.store(BUSY, Ordering::Release);
                false
            }
        }
    }

    /// Worker: the connection is closed for good.
    pub fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }

    /// Loop: takes an idle slot whose deadline is before `now` (or any idle slot when `now` is
    /// `u64::MAX`). Only the loop moves a slot out of `IDLE`, so a slot seen idle stays idle.
    pub fn claim_if_expired(&self, now: u64) -> bool {
        if self.state.load(Ordering::Acquire) != IDLE {
            return false;
        }
        let deadline = self.deadline.load(Ordering::Relaxed);
        if now != u64::MAX && (deadline == 0 || deadline > now) {
            return false;
        }
        self.state.store(CLOSED, Ordering::Release);
        true
    }

    /// The connection, for its current owner.
    ///
    /// # Panics
    /// If someone else holds it: the state protocol makes that impossible.
    pub fn conn(&self) -> MutexGuard<'_, Conn> {
        match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                panic!(
                    "slot {}: two owners at once; the state protocol is broken",
                    self.token
                )
            }
        }
    }
}

/// What a connection keeps between two turns of a worker. An idle keep-alive connection holds a
/// socket and empty buffers: no allocation.
pub(crate) struct Conn {
    /// `None` once closed.
    pub stream: Option<TcpStream>,
    /// Its key in the loop's table, also its mio token.
    pub token: usize,
    pub peer: SocketAddr,
    /// Received bytes of a request not yet complete. Empty (no allocation) between requests.
    pub input: InBuf,
    /// Encoded responses the socket has not taken yet.
    pub output: Vec<u8>,
    /// Progress through a `chunked` body, relative to the start of `input`'s current request.
    pub chunked: Option<Chunked>,
    /// When the current request's first byte arrived (for the header timeout); 0 between requests.
    pub request_started: u64,
    /// When it was accepted: the deadline for its first request counts from here.
    pub accepted: u64,
    /// Requests answered on it.
    pub answered: u64,
    /// Write interest is registered (added the first time a write would block).
    pub write_interest: bool,
    /// `100 Continue` was sent for the current request.
    pub continue_sent: bool,
    /// Close once `output` is flushed.
    pub close_after_flush: bool,
    /// After an error the connection is half-closed and reads are discarded until the client
    /// closes or this deadline passes, so the error response is not lost to a reset (RFC 9112
    /// §9.6). 0 when not lingering.
    pub linger_until: u64,
    /// What the next request is owed after waiting in a bulkhead's queue.
    pub admission: Admission,
}

impl Conn {
    pub fn new(stream: TcpStream, token: usize, peer: SocketAddr, accepted: u64) -> Conn {
        Conn {
            stream: Some(stream),
            accepted,
            ..Conn::closed(token, peer)
        }
    }

    /// A connection whose socket is closed and whose buffers are freed.
    pub fn closed(token: usize, peer: SocketAddr) -> Conn {
        Conn {
            stream: None,
            token,
            peer,
            input: InBuf::default(),
            output: Vec::new(),
            chunked: None,
            request_started: 0,
            accepted: 0,
            answered: 0,
            write_interest: false,
            continue_sent: false,
            close_after_flush: false,
            linger_until: 0,
            admission: Admission::Open,
        }
    }
}

/// A read buffer: `data[start..end]` holds unconsumed bytes; `data` is always initialised, so reads
/// go straight into its tail without zeroing it each time.
#[derive(Default)]
pub(crate) struct InBuf {
    pub data: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl InBuf {
    pub fn with_capacity(n: usize) -> InBuf {
        InBuf {
            data: vec![0; n],
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Makes room for at least `want` more bytes at the end, sliding pending bytes to the front
    /// first and growing (never past `max` in total) only if that is not enough. Returns the room.
    pub fn make_room(&mut self, want: usize, max: usize) -> usize {
        if self.data.len() - self.end >= want {
            return self.data.len() - self.end;
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < want && self.data.len() < max {
            let len = (self.end + want).max(self.data.len() * 2).min(max);
            self.data.resize(len, 0);
        }
        self.data.len() - self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_room_slides_then_grows() {
        let mut buf = InBuf::with_capacity(8);
        buf.data[..8].copy_from_slice(b"abcdefgh");
        buf.start = 6;
        buf.end = 8;
        assert_eq!(buf.make_room(4, 100), 6);
        assert_eq!(buf.pending(), b"gh");
        assert_eq!(buf.make_room(10, 100), 14);
        assert_eq!(buf.pending(), b"gh");
        assert_eq!(buf.make_room(1000, 20), 18);
    }
}
