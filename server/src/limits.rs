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
    /// Bytes of a decoded request body at most; more is refused with 413. A plugin's own
    /// `max_body_bytes` may be larger or smaller.
    pub max_body_bytes: usize,
    /// Bodies up to this size are read whole before the handler runs (`Request::body`); a larger
    /// one (by its `Content-Length`, or any `chunked` body when more than this is accepted) is
    /// read by the handler as it arrives (`Request::body_reader`). The default equals the default
    /// `max_body_bytes`, so a handler that never reads a stream sees every body it accepts.
    pub buffer_body_bytes: usize,
    /// A client must send a request body, and read a response, at this many bytes a second at
    /// least once [`min_data_rate_grace`](Self::min_data_rate_grace) has passed, or it is cut off
    /// (like Kestrel's `MinRequestBodyDataRate` and `MinResponseDataRate`); 0 for no minimum.
    /// Unlike a timeout, each trickled byte does not buy a new period.
    pub min_data_rate: u64,
    /// Time a transfer runs before [`min_data_rate`](Self::min_data_rate) applies.
    pub min_data_rate_grace: Duration,
    /// Bytes all connections may hold together in request buffers (partial requests, bodies read
    /// whole) and in responses the socket has not taken. A request whose buffer would grow past
    /// it gets `503` with `Retry-After`, so the server never runs out of memory however many
    /// clients send large bodies at once; requests that fit in a worker's buffer are not held
    /// back.
    pub max_buffered_bytes: usize,
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
    /// Time between SIGTERM and the drain, during which the server still serves but reports
    /// itself not ready (`/readyz` answers `503`), so that a load balancer stops sending before
    /// any connection is refused. 0 (the default): the drain begins at once.
    pub drain_delay: Duration,
    /// Who may say whose a connection is: the PROXY protocol and `X-Forwarded-For`.
    pub proxy: crate::http::proxy::ProxyPolicy,
    /// Response compression (`[compression]`).
    pub compression: crate::http::compress::Compression,
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

    /// The body limits of a request no handler says otherwise of.
    pub fn body(&self) -> BodyLimits {
        BodyLimits {
            max: self.max_body_bytes as u64,
            buffer: self.buffer_body_bytes as u64,
        }
    }

    /// The time by which a transfer that began at `since` (clock ms) must have moved `bytes` to
    /// satisfy [`min_data_rate`](Self::min_data_rate); `u64::MAX` when there is no minimum.
    pub(crate) fn rate_deadline(&self, since: u64, bytes: u64) -> u64 {
        if self.min_data_rate == 0 {
            return u64::MAX;
        }
        let grace = self.min_data_rate_grace.as_millis() as u64;
        since
            .saturating_add(grace)
            .saturating_add(bytes.saturating_mul(1000) / self.min_data_rate)
    }
}

/// The minimum data rate of a transfer that a blocked thread waits on (a streamed body, read or
/// written), counting only the time spent waiting for the peer, as Kestrel does: time the handler
/// spends producing or consuming is its own.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pace {
    waited_ms: u64,
    bytes: u64,
}

impl Pace {
    /// How long (ms) the next wait may last before the peer is too slow; 0 when it already is,
    /// `u64::MAX` when there is no minimum.
    pub fn allowance(&self, limits: &Limits) -> u64 {
        if limits.min_data_rate == 0 {
            return u64::MAX;
        }
        let grace = limits.min_data_rate_grace.as_millis() as u64;
        let earned = self.bytes.saturating_mul(1000) / limits.min_data_rate;
        grace.saturating_add(earned).saturating_sub(self.waited_ms)
    }

    /// The peer moved `bytes`.
    pub fn moved(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// A wait for the peer lasted `ms`.
    pub fn waited(&mut self, ms: u64) {
        self.waited_ms += ms;
    }
}

/// How large a request body may be, and up to what size it is read whole before the handler
/// runs ([`Handler::body_limits`](crate::Handler::body_limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes at most; more is refused with 413.
    pub max: u64,
    /// Bodies up to this many bytes are read whole; larger ones are read as they arrive.
    pub buffer: u64,
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
            buffer_body_bytes: 8 * 1024 * 1024,
            min_data_rate: 240,
            min_data_rate_grace: Duration::from_secs(5),
            max_buffered_bytes: 1 << 30,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            proxy: crate::http::proxy::ProxyPolicy::default(),
            compression: crate::http::compress::Compression::default(),
            handler_timeout: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(1),
            max_lost_workers: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_rate_is_earned_by_bytes_not_by_time() {
        let limits = Limits {
            min_data_rate: 1000,
            min_data_rate_grace: Duration::from_millis(500),
            ..Limits::default()
        };
        // 2000 bytes at 1000 B/s buy two seconds after the grace.
        assert_eq!(limits.rate_deadline(10_000, 2000), 12_500);
        let mut pace = Pace::default();
        assert_eq!(pace.allowance(&limits), 500);
        pace.moved(100);
        pace.waited(550);
        assert_eq!(pace.allowance(&limits), 50);
        pace.waited(100);
        assert_eq!(
            pace.allowance(&limits),
            0,
            "a peer slower than the rate is cut off"
        );
        let off = Limits {
            min_data_rate: 0,
            ..Limits::default()
        };
        assert_eq!(off.rate_deadline(0, 0), u64::MAX);
        assert_eq!(Pace::default().allowance(&off), u64::MAX);
    }
}
