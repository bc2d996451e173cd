//! The watchdog: one thread that wakes every [`TICK_MS`], finds handler calls past their deadline
//! and answers their clients, and turns away requests that waited too long in a bulkhead's queue.
//! No timer is set per request: each worker's [`Record`] says what it runs, and the watchdog reads
//! them all.
//!
//! A call past its deadline is claimed (`running.rs`), its client gets a `504 Gateway Timeout`
//! (or, when earlier pipelined answers are still unwritten, a closed connection), the socket leaves
//! the event loop, and the thread is written off and replaced (`workers.rs`). Whatever the handler
//! returns later is discarded.

use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use mio::unix::SourceFd;

use crate::bulkhead::BORROW_MS;
use crate::http::encode::{DateCache, encode_error};
use crate::running::{Claimed, Record};
use crate::shared::Shared;

/// How often the watchdog looks, in milliseconds: a late call is answered within this of its
/// deadline.
pub(crate) const TICK_MS: u64 = 100;
/// How often "the pool is exhausted" is logged while it is.
const EXHAUSTED_LOG_MS: u64 = 60_000;

/// The running watchdog; stops when dropped.
pub(crate) struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog thread.
    ///
    /// # Errors
    /// The thread cannot be created.
    pub fn spawn(shared: Arc<Shared>) -> std::io::Result<Watchdog> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watch(&shared, &flag))?;
        Ok(Watchdog {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(shared: &Arc<Shared>, stop: &(Mutex<bool>, Condvar)) {
    let mut date = DateCache::new();
    let mut last_exhausted_log: Option<u64> = None;
    let mut pinned = crate::plugin::pinned_epoch();
    loop {
        {
            let stopped = stop.0.lock().unwrap_or_else(|e| e.into_inner());
            let (stopped, _) = stop
                .1
                .wait_timeout_while(stopped, Duration::from_millis(TICK_MS), |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stopped {
                return;
            }
        }
        // A bug here must not end the watchdog: every deadline depends on it.
        let tick = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tick(shared, &mut date, &mut last_exhausted_log);
        }));
        if tick.is_err() {
            tracing::error!("the watchdog's tick panicked; it goes on");
        }
        // A plugin library outlived its generation, pinned by thread-local destructors pending on
        // the workers (`plugin/pinned.rs`): fresh threads take their place, and the old ones'
        // destructors run as they exit.
        let now_pinned = crate::plugin::pinned_epoch();
        if now_pinned != pinned {
            pinned = now_pinned;
            shared.queue.recycle();
        }
    }
}

/// One look at every worker and bulkhead.
fn tick(shared: &Arc<Shared>, date: &mut DateCache, last_exhausted_log: &mut Option<u64>) {
    let now = shared.clock.now();
    let limits = shared.limits.load();
    for record in shared.workers.records().iter() {
        let Some((started, deadline, bulkhead)) = record.peek() else {
            continue;
        };
        if now >= started + BORROW_MS
            && let Some(b) = shared.bulkheads.by_id(bulkhead)
        {
            b.saw_slow();
        }
        if now > deadline
            && let Some(claimed) = record.claim(Some(now))
        {
            time_out(shared, record, claimed, now, date.now());
        }
    }
    for bulkhead in shared.bulkheads.all() {
        bulkhead.expire(now, limits.queue_timeout);
    }
    if shared.workers.exhausted(shared.max_lost_workers()) {
        if last_exhausted_log.is_none_or(|t| now >= t + EXHAUSTED_LOG_MS) {
            *last_exhausted_log = Some(now);
            tracing::error!(
                stuck = shared.workers.lost(),
                max_lost_workers = shared.max_lost_workers(),
                workers = shared.workers_wanted,
                "more worker threads are stuck in handlers past their deadline than may be \
                 replaced: the pool is short of them until the process is replaced"
            );
        }
    } else {
        *last_exhausted_log = None;
    }
}

/// Answers a claimed call's client, takes its socket out of the loop, and writes the thread off.
fn time_out(shared: &Arc<Shared>, record: &Record, call: Claimed, now: u64, date: &[u8]) {
    let answered = call.clean && send_504(call.fd, call.head, date);
    // SAFETY: the claim keeps `call.fd` open (its worker cannot leave the call); shutting down the
    // write side only sends a FIN after the 504.
    unsafe { libc::shutdown(call.fd, libc::SHUT_WR) };
    // The worker keeps the descriptor until its handler returns; events for it must not reach a
    // token the loop will give to another connection.
    if let Err(e) = shared.registry.deregister(&mut SourceFd(&call.fd)) {
        tracing::debug!(error = %e, "cannot deregister a timed-out connection");
    }
    shared.report_closed(call.token);
    let bulkhead = shared.bulkheads.by_id(call.bulkhead);
    let name = bulkhead.as_ref().map_or("-", |b| b.name());
    // Counted lost before the worker can come back and count itself found.
    let max = shared.max_lost_workers();
    shared.workers.lose();
    if let Some(b) = &bulkhead {
        b.count_lost(true);
    }
    // Then the worker may go: it must not wait on the spawn and the log line below.
    record.written_off(call.bulkhead, format!("plugin {name}: {}", call.request));
    let replaced = shared.workers.top_up(shared, max);
    tracing::error!(
        plugin = name,
        request = %call.request,
        ran_ms = now.saturating_sub(call.started),
        answered = if answered { "504" } else { "connection closed" },
        replaced,
        stuck = shared.workers.lost(),
        max_lost_workers = max,
        "a handler ran past its deadline: its client was answered without it, and its worker \
         thread is written off"
    );
}

/// Writes the `504` in one non-blocking send; whether all of it went.
fn send_504(fd: RawFd, head: bool, date: &[u8]) -> bool {
    let mut out = Vec::with_capacity(256);
    encode_error(&mut out, 504, "the handler did not answer in time", date);
    if head {
        // RFC 9110 §9.3.2: the headers of the GET answer, no body.
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(out.len(), |i| i + 4);
        out.truncate(end);
    }
    // SAFETY: the claim keeps `fd` open; `out` is valid for `out.len()` bytes. MSG_NOSIGNAL: a
    // client that left gives EPIPE, not SIGPIPE.
    let sent = unsafe {
        libc::send(
            fd,
            out.as_ptr().cast(),
            out.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).is_ok_and(|n| n == out.len())
}
