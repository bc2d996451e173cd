//! Bulkheads: a limit on how many workers one kind of request (the host: one plugin) may hold at
//! once, with a bounded wait for the requests past it, so that one slow plugin cannot starve the
//! others. Read "Fault containment" in DESIGN.md. How a handler enters one is in `call.rs`; the
//! table of a server's bulkheads and their policies in `table.rs`.
//!
//! A [`Handler`](crate::Handler) puts a request in a bulkhead by calling [`Call::enter`] before it
//! runs code that may be slow. Past the bulkhead's limit, `enter` says no, and the worker parks the
//! connection in the bulkhead's queue and goes on with other connections; the request is re-driven
//! with a place reserved for it when a call in the bulkhead ends, or answered `503` with
//! `Retry-After` when it waited too long (the watchdog, `watchdog.rs`, checks). A call that runs
//! past its deadline still holds its place until its handler returns, so a hanging plugin holds at
//! most its limit of threads.
//!
//! The default limit is `workers - 1`, so that one plugin never holds every worker for long. A
//! plugin proven fast may take the last one too, while every call of it in flight began within
//! [`BORROW_MS`]: a plugin that answers in microseconds uses every core (at `workers = 2`, an exact
//! limit of 1 would halve it), and one with a call running longer may not. Proven fast means
//! [`PROVEN`] calls ended since the watchdog last saw one of its calls running longer than
//! `BORROW_MS`, so a new plugin, or one that was just slow, gets the exact limit. `BORROW_MS` is
//! far above a scheduler's time slice, so a call preempted on a busy machine does not count as
//! slow. A limit set in the configuration is always exact.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::conn::Slot;
use crate::limits::BodyLimits;
use crate::shared::Shared;

mod call;
mod pause;
mod table;

pub use call::{Call, Permit};
pub(crate) use call::{Declined, Gate};
pub use table::{BulkheadPolicy, Bulkheads};

/// A plugin at its default limit may take the last worker while all its calls in flight began
/// less than this many milliseconds ago.
pub const BORROW_MS: u64 = 50;
/// Calls that must end, with none seen running long, before a plugin may borrow the last worker.
pub const PROVEN: u32 = 1000;

/// A limit on concurrent calls and its queue. Obtained from [`Bulkheads::get`].
pub struct Bulkhead {
    /// Calls holding a place now (also those past their deadline, until their handler returns).
    in_flight: AtomicUsize,
    /// Requests in `queue`, readable without its lock.
    waiting: AtomicUsize,
    /// While set, no call starts: requests wait in `queue` (`pause.rs`).
    paused: AtomicBool,
    /// Its responses may be compressed (`[limits.plugins.NAME] compress`).
    compress: AtomicBool,
    /// Calls ended since one was seen running long, up to [`PROVEN`] (then no longer written).
    proven: std::sync::atomic::AtomicU32,
    /// The limit in force and whether it was configured (exact) or is the default (may borrow).
    cap: AtomicUsize,
    exact: AtomicBool,
    /// Milliseconds; 0 for the server's default.
    timeout_ms: AtomicU64,
    queue_timeout_ms: AtomicU64,
    max_queued: AtomicUsize,
    /// Body limits, plus one; 0 for the server's default.
    max_body: AtomicU64,
    buffer_body: AtomicU64,
    /// Position in the table, plus one: what a worker's record says.
    id: usize,
    name: String,
    queue: Mutex<VecDeque<Waiter>>,
    timed_out: AtomicU64,
    refused: AtomicU64,
    lost: AtomicUsize,
}

/// One bulkhead's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkheadStats {
    /// Its name (the host: the plugin's).
    pub name: String,
    /// Calls holding a place now.
    pub in_flight: usize,
    /// Requests waiting for a place now.
    pub queued: usize,
    /// Calls answered `504` because they ran past their deadline.
    pub timed_out: u64,
    /// Requests answered `503`: the queue was full, or they waited too long.
    pub refused: u64,
    /// Worker threads still stuck in a call past its deadline.
    pub lost_workers: usize,
    /// The limit in force.
    pub max_concurrency: usize,
}

