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

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::conn::Slot;

/// Connections waiting for a worker.
#[derive(Default)]
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Wakes workers: there is work.
    ready: Condvar,
    /// Wakes the loop: the queue ran dry.
    hungry: Condvar,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Arc<Slot>>,
    /// Workers blocked in `pop`, so that `push` wakes no more than can run.
    sleeping: usize,
    /// Set at the end of shutdown: `pop` returns `None` once the queue is empty.
    stopped: bool,
    /// The loop is waiting in `wait_until_hungry`.
    loop_waiting: bool,
}

impl Queue {
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
        let wake = {
            let mut inner = self.lock();
            let room = capacity.saturating_sub(inner.items.len()).min(batch.len());
            overflow.extend(batch.drain(room..));
            inner.items.extend(batch.drain(..));
            inner.sleeping.min(inner.items.len())
        };
        for _ in 0..wake {
            self.ready.notify_one();
        }
    }

    /// Queues one connection over the bound (it already waited elsewhere) and wakes a worker.
    pub fn push(&self, slot: Arc<Slot>) {
        let wake = {
            let mut inner = self.lock();
            inner.items.push_back(slot);
            inner.sleeping > 0
        };
        if wake {
            self.ready.notify_one();
        }
    }

    /// The next connection, blocking while there is none; `None` after [`stop`](Self::stop).
    pub fn pop(&self) -> Option<Arc<Slot>> {
        let mut inner = self.lock();
        loop {
            if let Some(slot) = inner.items.pop_front() {
                if inner.items.is_empty() && inner.loop_waiting {
                    inner.loop_waiting = false;
                    self.hungry.notify_one();
                }
                return Some(slot);
            }
            if inner.stopped {
                return None;
            }
            inner.sleeping += 1;
            inner = self.ready.wait(inner).unwrap_or_else(|e| e.into_inner());
            inner.sleeping -= 1;
        }
    }

    /// Loop: waits until the queue is empty (a worker took the last item), at most `timeout`.
    pub fn wait_until_hungry(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while !inner.items.is_empty() && !inner.stopped {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            inner.loop_waiting = true;
            inner = self
                .hungry
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        inner.loop_waiting = false;
    }

    /// Connections waiting now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Lets the workers finish what is queued and then return from `pop`.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.ready.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
