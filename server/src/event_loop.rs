//! The event loop: one thread, one mio `Poll`, and no computation.
//!
//! It accepts connections, turns readiness into queued work for the pool, reads the control
//! channel, and on a tick closes connections whose deadline passed. It never reads a request, calls
//! a handler or loads a plugin. The structure follows mio's `tcp_server` example: a token per
//! source and a table of connections, with `accept` drained until `WouldBlock`.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mio::net::{TcpListener, UnixDatagram};
use mio::{Events, Interest, Poll, Token};

use crate::conn::{Conn, Reading, Slot};
use crate::control::{self, ControlMsg};
use crate::http::encode::{DateCache, Persist, encode_busy};
use crate::pool::STALL_MS;
use crate::shared::Shared;
use crate::tokens::Tokens;

/// What the loop runs on a `Reload` message: it must hand the work to another thread.
pub(crate) type ReloadHook = Box<dyn FnMut(u64) + Send>;

const LISTENER: Token = Token(usize::MAX - 1);
const CONTROL: Token = Token(usize::MAX - 2);
/// How often deadlines are checked, in milliseconds.
const TICK_MS: u64 = 250;
/// The longest the loop waits for the workers to empty the queue before it polls anyway.
const HUNGRY_WAIT_MS: u64 = 10;
/// A handler call running this long (ms) may be waiting, not computing: see `pool.rs`.
const LONG_CALL_MS: u64 = 2;
/// How long accepting pauses after the process ran out of descriptors.
const ACCEPT_RETRY_MS: u64 = 100;

pub(crate) struct EventLoop {
    poll: Poll,
    /// `None` once shutdown began: no new connections.
    listener: Option<TcpListener>,
    control: UnixDatagram,
    /// Connections by token; `None` marks a free token, which `tokens` hands out again.
    conns: Vec<Option<Arc<Slot>>>,
    tokens: Tokens,
    /// Connections open now.
    open: usize,
    shared: Arc<Shared>,
    /// Slots made ready by one poll, queued together.
    batch: Vec<Arc<Slot>>,
    /// Slots that found the queue full, answered `503` by the loop.
    overflow: Vec<Arc<Slot>>,
    /// For the `Date` of those `503`s.
    date: DateCache,
    /// Accepting stopped at `max_connections`; resumes when a connection closes.
    at_capacity: bool,
    /// Accepting paused after `EMFILE`/`ENFILE` until this time (clock ms).
    retry_accept_at: Option<u64>,
    /// Set when shutdown began: the time to give up waiting for connections.
    drain_deadline: Option<u64>,
    reload: Option<ReloadHook>,
    /// Last time running out of descriptors was logged, to log it once a second at most.
    last_exhaustion_log: u64,
}