/// A place reserved for a request that waited: given back when dropped, unless the request takes
/// it ([`Reserved::take`]).
pub(crate) struct Reserved(Option<Arc<Bulkhead>>);

/// What a connection's next request is owed, after it waited in a bulkhead's queue.
#[derive(Default)]
pub(crate) enum Admission {
    /// Nothing: admitted as it comes.
    #[default]
    Open,
    /// A place in this bulkhead is reserved for it.
    Granted(Reserved),
    /// It is answered `503` with `Retry-After`, for this reason (a line).
    Refused(&'static str),
}

/// A parked connection.
struct Waiter {
    slot: Arc<Slot>,
    shared: Weak<Shared>,
    /// When it began waiting, and its request's deadline.
    since: u64,
    deadline: u64,
}

impl Bulkhead {
    pub(super) fn new(id: usize, name: &str) -> Bulkhead {
        Bulkhead {
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            compress: AtomicBool::new(true),
            proven: std::sync::atomic::AtomicU32::new(0),
            cap: AtomicUsize::new(usize::MAX),
            exact: AtomicBool::new(false),
            timeout_ms: AtomicU64::new(0),
            queue_timeout_ms: AtomicU64::new(0),
            max_queued: AtomicUsize::new(0),
            max_body: AtomicU64::new(0),
            buffer_body: AtomicU64::new(0),
            id,
            name: name.to_owned(),
            queue: Mutex::new(VecDeque::new()),
            timed_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            lost: AtomicUsize::new(0),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its figures now.
    pub fn stats(&self) -> BulkheadStats {
        BulkheadStats {
            name: self.name.clone(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.waiting.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            lost_workers: self.lost.load(Ordering::Relaxed),
            max_concurrency: self.cap.load(Ordering::Relaxed),
        }
    }

    pub(super) fn apply(&self, policy: &BulkheadPolicy, workers: usize) {
        let ms = |d: Option<Duration>| d.map_or(0, |d| (d.as_millis() as u64).max(1));
        self.timeout_ms
            .store(ms(policy.handler_timeout), Ordering::Relaxed);
        self.queue_timeout_ms
            .store(ms(policy.queue_timeout), Ordering::Relaxed);
        self.max_queued
            .store(policy.max_queued.unwrap_or(0), Ordering::Relaxed);
        let plus_one = |n: Option<u64>| n.map_or(0, |n| n.saturating_add(1));
        self.max_body
            .store(plus_one(policy.max_body_bytes), Ordering::Relaxed);
        self.buffer_body
            .store(plus_one(policy.buffer_body_bytes), Ordering::Relaxed);
        let (cap, exact) = match policy.max_concurrency {
            Some(n) => (n.max(1), true),
            None if workers == 0 => (usize::MAX, false),
            None => (workers.saturating_sub(1).max(1), false),
        };
        self.exact.store(exact, Ordering::Relaxed);
        self.cap.store(cap, Ordering::Relaxed);
        self.compress
            .store(policy.compress.unwrap_or(true), Ordering::Relaxed);
    }

    /// Whether its responses may be compressed.
    pub fn compresses(&self) -> bool {
        self.compress.load(Ordering::Relaxed)
    }

    /// The body limits of its requests, over the server's `default`.
    pub fn body_limits(&self, default: BodyLimits) -> BodyLimits {
        let or = |v: &AtomicU64, d: u64| match v.load(Ordering::Relaxed) {
            0 => d,
            n => n - 1,
        };
        BodyLimits {
            max: or(&self.max_body, default.max),
            buffer: or(&self.buffer_body, default.buffer).min(default.buffer),
        }
    }

    /// The deadline of a request received at `received`.
    #[inline]
    pub(crate) fn deadline(&self, received: u64, default: Duration) -> u64 {
        let ms = match self.timeout_ms.load(Ordering::Relaxed) {
            0 => default.as_millis() as u64,
            ms => ms,
        };
        received.saturating_add(ms)
    }

    /// Takes a place if there is one (or, at the default limit, if the bulkhead may borrow).
    /// A free place is taken even while requests wait: a place freed while they wait is handed
    /// straight to them (`exit`), so one found free was free for everyone.
    #[inline]
    fn try_enter(self: &Arc<Self>, shared: &Shared, now: u64) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        if self.take_below(cap) {
            return true;
        }
        if self.exact.load(Ordering::Relaxed) || self.proven.load(Ordering::Relaxed) < PROVEN {
            return false;
        }
        // Written-off calls show here too, as old ones.
        let young = shared.workers.records().iter().all(|r| match r.peek() {
            Some((started, _, id)) if id == self.id => started + BORROW_MS > now,
            _ => true,
        });
        // One place past the limit: the last worker, no more.
        young && self.take_below(cap + 1)
    }

    /// Takes a place while fewer than `bound` are taken, and no pause is on.
    #[inline]
    fn take_below(self: &Arc<Self>, bound: usize) -> bool {
        let mut n = self.in_flight.load(Ordering::Relaxed);
        while n < bound {
            match self.in_flight.compare_exchange_weak(
                n,
                n + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) if self.not_paused() => return true,
                Ok(_) => {
                    // The pause may have ended meanwhile, its dispatch finding the bulkhead full
                    // because of the place we just gave back: dispatch for it.
                    if self.waiting.load(Ordering::SeqCst) > 0 {
                        self.dispatch();
                    }
                    return false;
                }
                Err(actual) => n = actual,
            }
        }
        false
    }

    /// Called with a place just taken: keeps it if no pause is on, else gives it back. The
    /// place is counted before the pause is read, and a pause is set before the count is read
    /// (`pause.rs`), both `SeqCst`: so either the pause waits for this call, or this call sees
    /// the pause.
    #[inline]
    fn not_paused(&self) -> bool {
        if !self.paused.load(Ordering::SeqCst) {
            return true;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        false
    }

    /// Gives a place back: to the first request waiting if there is one, else to everyone.
    #[inline]
    fn exit(self: &Arc<Self>) {
        if self.proven.load(Ordering::Relaxed) < PROVEN {
            self.proven.fetch_add(1, Ordering::Relaxed);
        }
        if self.waiting.load(Ordering::SeqCst) > 0 && self.hand_over() {
            return;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        // SeqCst pairs with `park`: either it sees our decrement, or we see its waiter.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.dispatch();
        }
    }

    /// Hands the caller's place to the first request waiting; `false` when none waits, or the
    /// place was one past the limit (borrowed), which is given back instead.
    fn hand_over(self: &Arc<Self>) -> bool {
        let mut queue = self.lock_queue();
        // While paused, places are not passed on: the count must fall to nothing.
        if self.in_flight.load(Ordering::SeqCst) > self.cap.load(Ordering::Relaxed)
            || self.paused.load(Ordering::SeqCst)
        {
            return false;
        }
        let Some(waiter) = queue.pop_front() else {
            return false;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        // `false` when the server is gone: the caller gives the place back.
        release(waiter, Admission::Granted(Reserved(Some(Arc::clone(self)))))
    }

    /// Parks a connection whose request found no place. `Err` gives it back when the queue is
    /// full.
    pub(crate) fn park(
        self: &Arc<Self>,
        slot: Arc<Slot>,
        shared: &Arc<Shared>,
        now: u64,
        deadline: u64,
    ) -> Result<(), Arc<Slot>> {
        {
            let mut queue = self.lock_queue();
            let bound = match self.max_queued.load(Ordering::Relaxed) {
                0 => shared.limits.load().max_queued,
                n => n,
            };
            if queue.len() >= bound {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(slot);
            }
            queue.push_back(Waiter {
                slot,
                shared: Arc::downgrade(shared),
                since: now,
                deadline,
            });
            self.waiting.fetch_add(1, Ordering::SeqCst);
        }
        // A call may have ended between our `try_enter` and the push.
        if self.in_flight.load(Ordering::SeqCst) < self.cap.load(Ordering::Relaxed) {
            self.dispatch();
        }
        Ok(())
    }

    /// Hands free places to waiting requests, first come first served.
    pub(super) fn dispatch(self: &Arc<Self>) {
        if self.paused.load(Ordering::SeqCst) {
            // The pause's end dispatches.
            return;
        }
        let mut queue = self.lock_queue();
        let cap = self.cap.load(Ordering::Relaxed);
        while !queue.is_empty() {
            let n = self.in_flight.load(Ordering::SeqCst);
            if n >= cap {
                break;
            }
            if self
                .in_flight
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            if !self.not_paused() {
                break;
            }
            let waiter = queue.pop_front().expect("checked non-empty");
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if !release(waiter, Admission::Granted(Reserved(Some(Arc::clone(self))))) {
                // The server is gone (the waiter and its place with it).
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Watchdog: answers `503` to requests that waited past their queue timeout or deadline.
    pub(crate) fn expire(&self, now: u64, default_wait: Duration) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wait = match self.queue_timeout_ms.load(Ordering::Relaxed) {
            0 => default_wait.as_millis() as u64,
            ms => ms,
        };
        let expired: VecDeque<Waiter> = {
            let mut queue = self.lock_queue();
            let (gone, kept) = std::mem::take(&mut *queue)
                .into_iter()
                .partition(|w| now > w.deadline.min(w.since.saturating_add(wait)));
            *queue = kept;
            self.waiting.store(queue.len(), Ordering::SeqCst);
            gone
        };
        for waiter in expired {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let why = if now > waiter.deadline {
                "the request waited past its deadline\n"
            } else {
                "the plugin is at its concurrency limit\n"
            };
            release(waiter, Admission::Refused(why));
        }
    }

    /// Drops every waiting request (the server has stopped).
    pub(crate) fn clear(&self) {
        let dropped = {
            let mut queue = self.lock_queue();
            self.waiting.store(0, Ordering::SeqCst);
            std::mem::take(&mut *queue)
        };
        drop(dropped);
    }

    /// Watchdog: a call of this bulkhead is running longer than [`BORROW_MS`]: it is not
    /// proven fast.
    pub(crate) fn saw_slow(&self) {
        if self.proven.load(Ordering::Relaxed) != 0 {
            self.proven.store(0, Ordering::Relaxed);
        }
    }

    /// Watchdog: a call in this bulkhead was written off, or (`false`) its worker came back.
    pub(crate) fn count_lost(&self, lost: bool) {
        if lost {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
            self.lost.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lost.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiter>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Puts a parked connection back in its server's queue, owing `admission`. `false` when the server
/// is gone.
fn release(waiter: Waiter, admission: Admission) -> bool {
    let Some(shared) = waiter.shared.upgrade() else {
        if let Admission::Granted(mut place) = admission {
            // The caller gives the place back.
            place.take();
        }
        return false;
    };
    let old = std::mem::replace(&mut waiter.slot.conn().admission, admission);
    // A parked connection's request took its admission when it ran; dropping a reserved place
    // here would lock this bulkhead's queue again.
    debug_assert!(matches!(old, Admission::Open));
    shared.queue.push(waiter.slot);
    true
}

impl Reserved {
    /// The bulkhead, for a request that takes the place (it is not given back on drop).
    fn take(&mut self) -> Option<Arc<Bulkhead>> {
        self.0.take()
    }

    /// The deadline of a request received at `received`, in this place's bulkhead.
    pub(crate) fn deadline(&self, received: u64, default: Duration) -> u64 {
        self.0
            .as_ref()
            .map_or(received, |b| b.deadline(received, default))
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(bulkhead) = self.0.take() {
            bulkhead.exit();
        }
    }
}
