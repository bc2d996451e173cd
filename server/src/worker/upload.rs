//! A request body read as it arrives: the [`BodySource`] a handler reads through
//! (`Request::body_reader`), over the connection's socket, for a body larger than the route
//! buffers. The handler's worker waits for the client (the handler owns the thread anyway),
//! bounded by the body timeout and by the minimum data rate, which each byte does not reset.
//!
//! A body of known length is read straight into the handler's buffer; a `chunked` one through a
//! small buffer of its own, decoded in place (`http/body.rs`). `100 Continue` goes out on the
//! first read, so a handler that answers without reading never makes the client send.

use std::cell::{Cell, UnsafeCell};
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
use crate::limits::Pace;
use crate::running::Record;

/// The buffer a `chunked` body is read and decoded through.
const CHUNKED_BUF: usize = 16 * 1024;

/// One streamed request body; see the module doc.
pub(super) struct Upload<'w> {
    socket: &'w TcpStream,
    /// Body bytes (raw, for `chunked`) that arrived with the head, and how many were used.
    prefix: &'w [u8],
    used: usize,
    /// The chunked buffer's last fill came from the prefix (so what is left of it past the body
    /// is prefix too).
    filled_from_prefix: bool,
    decode: Decode,
    /// `100 Continue` is owed before the first read.
    expect: bool,
    limits: &'w Limits,
    clock: &'w Clock,
    /// For the watchdog: a body that keeps arriving keeps its handler's call alive.
    record: &'w Record,
    max: u64,
    /// The client's pace, for the minimum data rate.
    pace: Pace,
    /// Some of the answer went out (a stream): `100 Continue` may no longer be sent.
    answered: &'w Cell<bool>,
    state: State,
}

/// An [`Upload`] as the handler reads it: `busy` keeps a second thread out.
pub(super) struct Source<'w> {
    busy: AtomicBool,
    upload: UnsafeCell<Upload<'w>>,
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

/// How a streamed body ended, for the turn after its call.
pub(super) struct Outcome {
    pub state: State,
    /// Bytes of the input's prefix the body used.
    pub used: usize,
    /// Bytes read past the body's end: the start of the next request.
    pub past: Vec<u8>,
    /// Some of the answer went out during the call: no error status may follow it.
    pub answered: bool,
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
        (limits, clock): (&'w Limits, &'w Clock),
        record: &'w Record,
        answered: &'w Cell<bool>,
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
            filled_from_prefix: false,
            decode,
            expect: spec.expect,
            limits,
            clock,
            record,
            max: spec.max,
            pace: Pace::default(),
            answered,
            state: State::Reading,
        }
    }

    /// How the body ended; `answered`: some of the answer went out during the call.
    pub fn outcome(&self, answered: bool) -> Outcome {
        // Where the next request starts: after `used` bytes of the prefix, then what the upload
        // read past the body's end into its own buffer (a `chunked` body).
        let (used, past): (usize, &[u8]) = match &self.decode {
            Decode::Length { .. } => (self.used, &[]),
            Decode::Chunked { buf, raw, end, .. } => {
                let past = &buf[*raw..*end];
                if self.filled_from_prefix {
                    // Still in the prefix: hand it back there.
                    (self.used - past.len(), &[])
                } else {
                    (self.used, past)
                }
            }
        };
        Outcome {
            state: self.state,
            used,
            past: past.to_vec(),
            answered,
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
        // Once the answer is under way an interim response would land inside it: then none is
        // sent, and the client sends the body when its own wait for one ends (RFC 9110 §10.1.1).
        if std::mem::take(&mut self.expect) && !self.answered.get() {
            let timeout = self.limits.write_timeout;
            let wait = || Wait::For(timeout);
            if push_blocking(self.socket, CONTINUE, wait, |_| {}, |_| {}).is_err() {
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
            pace: &mut self.pace,
            filled_from_prefix: &mut self.filled_from_prefix,
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
    pace: &'a mut Pace,
    /// The last fill came from the prefix, not the socket.
    filled_from_prefix: &'a mut bool,
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
            *self.filled_from_prefix = true;
            return Ok(n);
        }
        *self.filled_from_prefix = false;
        loop {
            match (&*self.socket).read(out) {
                Ok(0) => {
                    return Err(Reject::new(
                        400,
                        "the client closed in the middle of the body",
                    ));
                }
                Ok(n) => {
                    self.pace.moved(n);
                    // Progress: the handler's deadline counts again from now.
                    self.record.progress(self.clock.now());
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let now = self.clock.now();
                    let idle = self.limits.body_timeout.as_millis() as u64;
                    let wait = self.pace.allowance(self.limits).min(idle);
                    // The wait is bounded here, not by the handler's deadline.
                    self.record
                        .extend_to(now.saturating_add(wait).saturating_add(1000));
                    let ready = wait > 0 && wait_for(self.socket, libc::POLLIN, wait);
                    self.pace.waited(self.clock.now().saturating_sub(now));
                    if !ready {
                        tracing::debug!("request body too slow: the client is cut off");
                        return Err(Reject::new(408, "the request body arrived too slowly"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Reject::new(400, "the connection failed mid-body")),
            }
        }
    }
}

impl<'w> Source<'w> {
    pub fn new(upload: Upload<'w>) -> Source<'w> {
        Source {
            busy: AtomicBool::new(false),
            upload: UnsafeCell::new(upload),
        }
    }

    /// The C source over this upload, valid while it is borrowed (and not moved).
    pub fn source(&self) -> BodySource {
        BodySource {
            ctx: (self as *const Source<'_>).cast_mut().cast(),
            callback_read,
        }
    }

    /// The upload, once the handler is done with it.
    pub fn get(&mut self) -> &Upload<'w> {
        self.upload.get_mut()
    }
}

unsafe extern "C" fn callback_read(ctx: *mut c_void, buf: *mut u8, len: usize) -> isize {
    // Never unwind into the plugin.
    let read = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `Source` of `Source::source`, alive and unmoved during the
        // handler's call; only its atomic is touched through this shared reference.
        let source = unsafe { &*ctx.cast::<Source<'_>>() };
        if source.busy.swap(true, Ordering::Acquire) {
            return -1;
        }
        // SAFETY: winning `busy` makes this the only reference to the upload until it is
        // released below (the worker does not touch it during the call). The plugin lends `buf`,
        // writable for `len` bytes, for this call (ABI contract).
        let (upload, out) = unsafe {
            let out = if len == 0 || buf.is_null() {
                &mut [][..]
            } else {
                std::slice::from_raw_parts_mut(buf, len)
            };
            (&mut *source.upload.get(), out)
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
        source.busy.store(false, Ordering::Release);
        n.map_or(-1, |n| n as isize)
    }));
    read.unwrap_or(-1)
}
