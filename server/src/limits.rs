//! [`Limits`]: every bound and timeout the server enforces, with defaults a public server can use.
//!
//! The worker checks sizes while parsing (`http/parse.rs`, `http/body.rs`); the event loop checks
//! the timeouts on its tick (`event_loop.rs`), the watchdog the handler deadlines (`watchdog.rs`).
//! The host fills this from `config.toml`.

use std::time::Duration;

/// Bounds on what one client may make the server hold, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; at the limit the loop stops accepting until one closes.
    pub max_connections: usize,
    /// Connections waiting for a worker at most. Past it, a ready connection is answered `503`
    /// with `Retry-After` at once instead of waiting behind the others.
    pub max_queued: usize,
    /// Bytes of the request head (request line and headers) at most; more is refused with 431.
    pub max_head_bytes: usize,
    /// Bytes of the request target at most; more is refused with 414.
    pub max_target_bytes: usize,
    /// Header fields at most (at most [`Limits::MAX_HEADERS`]); more is refused with 431.
    pub max_headers: usize,
    /// Bytes of a decoded request body at most; more is refused with 413.
    pub max_body_bytes: usize,
    /// Time from the first byte of a request to the end of its head. A client that trickles its
    /// headers slower than this is cut off.
    pub header_timeout: Duration,
    /// Time a request body may go without a byte arriving.
    pub body_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    pub keep_alive_timeout: Duration,
    /// Time a response may wait for the client to read it.
    pub write_timeout: Duration,
    /// Time graceful shutdown waits for requests in flight before it closes what is left (and,
    /// if a handler is still running then, returns anyway, naming it).
    pub drain_timeout: Duration,
    /// Time from receiving a request to its answer. A handler still running past it is written
    /// off: its client gets `504` (see `watchdog.rs`); a request that waited for a worker past it
    /// gets `503` without running.
    pub handler_timeout: Duration,
    /// Time a request may wait for a place in a full bulkhead before it gets `503`.
    pub queue_timeout: Duration,
    /// Worker threads stuck past their deadline that are replaced, so the pool keeps its size;
    /// `None` for as many as there are workers. Past it the pool shrinks until the process is
    /// replaced.
    pub max_lost_workers: Option<usize>,
}

impl Limits {
    /// The most header fields [`Limits::max_headers`] can allow.
    pub const MAX_HEADERS: usize = 128;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_queued: 1024,
            max_head_bytes: 16 * 1024,
            max_target_bytes: 8 * 1024,
            max_headers: 100,
            max_body_bytes: 8 * 1024 * 1024,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            handler_timeout: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(1),
            max_lost_workers: None,
        }
    }
}