impl EventLoop {
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        mut control: UnixDatagram,
        shared: Arc<Shared>,
        reload: Option<ReloadHook>,
    ) -> io::Result<EventLoop> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut control, CONTROL, Interest::READABLE)?;
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            control,
            conns: Vec::new(),
            tokens: Tokens::default(),
            open: 0,
            shared,
            batch: Vec::new(),
            overflow: Vec::new(),
            date: DateCache::new(),
            at_capacity: false,
            retry_accept_at: None,
            drain_deadline: None,
            reload,
            last_exhaustion_log: 0,
        })
    }

    /// Runs until shutdown has drained every connection (or the drain timeout passed).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let clock = self.shared.clock;
        let mut next_tick = clock.now() + TICK_MS;
        let mut backlog = false;
        loop {
            let now = clock.now();
            let mut wake_at = self.retry_accept_at.map_or(next_tick, |t| t.min(next_tick));
            if backlog {
                // Work is queued: look again soon, in case its workers are stuck.
                wake_at = wake_at.min(now + STALL_MS);
            }
            let timeout = std::time::Duration::from_millis(wake_at.saturating_sub(now));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let polled = clock.now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    CONTROL => self.read_control()?,
                    Token(token) => {
                        tracing::trace!(conn = token, "ready");
                        if let Some(Some(slot)) = self.conns.get(token) {
                            if event.is_read_closed() || event.is_error() {
                                // The bytes before a FIN end in a short read with no edge after
                                // it: the worker must read on to see the end.
                                slot.hang_up();
                            }
                            if slot.notify(polled) {
                                self.batch.push(Arc::clone(slot));
                            }
                        }
                    }
                }
            }
            // Events of this batch are done: tokens freed during it may go to new connections.
            self.tokens.end_batch();
            self.queue_batch();
            // Let the workers eat before polling again: the next poll then brings a batch.
            let now = clock.now();
            let until_tick = next_tick.saturating_sub(now).clamp(1, HUNGRY_WAIT_MS);
            let shared = &self.shared;
            backlog = shared.queue.wait_until_hungry(
                std::time::Duration::from_millis(until_tick),
                |_sleeping| {
                    // An awake worker is in a handler call that began a while ago: it may be
                    // waiting, and the queue with it.
                    let now = clock.now();
                    shared
                        .workers
                        .records()
                        .iter()
                        .filter_map(|r| r.peek())
                        .any(|(started, _, _)| started + LONG_CALL_MS <= now)
                },
            );

            let now = clock.now();
            if self.retry_accept_at.is_some_and(|t| t <= now) {
                self.retry_accept_at = None;
                self.accept();
            }
            if now >= next_tick {
                // Closes whose datagram was lost are taken here (see `shared::Closed`).
                self.forget_closed();
                self.close_expired(now);
                next_tick = now + TICK_MS;
            }
            if let Some(deadline) = self.drain_deadline {
                if self.open == 0 {
                    return Ok(());
                }
                if now >= deadline {
                    tracing::warn!(open = self.open, "drain timeout: closing what is left");
                    self.close_expired(u64::MAX);
                    return Ok(());
                }
            }
        }
    }

    /// Accepts until `WouldBlock`, the connection limit, or descriptor exhaustion.
    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        let limits = self.shared.limits.load();
        loop {
            if self.open >= limits.max_connections {
                // Edge-triggered: the backlog is re-read when a connection closes.
                self.at_capacity = true;
                return;
            }
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_exhaustion(&e) => {
                    // Retrying at once would spin: the backlog still holds the connection.
                    let now = self.shared.clock.now();
                    if now >= self.last_exhaustion_log + 1000 {
                        self.last_exhaustion_log = now;
                        tracing::warn!(error = %e, open = self.open, "cannot accept: out of descriptors");
                    }
                    self.retry_accept_at = Some(now + ACCEPT_RETRY_MS);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that client is gone, others may wait.
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            };
            if limits.proxy.protocol && !limits.proxy.trusted.contains(peer.ip()) {
                // Only the balancers may connect; they say whose each connection is.
                tracing::debug!(%peer, "refused: not a trusted source of PROXY protocol headers");
                continue;
            }
            // On Linux the socket inherited TCP_NODELAY from the listener (see `server::bind`).
            #[cfg(not(target_os = "linux"))]
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let token = self.tokens.take();
            if token == self.conns.len() {
                self.conns.push(None);
            }
            // Readable only: write interest is added by a worker whose write would block, so a new
            // connection costs no wake-up before its first bytes arrive.
            let registered =
                self.poll
                    .registry()
                    .register(&mut stream, Token(token), Interest::READABLE);
            if let Err(e) = registered {
                tracing::warn!(%peer, error = %e, "cannot register connection");
                self.tokens.give_back(token);
                continue;
            }
            let clock = self.shared.clock;
            let now = clock.now();
            let deadline = clock.after(now, limits.header_timeout);
            let budget = Arc::clone(&self.shared.buffered);
            let mut conn = Conn::new(stream, (token, peer), now, budget);
            if limits.proxy.protocol {
                conn.reading = Reading::Proxy;
            }
            self.conns[token] = Some(Arc::new(Slot::new(token, conn, deadline)));
            self.open += 1;
            self.shared.stats.open.store(self.open, Ordering::Relaxed);
            self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(conn = token, %peer, "accepted");
        }
    }

    fn read_control(&mut self) -> io::Result<()> {
        let mut messages = Vec::new();
        control::drain(&self.control, |msg| messages.push(msg))?;
        for msg in messages {
            match msg {
                ControlMsg::Closed(_) => self.forget_closed(),
                ControlMsg::Shutdown => self.begin_drain(),
                ControlMsg::Reload(tag) => match self.reload.as_mut() {
                    Some(hook) => hook(tag),
                    None => tracing::debug!(tag, "reload asked, but no reload hook is set"),
                },
            }
        }
        Ok(())
    }

    /// Stops accepting and gives every idle connection a last turn: the worker answers what was
    /// received and closes.
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        tracing::info!(open = self.open, "shutting down: draining connections");
        self.shared.draining.store(true, Ordering::Release);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let clock = self.shared.clock;
        self.drain_deadline =
            Some(clock.after(clock.now(), self.shared.limits.load().drain_timeout));
        let now = clock.now();
        for slot in self.conns.iter().flatten() {
            if slot.notify(now) {
                self.batch.push(Arc::clone(slot));
            }
        }
        self.queue_batch();
    }

    /// Hands the batch to the workers; what does not fit in the queue is refused with `503`,
    /// except connections in the middle of an exchange (see [`refuse`](Self::refuse)).
    fn queue_batch(&mut self) {
        let capacity = if self.drain_deadline.is_some() {
            // Draining: every connection gets its last turn, however many there are.
            usize::MAX
        } else {
            self.shared.limits.load().max_queued
        };
        self.shared
            .queue
            .push_batch(&mut self.batch, capacity, &mut self.overflow);
        let mut busy = Vec::new();
        for slot in std::mem::take(&mut self.overflow) {
            if !self.refuse(&slot) {
                busy.push(slot);
            }
        }
        // Work already under way (a response half written, a lingering close) is finished, over
        // the queue's bound: a 503 in the middle of it would corrupt the response.
        self.shared
            .queue
            .push_batch(&mut busy, usize::MAX, &mut self.overflow);
    }

    /// Answers a connection the workers have no room for: `503` with `Retry-After`, then close. The
    /// loop owns the slot (it queued it, so no worker has it). Its pending input is read and
    /// dropped first, so that closing does not reset the connection under the response.
    ///
    /// Returns `false`, doing nothing, for a connection in the middle of an exchange (output still
    /// to write, or closing): that one must go to a worker.
    fn refuse(&mut self, slot: &Slot) -> bool {
        let mut conn = slot.conn();
        if conn.mid_exchange() {
            return false;
        }
        if let Some(stream) = conn.stream.as_mut() {
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                match stream.read(&mut sink) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            let mut out = Vec::with_capacity(256);
            let why = "server busy, retry shortly\n";
            encode_busy(&mut out, why, false, Persist::Close, self.date.now());
            let _ = stream.write(&out);
            tracing::debug!(peer = %conn.peer, "refused: the work queue is full");
            self.shared
                .stats
                .refused_busy
                .fetch_add(1, Ordering::Relaxed);
        }
        *conn = Conn::closed(conn.token, conn.peer);
        drop(conn);
        slot.close();
        self.forget(slot.token);
        true
    }

    /// Closes idle connections whose deadline is before `now` (all idle ones for `u64::MAX`).
    fn close_expired(&mut self, now: u64) {
        for token in 0..self.conns.len() {
            let expired = match &self.conns[token] {
                Some(slot) => slot.claim_if_expired(now),
                None => false,
            };
            if expired {
                if let Some(slot) = &self.conns[token] {
                    let mut conn = slot.conn();
                    tracing::debug!(conn = token, peer = %conn.peer, "closing: timed out");
                    *conn = Conn::closed(conn.token, conn.peer);
                }
                self.forget(token);
            }
        }
    }

    /// Forgets the connections workers closed.
    fn forget_closed(&mut self) {
        for token in self.shared.take_closed() {
            self.forget(token);
        }
    }

    /// Drops a closed connection from the table and resumes accepting if it was at capacity.
    fn forget(&mut self, token: usize) {
        if let Some(entry) = self.conns.get_mut(token)
            && entry.take().is_some()
        {
            self.tokens.give_back(token);
            self.open -= 1;
            self.shared.stats.open.store(self.open, Ordering::Relaxed);
        }
        if self.at_capacity && self.open < self.shared.limits.load().max_connections {
            self.at_capacity = false;
            self.accept();
        }
    }
}

/// Errors that mean "out of descriptors or memory", after which accepting must pause.
fn is_exhaustion(e: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}
