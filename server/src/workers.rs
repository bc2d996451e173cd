//! The worker threads: starting them, replacing those written off by the watchdog, and waiting for
//! them at shutdown. What each one runs now is in its [`Record`] (`running.rs`); what it does is in
//! `worker/`.
//!
//! A thread stuck in a handler cannot be killed, only forgotten: the watchdog starts another in
//! its place, up to `max_lost_workers` stuck at once, so the pool keeps its size. Past that the
//! pool shrinks, an error is logged once a minute, and [`ServerStats::needs_replacement`] tells a
//! supervisor to replace the process. A stuck thread whose handler returns at last serves again
//! if the pool is short, and exits if it is full; when threads come back the pool is topped up.
//!
//! The pool also recycles itself: when a plugin library stays mapped after its generation ended,
//! pinned by thread-local destructors pending on the workers (`plugin/pinned.rs`), the watchdog
//! moves the queue's epoch on (`Queue::recycle`), and each worker returns at its next `pop`; its
//! exit starts a fresh thread, and its destructors run as it ends.
//!
//! [`ServerStats::needs_replacement`]: crate::ServerStats::needs_replacement

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::running::Record;
use crate::shared::Shared;
use crate::worker::Worker;

/// The pool's threads and their records.
#[derive(Default)]
pub(crate) struct Workers {
    /// One record per live thread, replaced whole when a thread starts or exits; the watchdog and
    /// the bulkheads read it without a lock.
    records: ArcSwap<Vec<Arc<Record>>>,
    /// Threads alive and threads stuck, changed together (rarely: start, exit, write-off).
    counts: Mutex<Counts>,
    exited: Condvar,
    /// Names threads `worker-N`.
    next: AtomicUsize,
}

#[derive(Default)]
struct Counts {
    live: usize,
    lost: usize,
}

impl Counts {
    /// Threads that can take work.
    fn serving(&self) -> usize {
        self.live - self.lost
    }
}

impl Workers {
    /// The records of every live thread.
    pub fn records(&self) -> arc_swap::Guard<Arc<Vec<Arc<Record>>>> {
        self.records.load()
    }

    /// Starts one worker thread.
    ///
    /// # Errors
    /// The thread cannot be created.
    pub fn spawn(&self, shared: &Arc<Shared>) -> io::Result<()> {
        self.spawn_counted(shared, &mut self.lock_counts())
    }

    fn spawn_counted(&self, shared: &Arc<Shared>, counts: &mut Counts) -> io::Result<()> {
        let record = Arc::new(Record::default());
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let worker = Worker::new(Arc::clone(shared), Arc::clone(&record));
        self.records.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(Arc::clone(&record));
            list
        });
        let spawned = thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker.run());
        match spawned {
            Ok(_) => {
                counts.live += 1;
                Ok(())
            }
            Err(e) => {
                self.forget(&record);
                Err(e)
            }
        }
    }

    /// A thread is about to return: forget its record, and (unless [`found`](Self::found) did)
    /// count it gone. A thread that ends while the pool serves (a panic) is replaced.
    pub fn exit(&self, shared: &Arc<Shared>, record: &Arc<Record>, counted: bool) {
        self.forget(record);
        let mut counts = self.lock_counts();
        if !counted {
            counts.live -= 1;
            if !shared.queue.is_stopped() {
                self.top_up_counted(shared, &mut counts, shared.max_lost_workers());
            }
        }
        self.exited.notify_all();
    }

    /// A thread recycled (`Queue::recycle`) is about to return: a fresh one takes its place,
    /// whatever the count of stuck threads (the pool keeps its size), and it is counted gone.
    pub fn replace(&self, shared: &Arc<Shared>, record: &Arc<Record>) {
        self.forget(record);
        let mut counts = self.lock_counts();
        counts.live -= 1;
        if let Err(e) = self.spawn_counted(shared, &mut counts) {
            tracing::error!(error = %e, "cannot start a worker in the place of a recycled one");
        }
        self.exited.notify_all();
    }

    fn forget(&self, record: &Arc<Record>) {
        self.records.rcu(|list| {
            let mut list = Vec::clone(list);
            list.retain(|r| !Arc::ptr_eq(r, record));
            list
        });
    }

    /// Watchdog: one more thread is stuck (counted before the thread is let go, so that its
    /// return cannot be counted first).
    pub fn lose(&self) {
        let mut counts = self.lock_counts();
        counts.lost += 1;
    }

    /// Starts threads until the pool has its size, while at most `max` are stuck; returns whether
    /// it started any.
    pub fn top_up(&self, shared: &Arc<Shared>, max: usize) -> bool {
        let mut counts = self.lock_counts();
        self.top_up_counted(shared, &mut counts, max)
    }

    /// A stuck thread's handler returned. Returns whether that thread should exit (the pool is
    /// full without it), in which case it is counted gone here (`exit` with `counted`);
    /// otherwise it serves again.
    pub fn found(&self, shared: &Arc<Shared>, max: usize) -> bool {
        let mut counts = self.lock_counts();
        counts.lost -= 1;
        let exit = counts.serving() > shared.workers_wanted;
        if exit {
            counts.live -= 1;
        } else {
            // Threads stuck past the bound were not replaced; now that fewer are, they can be.
            self.top_up_counted(shared, &mut counts, max);
        }
        exit
    }

    fn top_up_counted(&self, shared: &Arc<Shared>, counts: &mut Counts, max: usize) -> bool {
        let mut started = false;
        while counts.lost <= max && counts.serving() < shared.workers_wanted {
            if let Err(e) = self.spawn_counted(shared, counts) {
                tracing::error!(error = %e, "cannot start a worker to replace a stuck one");
                break;
            }
            started = true;
        }
        started
    }

    /// Threads stuck now.
    pub fn lost(&self) -> usize {
        self.lock_counts().lost
    }

    /// More threads are stuck than `max` may be replaced: only a new process gets the pool back.
    pub fn exhausted(&self, max: usize) -> bool {
        self.lock_counts().lost > max
    }

    /// Shutdown: waits up to `grace` for every thread that is not inside a handler to return, and
    /// returns the records of those still in one (in time, or written off).
    pub fn wait_stopped(&self, grace: Duration) -> Vec<Arc<Record>> {
        let until = Instant::now() + grace;
        let mut counts = self.lock_counts();
        loop {
            let in_handlers = self.records().iter().filter(|r| r.is_busy()).count();
            let now = Instant::now();
            if counts.live <= in_handlers || now >= until {
                break;
            }
            let wait = (until - now).min(Duration::from_millis(10));
            counts = self
                .exited
                .wait_timeout(counts, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(counts);
        self.records()
            .iter()
            .filter(|r| r.is_busy())
            .cloned()
            .collect()
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}
