//! The worker pool's queue: connections with work to do, handed from the event loop to whichever
//! worker is free.
//!
//! The loop pushes every ready connection of one `poll` in one batch and wakes only as many
//! sleeping workers as it has work for; a worker that finishes a connection takes the next one
//! before it ever sleeps. Both keep the futex calls per request low.
//!
//! While the workers still have queued work, polling again would only wake the loop for one event
//! at a time (a syscall and a context switch per request). So the loop waits until the queue runs
//! dry ([`Queue::wait_until_hungry`]); the worker that takes the last item wakes it, and the next
//! `poll` collects everything that became ready meanwhile in one batch.
//!
//! A pool can have far more workers than cores (for handlers that wait on I/O). Waking one worker
//! per queued connection would then wake dozens of threads for a batch that two cores drain, each
//! context switch costing more than the request. So a batch wakes at most one worker per core, the
//! ones that slept last (a stack, not a condition variable's queue, so that the threads that work
//! are few and their caches warm), and those take the rest; should they stop taking (stuck in handlers that wait), the loop sees the
//! queue make no progress for [`STALL_MS`] while an awake worker is inside a handler that began a
//! while ago, and wakes up to one more worker per core, each such millisecond, while connections
//! wait. (No progress alone would also mean workers preempted on a busy machine; waking more of
//! them then only adds context switches.)

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::conn::Slot;

/// How long the queue may make no progress, with workers asleep, before the loop wakes more.
pub(crate) const STALL_MS: u64 = 1;

/// Connections waiting for a worker.
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Wakes the loop: the queue ran dry.
    hungry: Condvar,
    /// Workers woken for one batch at most: the cores.
    wake_limit: usize,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Arc<Slot>>,
    /// Workers asleep in `pop`, the last to sleep at the end: woken from the end.
    sleepers: Vec<Sleeper>,
    /// Tells sleepers apart.
    next_sleeper: u64,
    /// Set at the end of shutdown: `pop` returns `None` once the queue is empty.
    stopped: bool,
    /// The loop is waiting in `wait_until_hungry`.
    loop_waiting: bool,
    /// Items taken so far, for the loop to see progress.
    taken: u64,
    /// Moves on when every worker should give way to a fresh thread ([`Queue::recycle`]).
    epoch: u64,
}

/// A worker asleep in `pop`.
struct Sleeper {
    id: u64,
    thread: Thread,
}

/// Threads to unpark once the lock is released; a batch wakes a handful.
#[derive(Default)]
struct Wake(Vec<Thread>);

impl Inner {
    /// Takes up to `n` sleepers, the last to sleep first.
    fn take_sleepers(&mut self, n: usize, wake: &mut Wake) {
        let keep = self.sleepers.len().saturating_sub(n);
        wake.0
            .extend(self.sleepers.drain(keep..).rev().map(|s| s.thread));
    }
}

impl Wake {
    fn run(self) {
        for thread in self.0 {
            thread.unpark();
        }
    }
}

