//! The worker threads: starting them, replacing those written off by the watchdog, and waiting for
//! them at shutdown. What each one runs now is in its [`Record`] (`running.rs`); what it does is in
//! `worker.rs`.
//!
//! A thread stuck in a handler cannot be killed, only forgotten: the watchdog starts another in
//! its place, up to `max_lost_workers` stuck at once, so the pool keeps its size. Past that the
//! pool shrinks, an error is logged once a minute, and [`ServerStats::needs_replacement`] tells a
//! supervisor to replace the process. A stuck thread whose handler returns at last exits if it was
//! replaced, and serves again if it was not.
//!
//! [`ServerStats::needs_replacement`]: crate::ServerStats::needs_replacement

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::running::Record;
use crate::server::Shared;
use crate::worker::Worker;

/// The pool's threads and their records.
#[derive(Default)]
pub(crate) struct Workers {
    /// One record per live thread, replaced whole when a thread starts or exits; the watchdog and
    /// the bulkheads read it without a lock.
    records: ArcSwap<Vec<Arc<Record>>>,
    /// Threads running now, for shutdown to wait on.
    live: Mutex<usize>,
    exited: Condvar,
    /// Threads written off and still stuck.
    lost: AtomicUsize,
    /// More are stuck than `max_lost_workers`.
    exhausted: AtomicBool,
    /// Names threads `worker-N`.
    next: AtomicUsize,
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
        let record = Arc::new(Record::default());
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let worker = Worker::new(Arc::clone(shared), Arc::clone(&record));
        self.records.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(Arc::clone(&record));
            list
        });
        *self.lock_live() += 1;
        let spawned = thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            self.exit(&record);
            return Err(e);
        }
        Ok(())
    }

    /// A thread is about to return: forget its record.
    pub fn exit(&self, record: &Arc<Record>) {
        self.records.rcu(|list| {
            let mut list = Vec::clone(list);
            list.retain(|r| !Arc::ptr_eq(r, record));
            list
        });
        let mut live = self.lock_live();
        *live -= 1;
        self.exited.notify_all();
    }

    /// Watchdog: one more thread is stuck. Returns whether a replacement was started (while at
    /// most `max` are stuck).
    pub fn lose(&self, shared: &Arc<Shared>, max: usize) -> bool {
        let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
        if lost > max {
            self.exhausted.store(true, Ordering::Relaxed);
            return false;
        }
        match self.spawn(shared) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a worker to replace a stuck one");
                false
            }
        }
    }

    /// A stuck thread's handler returned.
    pub fn found(&self, max: usize) {
        let lost = self.lost.fetch_sub(1, Ordering::Relaxed) - 1;
        if lost <= max {
            self.exhausted.store(false, Ordering::Relaxed);
        }
    }

    /// Threads stuck now.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }

    /// More threads are stuck than may be replaced: only a new process gets the pool back.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Shutdown: waits up to `grace` for every thread that is not inside a handler to return, and
    /// returns the records of those still in one (in time, or written off).
    pub fn wait_stopped(&self, grace: Duration) -> Vec<Arc<Record>> {
        let until = Instant::now() + grace;
        let mut live = self.lock_live();
        loop {
            let in_handlers = self.records().iter().filter(|r| r.is_busy()).count();
            let now = Instant::now();
            if *live <= in_handlers || now >= until {
                break;
            }
            let wait = (until - now).min(Duration::from_millis(10));
            live = self
                .exited
                .wait_timeout(live, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(live);
        self.records()
            .iter()
            .filter(|r| r.is_busy())
            .cloned()
            .collect()
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, usize> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}
