//! One client connection: the [`Slot`] the event loop and the workers share (`slot.rs`), the
//! [`Conn`] inside it that only its current owner touches, and the state the connection is in.
//!
//! A connection's life is two state machines, as hyper's `proto/h1` keeps them: what it is
//! [`Reading`] (a head, a body, nothing more) and what it is [`Writing`] (nothing owed, bytes the
//! socket has not taken). The handler call itself is not a state a connection is left in: it runs
//! on the worker that owns the connection and ends before the worker lets go. What the states do
//! is in `worker/`; the read buffer is `buf.rs`.

mod buf;
mod slot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mio::net::TcpStream;

pub(crate) use buf::InBuf;
pub(crate) use slot::Slot;

use crate::bulkhead::Admission;
use crate::http::body::Chunked;
use crate::reply::FileRun;

/// What a connection keeps between two turns of a worker. An idle keep-alive connection holds a
/// socket and empty buffers: no allocation.
pub(crate) struct Conn {
    /// `None` once closed.
    pub stream: Option<TcpStream>,
    /// Its key in the loop's table, also its mio token.
    pub token: usize,
    pub peer: SocketAddr,
    /// Where `peer` comes from.
    pub peer_from: PeerFrom,
    /// Received bytes of a request not yet complete. Empty (no allocation) between requests.
    pub input: InBuf,
    pub reading: Reading,
    pub writing: Writing,
    /// When it was accepted: the deadline for its first request counts from here.
    pub accepted: u64,
    /// Requests answered on it.
    pub answered: u64,
    /// Write interest is registered with the loop's poller (added the first time a write would
    /// block, and kept: a spurious writable edge costs less than a second `epoll_ctl`).
    pub write_interest: bool,
    /// What the next request is owed after waiting in a bulkhead's queue.
    pub admission: Admission,
    /// The output the socket did not take at once, under way since then: for the minimum data
    /// rate. `None` while nothing is owed.
    pub transfer: Option<Transfer>,
    /// What it holds of the server-wide buffer budget.
    pub charge: Charge,
}

/// Where a connection's peer address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerFrom {
    /// The socket.
    Socket,
    /// A PROXY protocol header that named the client.
    ProxyHeader,
    /// A PROXY protocol header that named no client (`LOCAL`, `UNKNOWN`): the peer is the
    /// balancer, and its requests' `X-Forwarded-For` is not taken (it would be the client's
    /// own word).
    ProxyWithout,
}

/// Bytes a connection keeps without charge: a worker's read buffer.
const FREE_BYTES: usize = 16 * 1024;

/// Bytes of the server-wide buffer budget ([`Limits::max_buffered_bytes`]) one connection holds,
/// given back when it is dropped (closing a connection replaces its `Conn`).
///
/// [`Limits::max_buffered_bytes`]: crate::Limits::max_buffered_bytes
#[derive(Debug, Default)]
pub(crate) struct Charge {
    budget: Option<Arc<AtomicUsize>>,
    bytes: usize,
}

impl Charge {
    pub fn new(budget: Arc<AtomicUsize>) -> Charge {
        Charge {
            budget: Some(budget),
            bytes: 0,
        }
    }