impl Default for Queue {
    fn default() -> Queue {
        Queue::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

impl Queue {
    /// A queue that wakes at most `wake_limit` workers for a batch.
    pub fn new(wake_limit: usize) -> Queue {
        Queue {
            inner: Mutex::default(),
            hungry: Condvar::new(),
            wake_limit: wake_limit.max(1),
        }
    }

    /// Queues a batch (emptying it), up to `capacity` queued in all, and wakes sleeping workers
    /// for it. What does not fit goes to `overflow`.
    pub fn push_batch(
        &self,
        batch: &mut Vec<Arc<Slot>>,
        capacity: usize,
        overflow: &mut Vec<Arc<Slot>>,
    ) {
        if batch.is_empty() {
            return;
        }
        let mut wake = Wake::default();
        {
            let mut inner = self.lock();
            let room = capacity.saturating_sub(inner.items.len()).min(batch.len());
            overflow.extend(batch.drain(room..));
            inner.items.extend(batch.drain(..));
            let n = inner.items.len().min(self.wake_limit);
            inner.take_sleepers(n, &mut wake);
        }
        wake.run();
    }

    /// Queues one connection over the bound (it already waited elsewhere) and wakes a worker.
    pub fn push(&self, slot: Arc<Slot>) {
        let mut wake = Wake::default();
        {
            let mut inner = self.lock();
            inner.items.push_back(slot);
            inner.take_sleepers(1, &mut wake);
        }
        wake.run();
    }

    /// Worker: puts back the connection it just drove, which had its share and has more to do,
    /// behind the others. The caller pops next, so a sleeper is woken only if others wait too:
    /// then the caller takes the first of them, and the woken worker this one.
    pub fn requeue(&self, slot: Arc<Slot>) {
        let mut wake = Wake::default();
        {
            let mut inner = self.lock();
            inner.items.push_back(slot);
            if inner.items.len() > 1 {
                inner.take_sleepers(1, &mut wake);
            }
        }
        wake.run();
    }

    /// The pool's epoch now: what a worker starting now serves in.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Asks every worker to exit at its next `pop` (each is replaced by a fresh thread: see
    /// `workers.rs`), and wakes the sleeping ones for it.
    pub fn recycle(&self) {
        let mut wake = Wake::default();
        {
            let mut inner = self.lock();
            inner.epoch += 1;
            let n = inner.sleepers.len();
            inner.take_sleepers(n, &mut wake);
        }
        wake.run();
    }

    /// The next connection, blocking while there is none; `None` after [`stop`](Self::stop) once
    /// the queue is empty, or (before a stop) when the epoch is no longer `born`, the worker's:
    /// the worker then gives way to a fresh thread.
    pub fn pop(&self, born: u64) -> Option<Arc<Slot>> {
        let mut inner = self.lock();
        loop {
            // Stopping, the workers drain the queue first; a recycle then waits for the end.
            if inner.epoch != born && !inner.stopped {
                return None;
            }
            if let Some(slot) = inner.items.pop_front() {
                inner.taken += 1;
                if inner.items.is_empty() && inner.loop_waiting {
                    inner.loop_waiting = false;
                    self.hungry.notify_one();
                }
                return Some(slot);
            }
            if inner.stopped {
                return None;
            }
            let id = inner.next_sleeper;
            inner.next_sleeper += 1;
            inner.sleepers.push(Sleeper {
                id,
                thread: thread::current(),
            });
            drop(inner);
            // An unpark that came first makes this return at once.
            thread::park();
            inner = self.lock();
            // Woken (and so taken off the list), or woken for nothing: off the list either way.
            if let Some(i) = inner.sleepers.iter().rposition(|s| s.id == id) {
                inner.sleepers.remove(i);
            }
        }
    }

    /// Loop: waits until the queue is empty (a worker took the last item), at most `timeout`.
    /// When no item was taken for [`STALL_MS`] and `stuck(sleeping)` says the awake workers are
    /// held (one of them in a long handler call), wakes up to one more sleeping worker per core,
    /// every such slice, while items are left. Returns whether items
    /// are left: the loop then polls for no longer than `STALL_MS` before it looks again.
    pub fn wait_until_hungry(&self, timeout: Duration, stuck: impl Fn(usize) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let stall = Duration::from_millis(STALL_MS);
        let mut inner = self.lock();
        let mut taken = inner.taken;
        while !inner.items.is_empty() && !inner.stopped {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inner.loop_waiting = true;
            inner = self
                .hungry
                .wait_timeout(inner, (deadline - now).min(stall))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            let sleeping = inner.sleepers.len();
            if inner.taken == taken && !inner.items.is_empty() && sleeping > 0 && {
                // Without the lock: `stuck` reads the workers' records.
                drop(inner);
                let stalled = stuck(sleeping);
                inner = self.lock();
                stalled
            } {
                let mut wake = Wake::default();
                let n = inner.items.len().min(self.wake_limit);
                inner.take_sleepers(n, &mut wake);
                drop(inner);
                wake.run();
                inner = self.lock();
            }
            taken = inner.taken;
        }
        inner.loop_waiting = false;
        !inner.items.is_empty() && !inner.stopped
    }

    /// Connections waiting now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no connection waits now.
    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Lets the workers finish what is queued and then return from `pop`.
    pub fn stop(&self) {
        let mut wake = Wake::default();
        {
            let mut inner = self.lock();
            inner.stopped = true;
            let n = inner.sleepers.len();
            inner.take_sleepers(n, &mut wake);
        }
        wake.run();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Conn;

    fn slot(token: usize) -> Arc<Slot> {
        let conn = Conn::closed(token, "127.0.0.1:1".parse().unwrap());
        Arc::new(Slot::new(token, conn, 0))
    }

    #[test]
    fn a_requeued_connection_goes_behind_those_waiting() {
        let queue = Queue::new(1);
        queue.push_batch(&mut vec![slot(1), slot(2)], 10, &mut Vec::new());
        let first = queue.pop(0).unwrap();
        queue.requeue(first);
        queue.push_batch(&mut vec![slot(3)], 10, &mut Vec::new());
        let order: Vec<usize> = (0..3).map(|_| queue.pop(0).unwrap().token).collect();
        assert_eq!(order, [2, 1, 3]);
    }

    #[test]
    fn a_recycle_sends_workers_away_except_while_stopping() {
        let queue = Queue::new(1);
        let born = queue.epoch();
        queue.push_batch(&mut vec![slot(1), slot(2)], 10, &mut Vec::new());
        queue.recycle();
        // A worker of the old epoch gives way, even with work queued (its successor takes it)…
        assert!(queue.pop(born).is_none());
        assert_eq!(queue.pop(queue.epoch()).unwrap().token, 1);
        // …but once the server stops, every worker drains the queue first.
        queue.stop();
        assert_eq!(queue.pop(born).unwrap().token, 2);
        assert!(queue.pop(born).is_none());
    }
}
