//! The [`Slot`] the event loop and the workers share for one connection, and the atomic state that
//! says which thread owns the [`Conn`] inside it.
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

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::Conn;

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

    /// Worker: it goes back to the work queue with requests still buffered (it keeps the slot
    /// `BUSY` meanwhile, as a parked one does: readiness that comes now is seen by the next turn,
    /// which reads until the socket is drained anyway). Those requests count from `now`.
    pub fn requeue(&self, now: u64) {
        self.queued_at.store(now, Ordering::Relaxed);
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
