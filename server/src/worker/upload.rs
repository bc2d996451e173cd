//! A request body read as it arrives: the [`BodySource`] a handler reads through
//! (`Request::body_reader`), over the connection's socket, for a body larger than the route
//! buffers. The handler's worker waits for the client (the handler owns the thread anyway),
//! bounded by the body timeout and by the minimum data rate, which each byte does not reset.
//!
//! A body of known length is read straight into the handler's buffer; a `chunked` one through a
//! small buffer of its own, decoded in place (`http/body.rs`). `100 Continue` goes out on the
//! first read, so a handler that answers without reading never makes the client send.

use std::ffi::c_void;
use std::io::{ErrorKind, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use mio::net::TcpStream;
use plugin_api::abi::BodySource;

use super::io::{Wait, push_blocking, wait_for};
use crate::Limits;
use crate::clock::Clock;
use crate::http::body::Chunked;
use crate::http::encode::CONTINUE;
use crate::http::parse::Reject;
use crate::running::Record;

/// The buffer a `chunked` body is read and decoded through.
const CHUNKED_BUF: usize = 16 * 1024;

/// One streamed request body; see the module doc.
pub(super) struct Upload<'w> {
    socket: &'w TcpStream,
    /// Body bytes (raw, for `chunked`) that arrived with the head, and how many were used.
    prefix: &'w [u8],
    used: usize,
    decode: Decode,
    /// `100 Continue` is owed before the first read.
    expect: bool,
    limits: &'w Limits,
    clock: &'w Clock,
    /// For the watchdog: a body that keeps arriving keeps its handler's call alive.
    record: &'w Record,
    max: u64,
    /// When reading began, and the raw bytes read from the socket since: the data rate.
    since: u64,
    raw: u64,
    state: State,
    /// A read is under way: a second thread's read is refused.
    busy: AtomicBool,
}

enum Decode {
    Length {
        remaining: u64,
    },
    Chunked {
        decoder: Chunked,
        /// `buf[served..decoder.decoded()]` is decoded and not yet handed out;
        /// `buf[raw..end]` is raw input not yet decoded.
        buf: Vec<u8>,
        served: usize,
        raw: usize,
        end: usize,
    },
}

/// What the worker knows of a body to stream before the call.
pub(super) struct Spec<'b> {
    /// Body bytes (raw, for `chunked`) that arrived with the head.
    pub prefix: &'b [u8],
    /// `None` for `chunked`.
    pub length: Option<u64>,
    /// `100 Continue` is owed on the first read.
    pub expect: bool,
    /// The route's limit.
    pub max: u64,
}

/// Where the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Reading,
    /// Read to its end.
    Done,
    /// It cannot be read: the client gets this status (unless the handler's answer went out).
    Failed(Reject),
}

impl<'w> Upload<'w> {
    /// The body `spec` says, on `socket`.
    pub fn new(
        socket: &'w TcpStream,
        spec: Spec<'w>,
        limits: &'w Limits,
        clock: &'w Clock,
        record: &'w Record,
    ) -> Upload<'w> {
        let decode = match spec.length {
            Some(remaining) => Decode::Length { remaining },
            None => Decode::Chunked {
                decoder: Chunked::default(),
                buf: vec![0; CHUNKED_BUF],
                served: 0,
                raw: 0,
                end: 0,
            },
        };
        Upload {
            socket,
            prefix: spec.prefix,
            used: 0,
            decode,
            expect: spec.expect,
            limits,
            clock,
            record,
            max: spec.max,
            since: clock.now(),
            raw: 0,
            state: State::Reading,
            busy: AtomicBool::new(false),
        }
    }

    /// The C source over this upload, valid while it is borrowed.
    pub fn source(&mut self) -> BodySource {
        BodySource {
            ctx: (self as *mut Upload<'_>).cast(),
            callback_read,
        }
    }

    /// Where the body is now.
    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes of the prefix that belong to this body: where the next request starts. Only
    /// meaningful once [`State::Done`]; `None` when input past the body was read into the
    /// upload's own buffer (the connection then closes rather than lose it).
    pub fn consumed(&self) -> Option<usize> {
        match &self.decode {
            Decode::Length { .. } => Some(self.used),
            Decode::Chunked { raw, end, .. } => (raw == end).then_some(self.used),
        }
    }

    /// Whether the whole body has been handed out.
    fn complete(&self) -> bool {
        match &self.decode {
            Decode::Length { remaining } => *remaining == 0,
            Decode::Chunked {
                decoder, served, ..
            } => decoder.is_done() && *served == decoder.decoded(),
        }
    }

    /// Reads up to `out.len()` bytes of the body; 0 at its end.
    fn read(&mut self, out: &mut [u8]) -> Result<usize, Reject> {
        if self.expect {
            self.expect = false;
            let timeout = self.limits.write_timeout;
            if push_blocking(self.socket, CONTINUE, || Wait::For(timeout), |_| {}).is_err() {
                return Err(Reject::new(400, "the client went away"));
            }
        }
        let mut wire = Wire {
            socket: self.socket,
            prefix: self.prefix,
            used: &mut self.used,
            limits: self.limits,
            clock: self.clock,
            record: self.record,
            since: self.since,
            raw: &mut self.raw,
        };
        match &mut self.decode {
            Decode::Length { remaining } => {
                let want = out
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                if want == 0 {
                    return Ok(0);
                }
                let n = wire.take(&mut out[..want])?;
                *remaining -= n as u64;
                Ok(n)
            }
            Decode::Chunked {
                decoder,
                buf,
                served,
                raw,
                end,
            } => loop {
                if *served < decoder.decoded() {
                    let n = out.len().min(decoder.decoded() - *served);
                    out[..n].copy_from_slice(&buf[*served..*served + n]);
                    *served += n;
                    return Ok(n);
                }
                if decoder.is_done() {
                    return Ok(0);
                }
                // Everything decoded was handed out: decode from the buffer's start again.
                decoder.restart();
                *served = 0;
                buf.copy_within(*raw..*end, 0);
                *end -= *raw;
                *raw = 0;
                let max = usize::try_from(self.max).unwrap_or(usize::MAX);
                if *end > 0 {
                    let before = *raw;
                    *raw = decoder.decode(&mut buf[..*end], *raw, max)?;
                    if decoder.decoded() > 0 || decoder.is_done() || *raw != before {
                        continue;
                    }
                }
                // What is here does not decode further (a chunk's size line cut in two): more.
                let n = wire.take(&mut buf[*end..])?;
                *end += n;
                *raw = decoder.decode(&mut buf[..*end], *raw, max)?;
            },
        }
    }
}