    /// The connection now holds `bytes`.
    pub fn set(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            if bytes > self.bytes {
                budget.fetch_add(bytes - self.bytes, Ordering::Relaxed);
            } else if bytes < self.bytes {
                budget.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
            }
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// An output that goes out slower than it was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transfer {
    /// When the socket first refused some of it (clock ms).
    pub since: u64,
    /// Bytes the socket took since.
    pub sent: u64,
}

/// Where a connection is in reading requests.
#[derive(Debug)]
pub(crate) enum Reading {
    /// Waiting for the PROXY protocol header a trusted balancer sends before any request
    /// (`http/proxy.rs`).
    Proxy,
    /// Waiting for a request head, or for the rest of one. `since`: when its first byte arrived
    /// (the header timeout counts from there), 0 while nothing of it has. `scanned`: bytes of it
    /// already searched for the head's end, so that a head trickled in small pieces is searched
    /// once, not parsed again from its start on every read.
    Head { since: u64, scanned: usize },
    /// The head is in and the body is on its way.
    Body {
        since: u64,
        /// Progress through a `chunked` body, relative to the start of the input's current
        /// request; `None` for a body of known length.
        chunked: Option<Chunked>,
        /// `100 Continue` was sent for this request.
        continue_sent: bool,
    },
    /// No more requests are read: close once the output is written.
    Done,
    /// No more requests are read, and after the output is written the connection is
    /// half-closed and what still arrives is dropped until `until`, so that the client reads the
    /// error response instead of a reset (RFC 9112 §9.6).
    Discard { until: u64 },
}

/// Where a connection is in writing responses.
#[derive(Debug)]
pub(crate) enum Writing {
    /// Nothing is owed.
    Clear,
    /// Encoded responses the socket has not taken yet.
    Owed(Vec<u8>),
    /// Bytes (the head of a file response, and whatever preceded it), then the rest of the file,
    /// sent with `sendfile(2)`. Requests pipelined behind it wait in the input.
    File { bytes: Vec<u8>, file: FileRun },
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        (token, peer): (usize, SocketAddr),
        accepted: u64,
        budget: Arc<AtomicUsize>,
    ) -> Conn {
        Conn {
            stream: Some(stream),
            accepted,
            charge: Charge::new(budget),
            ..Conn::closed(token, peer)
        }
    }

    /// Charges the buffers it keeps between turns to the server-wide budget: what passes
    /// [`FREE_BYTES`] (a partial head, a small response left unsent costs nothing, and no atomic).
    pub fn recharge(&mut self) {
        let owed = match &self.writing {
            Writing::Clear => 0,
            Writing::Owed(bytes) | Writing::File { bytes, .. } => bytes.len(),
        };
        self.charge
            .set((self.input.data.len() + owed).saturating_sub(FREE_BYTES));
    }

    /// A connection whose socket is closed and whose buffers are freed.
    pub fn closed(token: usize, peer: SocketAddr) -> Conn {
        Conn {
            stream: None,
            token,
            peer,
            peer_from: PeerFrom::Socket,
            input: InBuf::default(),
            reading: Reading::HEAD,
            writing: Writing::Clear,
            accepted: 0,
            answered: 0,
            write_interest: false,
            admission: Admission::Open,
            transfer: None,
            charge: Charge::default(),
        }
    }

    /// Whether the connection is in the middle of an exchange that only a worker may finish: a
    /// response half written, or a close under way.
    pub fn mid_exchange(&self) -> bool {
        !matches!(self.writing, Writing::Clear)
            || matches!(self.reading, Reading::Done | Reading::Discard { .. })
    }
}

impl Reading {
    /// Between requests: nothing of the next one yet.
    pub const HEAD: Reading = Reading::Head {
        since: 0,
        scanned: 0,
    };

    /// When the current request's first byte arrived; 0 when none has (or none is read).
    pub fn since(&self) -> u64 {
        match self {
            Reading::Head { since, .. } | Reading::Body { since, .. } => *since,
            Reading::Proxy | Reading::Done | Reading::Discard { .. } => 0,
        }
    }

    /// Worker: the current request's head is in. Moves to [`Reading::Body`] unless there already,
    /// and returns its `chunked` progress and whether `100 Continue` was sent.
    ///
    /// # Panics
    /// When no request is being read: the worker never parses a connection in `Done` or
    /// `Discard`.
    pub fn body(&mut self) -> (&mut Option<Chunked>, &mut bool) {
        if let Reading::Head { since, .. } = *self {
            *self = Reading::Body {
                since,
                chunked: None,
                continue_sent: false,
            };
        }
        match self {
            Reading::Body {
                chunked,
                continue_sent,
                ..
            } => (chunked, continue_sent),
            _ => unreachable!("a request body is read only while reading requests"),
        }
    }
}
