//! [`Bulkheads`]: the table of a server's bulkheads by name, and the [`BulkheadPolicy`] each is
//! configured with. The bulkhead itself (its places and its queue) is in `mod.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::{Bulkhead, BulkheadStats};

/// One bulkhead's settings; `None` takes the server's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkheadPolicy {
    /// Time from receiving a request to its answer (default [`Limits::handler_timeout`]).
    ///
    /// [`Limits::handler_timeout`]: crate::Limits::handler_timeout
    pub handler_timeout: Option<Duration>,
    /// Calls at once (default `workers - 1`, at least 1).
    pub max_concurrency: Option<usize>,
    /// Time a request may wait for a place (default [`Limits::queue_timeout`]).
    ///
    /// [`Limits::queue_timeout`]: crate::Limits::queue_timeout
    pub queue_timeout: Option<Duration>,
    /// Requests waiting at most; past it, `503` at once (default [`Limits::max_queued`]).
    ///
    /// [`Limits::max_queued`]: crate::Limits::max_queued
    pub max_queued: Option<usize>,
    /// A request body's bytes at most (default [`Limits::max_body_bytes`]).
    ///
    /// [`Limits::max_body_bytes`]: crate::Limits::max_body_bytes
    pub max_body_bytes: Option<u64>,
    /// Bodies read whole before the call up to this size (default, and at most,
    /// [`Limits::buffer_body_bytes`]).
    ///
    /// [`Limits::buffer_body_bytes`]: crate::Limits::buffer_body_bytes
    pub buffer_body_bytes: Option<u64>,
    /// Whether its responses may be compressed (default yes, when `[compression]` is on).
    pub compress: Option<bool>,
}

/// The bulkheads of one server, by name. Hand the same table to the handler that uses them and to
/// [`AIOServer::with_bulkheads`](crate::AIOServer::with_bulkheads). A bulkhead, once named, lives
/// as long as the table, so its counters survive the plugin's reloads.
#[derive(Default)]
pub struct Bulkheads {
    list: RwLock<Vec<Arc<Bulkhead>>>,
    policies: Mutex<BTreeMap<String, BulkheadPolicy>>,
    /// The server's worker count, for the default limit (0 until the server starts).
    workers: AtomicUsize,
}

impl Bulkheads {
    /// An empty table.
    pub fn new() -> Bulkheads {
        Bulkheads::default()
    }

    /// The bulkhead called `name`, added (with its configured policy) if new.
    pub fn get(&self, name: &str) -> Arc<Bulkhead> {
        if let Some(found) = self.read().iter().find(|b| b.name == name) {
            return Arc::clone(found);
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = list.iter().find(|b| b.name == name) {
            return Arc::clone(found);
        }
        let bulkhead = Arc::new(Bulkhead::new(list.len() + 1, name));
        let policy = self.lock_policies().get(name).cloned().unwrap_or_default();
        bulkhead.apply(&policy, self.workers.load(Ordering::Relaxed));
        list.push(Arc::clone(&bulkhead));
        bulkhead
    }

    /// Sets every bulkhead's policy: those named here get theirs, the others the defaults.
    pub fn set_policies(&self, policies: BTreeMap<String, BulkheadPolicy>) {
        *self.lock_policies() = policies;
        self.reapply();
    }

    /// The figures of every bulkhead, in the order they were named.
    pub fn stats(&self) -> Vec<BulkheadStats> {
        self.read().iter().map(|b| b.stats()).collect()
    }

    /// The bulkhead a worker's record names (index + 1).
    pub(crate) fn by_id(&self, id: usize) -> Option<Arc<Bulkhead>> {
        self.read().get(id.checked_sub(1)?).cloned()
    }

    /// Every bulkhead, for the watchdog.
    pub(crate) fn all(&self) -> Vec<Arc<Bulkhead>> {
        self.read().clone()
    }

    /// Drops every request waiting in any bulkhead (the server has stopped).
    pub(crate) fn clear(&self) {
        for bulkhead in self.read().iter() {
            bulkhead.clear();
        }
    }

    /// The server starts with `workers` workers: the default limits follow.
    pub(crate) fn set_workers(&self, workers: usize) {
        self.workers.store(workers, Ordering::Relaxed);
        self.reapply();
    }

    fn reapply(&self) {
        let policies = self.lock_policies().clone();
        let workers = self.workers.load(Ordering::Relaxed);
        for bulkhead in self.read().iter() {
            bulkhead.apply(
                &policies.get(&bulkhead.name).cloned().unwrap_or_default(),
                workers,
            );
            // A limit raised: waiting requests take the new places.
            bulkhead.dispatch();
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Bulkhead>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_policies(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BulkheadPolicy>> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner())
    }
}