/// Where a body's bytes come from: what arrived with the head, then the socket.
struct Wire<'a, 'w> {
    socket: &'w TcpStream,
    prefix: &'w [u8],
    used: &'a mut usize,
    limits: &'w Limits,
    clock: &'w Clock,
    record: &'w Record,
    since: u64,
    raw: &'a mut u64,
}

impl Wire<'_, '_> {
    /// Fills some of `out`: from the prefix while it lasts, then from the socket, waiting for it
    /// within the body timeout and the data rate. A client that closes mid-body or is too slow
    /// fails the body.
    fn take(&mut self, out: &mut [u8]) -> Result<usize, Reject> {
        if *self.used < self.prefix.len() {
            let n = out.len().min(self.prefix.len() - *self.used);
            out[..n].copy_from_slice(&self.prefix[*self.used..*self.used + n]);
            *self.used += n;
            return Ok(n);
        }
        loop {
            match (&*self.socket).read(out) {
                Ok(0) => {
                    return Err(Reject::new(
                        400,
                        "the client closed in the middle of the body",
                    ));
                }
                Ok(n) => {
                    *self.raw += n as u64;
                    // Progress: the handler's deadline counts again from now.
                    self.record.progress(self.clock.now());
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let now = self.clock.now();
                    let by_rate = self.limits.rate_deadline(self.since, *self.raw);
                    let by_idle = self.clock.after(now, self.limits.body_timeout);
                    let until = by_rate.min(by_idle);
                    // The wait is bounded here, not by the handler's deadline.
                    self.record.extend_to(until.saturating_add(1000));
                    if until <= now || !wait_for(self.socket, libc::POLLIN, until - now) {
                        tracing::debug!(
                            received = *self.raw,
                            "request body too slow: the client is cut off"
                        );
                        return Err(Reject::new(408, "the request body arrived too slowly"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Reject::new(400, "the connection failed mid-body")),
            }
        }
    }
}

unsafe extern "C" fn callback_read(ctx: *mut c_void, buf: *mut u8, len: usize) -> isize {
    // Never unwind into the plugin.
    let read = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `Upload` of `Upload::source`, alive during the handler's call;
        // `busy` below keeps a second thread out of it (a shared read only, until it is ours).
        let upload = unsafe { &*ctx.cast::<Upload<'_>>() };
        if upload.busy.swap(true, Ordering::Acquire) {
            return -1;
        }
        // SAFETY: as above; `busy` makes this the only reference in use. The plugin lends `buf`,
        // writable for `len` bytes, for this call (ABI contract).
        let (upload, out) = unsafe {
            let out = if len == 0 || buf.is_null() {
                &mut [][..]
            } else {
                std::slice::from_raw_parts_mut(buf, len)
            };
            (&mut *ctx.cast::<Upload<'_>>(), out)
        };
        let n = match upload.state {
            State::Done => Ok(0),
            State::Failed(_) => Err(()),
            State::Reading => match upload.read(out) {
                Ok(n) => {
                    if upload.complete() {
                        upload.state = State::Done;
                    }
                    Ok(n)
                }
                Err(reject) => {
                    upload.state = State::Failed(reject);
                    Err(())
                }
            },
        };
        upload.busy.store(false, Ordering::Release);
        n.map_or(-1, |n| n as isize)
    }));
    read.unwrap_or(-1)
}
