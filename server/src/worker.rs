//! A worker thread: takes a connection from the queue and drives it as far as it can go without
//! blocking: flush what is owed, read what arrived, answer every complete request, write all the
//! answers in one `write`, and hand the connection back.
//!
//! This is where the server's work happens; the event loop only says which connection is ready.
//! A read shorter than the buffer means the socket was drained, so no extra `read` is made just to
//! see `WouldBlock`: new data makes a new edge. Parsing is in `http/`, the handler is whatever the
//! server was built with.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use plugin_api::__private::panic_message;
use plugin_api::{Header, Request, RequestParts, Response, ResponseBuilder, ResponseView};

use crate::Limits;
use crate::bulkhead::{Admission, Bulkhead, Call, Declined, Gate};
use crate::conn::{Conn, InBuf, Slot};
use crate::http::body::Chunked;
use crate::http::encode::{CONTINUE, DateCache, encode, encode_busy, encode_error, persist};
use crate::http::parse::{Framing, Head, Reject, parse_head};
use crate::running::{self, Ended, Record};
use crate::server::Shared;

/// The read buffer a worker lends to the connection it drives.
const READ_BUF: usize = 16 * 1024;
/// Partial requests up to this size move into a buffer of their own; larger ones keep the one
/// they grew in.
const SMALL_BUF: usize = 4 * 1024;
/// Encoded output past which the worker writes before it answers more pipelined requests.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// How long a connection closed after an error keeps reading (and discarding) what the client still
/// sends, so that the client sees the error response rather than a reset.
const LINGER_MS: u64 = 2_000;
/// How much a lingering connection may still send before it is closed regardless.
const LINGER_BYTES: usize = 256 * 1024;

/// One worker's reusable state: nothing here is allocated per request.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    /// What this thread runs now, for the watchdog.
    record: Arc<Record>,
    /// The read buffer lent to connections with no partial request.
    spare: InBuf,
    /// Responses encoded during this turn, written together.
    out: Vec<u8>,
    /// Header views, reused across requests (see [`reuse`]).
    headers: Vec<Header<'static>>,
    date: DateCache,
    /// Bytes the current partial request still needs, as a hint for growing the buffer.
    want: usize,
}

/// What to do with a connection after a turn.
enum Next {
    /// Hand it back to the loop, to be closed at this deadline unless readiness comes first.
    Idle(u64),
    /// Close it now.
    Close,
    /// Its next request waits for a place in this bulkhead, until this deadline.
    Park(Arc<Bulkhead>, u64),
    /// A handler ran past its deadline (in this bulkhead, by id) and the watchdog answered for
    /// it: drop the connection without a word.
    Lost { bulkhead: usize },
}

/// How processing the buffered requests ended.
enum Step {
    /// Everything complete was answered; waiting for more bytes.
    NeedInput,
    /// Output passed the high-water mark with requests still buffered: write, then continue.
    More,
    /// Close after the output is written; `linger` after an error.
    Close { linger: bool },
    /// The next request waits for a place in this bulkhead (the output is written first).
    Park(Arc<Bulkhead>, u64),
    /// See [`Next::Lost`].
    Lost { bulkhead: usize },
}

/// How a request was answered.
enum Answer {
    /// Its response is encoded; the connection closes after it if `close`.
    Sent { close: bool },
    /// It did not run: see [`Step::Park`].
    Park(Arc<Bulkhead>, u64),
    /// Its client left while it waited: close.
    Gone,
    /// See [`Next::Lost`].
    Lost { bulkhead: usize },
}

impl Worker {
    pub fn new(shared: Arc<Shared>, record: Arc<Record>) -> Worker {
        Worker {
            shared,
            record,
            spare: InBuf::default(),
            out: Vec::with_capacity(READ_BUF),
            headers: Vec::new(),
            date: DateCache::new(),
            want: 0,
        }
    }

    /// Serves queued connections until the queue is stopped, or until this thread is written off
    /// and replaced.
    pub fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        // However this thread ends (a panic outside a turn too), the pool learns of it.
        let mut exit = Exit(Arc::clone(&shared), Arc::clone(&self.record), false);
        'serving: while let Some(slot) = shared.queue.pop() {
            // Requests already there when the loop queued it were received then.
            let mut arrived = slot.begin();
            loop {
                let mut conn = slot.conn();
                let hup = slot.hung_up();
                let turn = catch_unwind(AssertUnwindSafe(|| {
                    self.drive(&shared, &mut conn, hup, arrived)
                }));
                arrived = 0;
                let next = turn.unwrap_or_else(|panic| {
                    // Not a handler's panic (those are caught around the call): a bug here. The
                    // connection is closed, the worker lives on.
                    tracing::error!(peer = %conn.peer, "worker panicked: {}", panic_message(&*panic));
                    self.out.clear();
                    Next::Close
                });
                match next {
                    Next::Close => {
                        *conn = Conn::closed(conn.token, conn.peer);
                        drop(conn);
                        slot.close();
                        shared.report_closed(slot.token);
                        break;
                    }
                    Next::Idle(deadline) => {
                        drop(conn);
                        if slot.release(deadline) {
                            break;
                        }
                    }
                    Next::Park(bulkhead, deadline) => {
                        drop(conn);
                        if self.park(&bulkhead, &slot, deadline) {
                            break;
                        }
                    }
                    Next::Lost { bulkhead } => {
                        // The watchdog answered the client and told the loop to forget it.
                        *conn = Conn::closed(conn.token, conn.peer);
                        drop(conn);
                        if let Some(b) = shared.bulkheads.by_id(bulkhead) {
                            b.count_lost(false);
                        }
                        if shared.workers.found(&shared, shared.max_lost_workers()) {
                            // The pool is full without this thread (and counted it gone).
                            exit.2 = true;
                            break 'serving;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Parks a connection in a full bulkhead's queue; `false` when the queue is full too, and the
    /// connection must be driven again to answer `503`.
    fn park(&self, bulkhead: &Arc<Bulkhead>, slot: &Arc<Slot>, deadline: u64) -> bool {
        let now = self.shared.clock.now();
        match bulkhead.park(Arc::clone(slot), &self.shared, now, deadline) {
            Ok(()) => true,
            Err(_) => {
                slot.conn().admission = Admission::Refused("the plugin's queue is full\n");
                false
            }
        }
    }

    /// One turn on one connection. `hup`: the peer hung up, so read until the end. `arrived`: when
    /// the loop queued it (0: now).
    fn drive(&mut self, shared: &Shared, conn: &mut Conn, hup: bool, arrived: u64) -> Next {
        let now = shared.clock.now();
        let arrived = if arrived == 0 { now } else { arrived.min(now) };
        let limits = shared.limits.load();
        if conn.stream.is_none() {
            return Next::Close;
        }
        if !conn.output.is_empty() {
            let output = std::mem::take(&mut conn.output);
            let deadline = if conn.linger_until != 0 {
                conn.linger_until
            } else {
                shared.clock.after(now, limits.write_timeout)
            };
            if let Some(next) = self.write(shared, conn, &output, deadline) {
                return next;
            }
        }
        if conn.linger_until != 0 {
            if let Some(stream) = conn.stream.as_ref() {
                let _ = stream.shutdown(Shutdown::Write);
            }
            return linger(conn, now);
        }
        if conn.close_after_flush {
            return Next::Close;
        }
        let mut buf = if conn.input.data.is_empty() {
            std::mem::take(&mut self.spare)
        } else {
            std::mem::take(&mut conn.input)
        };
        if buf.data.is_empty() {
            buf = InBuf::with_capacity(READ_BUF);
        }
        // One clock read per turn for every response it encodes.
        self.date.refresh();
        let next = self.serve(shared, &limits, conn, &mut buf, [arrived, now], hup);
        self.stash(conn, buf);
        next
    }

    /// Reads, answers and writes until the socket is drained or the connection must close.
    /// `times`: when the requests of this turn arrived, and now.
    fn serve(
        &mut self,
        shared: &Shared,
        limits: &Limits,
        conn: &mut Conn,
        buf: &mut InBuf,
        times: [u64; 2],
        hup: bool,
    ) -> Next {
        let [mut arrived, mut now] = times;
        let cap = limits.max_head_bytes + limits.max_body_bytes + READ_BUF;
        let (mut eof, mut drained, mut reads) = (false, false, 0u32);
        loop {
            let step = self.process(shared, limits, conn, buf, [arrived, now]);
            if !self.out.is_empty() {
                // Handlers ran: the write deadline and the next calls count from now.
                now = shared.clock.now();
            }
            if let Step::Lost { bulkhead } = step {
                self.out.clear();
                return Next::Lost { bulkhead };
            }
            let close = match step {
                Step::Close { linger: true } => {
                    // Nothing more of this client's input will be used.
                    buf.start = buf.end;
                    Some(true)
                }
                // Input that is left (or may still come) would turn the close into a reset that
                // can destroy the response before the client reads it (RFC 9112 §9.6).
                Step::Close { linger: false } => Some(!buf.is_empty() || !(drained || eof)),
                _ => None,
            };
            if !self.out.is_empty() {
                let out = std::mem::take(&mut self.out);
                let deadline = shared.clock.after(now, limits.write_timeout);
                let blocked = self.write(shared, conn, &out, deadline);
                self.out = out;
                self.out.clear();
                if let Some(next) = blocked {
                    match close {
                        Some(true) => conn.linger_until = now + LINGER_MS,
                        Some(false) => conn.close_after_flush = true,
                        None => {}
                    }
                    return match (next, close) {
                        (Next::Idle(_), Some(true)) => Next::Idle(conn.linger_until),
                        (next, _) => next,
                    };
                }
            }
            match close {
                Some(true) => return self.start_linger(conn, now),
                Some(false) => return Next::Close,
                None => {}
            }
            match step {
                Step::More => continue,
                Step::Park(bulkhead, deadline) => return Next::Park(bulkhead, deadline),
                _ => {}
            }
            if eof {
                // RFC 9112 §9.6: the client closed its side; nothing more can arrive.
                return Next::Close;
            }
            if drained && !hup {
                break;
            }
            // Grow with what arrives, not with what a Content-Length announces.
            let room = buf.make_room(self.want.clamp(1024, 64 * 1024), cap);
            if room == 0 {
                return Next::Close;
            }
            let stream = conn.stream.as_mut().expect("checked by drive");
            match stream.read(&mut buf.data[buf.end..buf.end + room]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    buf.end += n;
                    drained = n < room;
                    // A turn can last: what a later read brings arrived now, and its calls start
                    // now. (The first read follows the turn's start at once, and its bytes were
                    // there when the loop queued the connection.)
                    if reads > 0 {
                        now = shared.clock.now();
                        arrived = now;
                    }
                    reads += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return closed_by(e, conn),
            }
        }
        // Deadlines count from now: `now` was read after the last answers.
        let clock = &shared.clock;
        if buf.is_empty() {
            if shared.draining.load(Ordering::Acquire) {
                return Next::Close;
            }
            if conn.answered == 0 {
                // Connected, but never sent a byte: the header timeout runs from the accept.
                return Next::Idle(clock.after(conn.accepted, limits.header_timeout));
            }
            Next::Idle(clock.after(now, limits.keep_alive_timeout))
        } else if self.want > 0 {
            // The head is in; the body is on its way.
            Next::Idle(clock.after(now, limits.body_timeout))
        } else {
            Next::Idle(clock.after(conn.request_started, limits.header_timeout))
        }
    }

    /// Writes `data`; `None` when all of it went. Otherwise keeps the rest for the next turn, asks
    /// mio for write readiness, and returns what to do: wait until `deadline`, or close.
    fn write(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        data: &[u8],
        deadline: u64,
    ) -> Option<Next> {
        let stream = conn.stream.as_mut().expect("checked by drive");
        match write_some(stream, data) {
            Ok(n) if n == data.len() => None,
            Ok(n) => {
                conn.output = data[n..].to_vec();
                if !conn.write_interest {
                    conn.write_interest = true;
                    let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
                    let token = mio::Token(conn.token);
                    if let Err(e) = shared.registry.reregister(stream, token, interest) {
                        tracing::warn!(peer = %conn.peer, error = %e, "cannot wait for write readiness");
                        return Some(Next::Close);
                    }
                    // Space may have freed before the interest was added: try once more, so that
                    // the edge we wait for cannot have passed already.
                    let rest = std::mem::take(&mut conn.output);
                    return self.write(shared, conn, &rest, deadline);
                }
                Some(Next::Idle(deadline))
            }
            Err(e) => Some(closed_by(e, conn)),
        }
    }

    /// Answers every complete request in `buf`, appending the responses to `self.out`. `times`:
    /// when the requests of this turn arrived, and now.
    fn process(
        &mut self,
        shared: &Shared,
        limits: &Limits,
        conn: &mut Conn,
        buf: &mut InBuf,
        [arrived, now]: [u64; 2],
    ) -> Step {
        loop {
            self.want = 0;
            if buf.is_empty() {
                buf.start = 0;
                buf.end = 0;
                conn.request_started = 0;
                return Step::NeedInput;
            }
            if self.out.len() > OUT_HIGH_WATER {
                return Step::More;
            }
            if conn.request_started == 0 {
                conn.request_started = arrived;
            }
            let mut headers = reuse(&mut self.headers);
            let pending = buf.pending();
            let head = match parse_head(pending, limits, &mut headers) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    self.headers = reuse(&mut headers);
                    return Step::NeedInput;
                }
                Err(reject) => {
                    self.headers = reuse(&mut headers);
                    return self.reject(conn, reject);
                }
            };
            let (body, consumed) = match head.framing {
                Framing::Empty => (&pending[..0], head.len),
                Framing::Length(n) if pending.len() - head.len >= n => {
                    (&pending[head.len..head.len + n], head.len + n)
                }
                Framing::Length(n) => {
                    self.want = head.len + n - pending.len();
                    let expect = expect_continue(&head, conn);
                    self.headers = reuse(&mut headers);
                    if expect {
                        self.out.extend_from_slice(CONTINUE);
                    }
                    return Step::NeedInput;
                }
                Framing::Chunked => {
                    let (head_len, expect) = (head.len, expect_continue(&head, conn));
                    self.headers = reuse(&mut headers);
                    match decode_chunked(conn, buf, head_len, limits.max_body_bytes) {
                        Ok(true) => {}
                        Ok(false) => {
                            if expect {
                                self.out.extend_from_slice(CONTINUE);
                            }
                            self.want = 1;
                            return Step::NeedInput;
                        }
                        Err(reject) => return self.reject(conn, reject),
                    }
                    // The body is decoded in place, right after the head: parse the head again.
                    let pending = buf.pending();
                    headers = reuse(&mut self.headers);
                    let Ok(Some(head)) = parse_head(pending, limits, &mut headers) else {
                        unreachable!("a head that parsed once parses again");
                    };
                    let chunked = conn.chunked.take().expect("decoded above");
                    let body = &pending[head.len..head.len + chunked.decoded()];
                    let answer = self.respond(shared, limits, conn, &head, &headers, body, now);
                    self.headers = reuse(&mut headers);
                    let close = match answer {
                        Answer::Sent { close } => close,
                        // Decoded in place: it stays whole for the next try.
                        other => {
                            conn.chunked = Some(chunked);
                            return unsent(other);
                        }
                    };
                    buf.start += head_len + chunked.consumed();
                    if let Some(step) = self.finish_request(conn, close) {
                        return step;
                    }
                    continue;
                }
            };
            let answer = self.respond(shared, limits, conn, &head, &headers, body, now);
            self.headers = reuse(&mut headers);
            let close = match answer {
                Answer::Sent { close } => close,
                other => return unsent(other),
            };
            buf.start += consumed;
            if let Some(step) = self.finish_request(conn, close) {
                return step;
            }
        }
    }

    /// Calls the handler, under the watchdog and the bulkheads, and encodes its response.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        shared: &Shared,
        limits: &Limits,
        conn: &mut Conn,
        head: &Head<'_>,
        headers: &[Header<'_>],
        body: &[u8],
        now: u64,
    ) -> Answer {
        // Read when encoding, not before the handler runs: shutdown may begin meanwhile.
        let draining = || shared.draining.load(Ordering::Acquire);
        let head_only = head.method == "HEAD";
        let received = conn.request_started;
        let granted = match std::mem::take(&mut conn.admission) {
            Admission::Refused(why) => return self.refuse(head, why, draining()),
            Admission::Granted(place) => Some(place),
            Admission::Open => None,
        };
        // A request that waited in its bulkhead runs under that bulkhead's deadline.
        let deadline = match &granted {
            Some(place) => place.deadline(received, limits.handler_timeout),
            None => shared.clock.after(received, limits.handler_timeout),
        };
        // Queued time counts: the server-wide deadline bounds the wait for a worker (a bulkhead's
        // own deadline is checked when the request enters it).
        if granted.is_none() && now > deadline {
            return self.refuse(head, "the request waited past its deadline\n", draining());
        }
        let Some(fd) = conn.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return Answer::Gone;
        };
        let request = Request::new(RequestParts {
            method: head.method,
            target: head.target,
            version: head.version,
            headers,
            body,
            peer: Some(conn.peer),
            mount: "",
        });
        let record = &*self.record;
        record.begin(&running::Call {
            started: now,
            deadline,
            fd,
            token: conn.token,
            clean: self.out.is_empty(),
            method: head.method,
            target: head.target,
        });
        let mut close = None;
        let declined = {
            let date = self.date.get();
            let out = &mut self.out;
            let mut encode_into = |view: ResponseView<'_>| {
                if close.is_none() {
                    let closing = !head.keep_alive || view.close || draining();
                    encode(out, view, head_only, persist(head.version, closing), date);
                    close = Some(closing);
                }
            };
            let gate = Gate {
                shared,
                record,
                received,
                now,
                default_timeout: limits.handler_timeout,
                fd,
                granted,
            };
            let mut call = Call::gated(&mut encode_into, gate);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                shared.handler.serve(&request, &mut call)
            }));
            if let Err(panic) = outcome {
                tracing::error!(
                    peer = %conn.peer,
                    method = head.method,
                    target = head.target,
                    "handler panicked: {}",
                    panic_message(&*panic)
                );
            }
            call.finish()
        };
        if let Ended::Lost { bulkhead } = record.end() {
            return Answer::Lost { bulkhead };
        }
        match declined {
            Some(Declined::Busy(bulkhead, deadline)) => return Answer::Park(bulkhead, deadline),
            Some(Declined::Expired) => {
                return self.refuse(head, "the request waited past its deadline\n", draining());
            }
            Some(Declined::Gone) => return Answer::Gone,
            None => {}
        }
        if let Some(close) = close {
            return Answer::Sent { close };
        }
        // The request was read whole, so the connection can go on after the 500.
        let closing = !head.keep_alive || draining();
        let date = self.date.get();
        let persist = persist(head.version, closing);
        encode(
            &mut self.out,
            internal_error().view(),
            head_only,
            persist,
            date,
        );
        Answer::Sent { close: closing }
    }

    /// Answers `503` with `Retry-After` without calling the handler; `why` is a line.
    fn refuse(&mut self, head: &Head<'_>, why: &str, draining: bool) -> Answer {
        let closing = !head.keep_alive || draining;
        let persist = persist(head.version, closing);
        let head_only = head.method == "HEAD";
        encode_busy(&mut self.out, why, head_only, persist, self.date.get());
        Answer::Sent { close: closing }
    }

    /// Resets per-request state; `Some` when the connection must close.
    fn finish_request(&mut self, conn: &mut Conn, close: bool) -> Option<Step> {
        conn.answered += 1;
        conn.continue_sent = false;
        conn.chunked = None;
        conn.request_started = 0;
        close.then_some(Step::Close { linger: false })
    }

    fn reject(&mut self, conn: &Conn, reject: Reject) -> Step {
        tracing::debug!(peer = %conn.peer, status = reject.status, "refused request: {}", reject.why);
        let date = self.date.get();
        encode_error(&mut self.out, reject.status, reject.why, date);
        Step::Close { linger: true }
    }

    /// Half-closes the connection and starts discarding input (RFC 9112 §9.6).
    fn start_linger(&mut self, conn: &mut Conn, now: u64) -> Next {
        conn.linger_until = now + LINGER_MS;
        if let Some(stream) = conn.stream.as_ref() {
            let _ = stream.shutdown(Shutdown::Write);
        }
        linger(conn, now)
    }

    /// Gives the read buffer back: the connection keeps a partial request in a buffer of its own,
    /// and the worker keeps (or regains) its spare.
    fn stash(&mut self, conn: &mut Conn, mut buf: InBuf) {
        let pending = buf.end - buf.start;
        if pending == 0 {
            conn.input = InBuf::default();
            buf.start = 0;
            buf.end = 0;
            if self.spare.data.is_empty() && buf.data.len() <= READ_BUF {
                self.spare = buf;
            }
        } else if buf.data.len() > SMALL_BUF && pending <= SMALL_BUF / 2 {
            let mut small = InBuf::with_capacity(SMALL_BUF);
            small.data[..pending].copy_from_slice(buf.pending());
            small.end = pending;
            conn.input = small;
            buf.start = 0;
            buf.end = 0;
            if self.spare.data.is_empty() && buf.data.len() <= READ_BUF {
                self.spare = buf;
            }
        } else {
            conn.input = buf;
        }
    }
}

/// Decodes as much of a chunked body as `buf` holds. `Ok(true)` when complete.
fn decode_chunked(
    conn: &mut Conn,
    buf: &mut InBuf,
    head_len: usize,
    max_body: usize,
) -> Result<bool, Reject> {
    let chunked = conn.chunked.get_or_insert_with(Chunked::default);
    if chunked.is_done() {
        // Decoded on an earlier turn; the request waited for a place in a bulkhead.
        return Ok(true);
    }
    let body_start = buf.start + head_len;
    let body = &mut buf.data[body_start..buf.end];
    let raw = chunked.decode(body, chunked.decoded(), max_body)?;
    chunked.set_consumed(raw);
    if chunked.is_done() {
        return Ok(true);
    }
    // Slide the undecoded tail down to the decoded data, so the buffer holds no framing.
    let decoded = chunked.decoded();
    buf.data
        .copy_within(body_start + raw..buf.end, body_start + decoded);
    buf.end -= raw - decoded;
    Ok(false)
}

/// Whether to send `100 Continue` now (RFC 9110 §10.1.1): asked for, HTTP/1.1, not yet sent.
fn expect_continue(head: &Head<'_>, conn: &mut Conn) -> bool {
    let send =
        head.expect_continue && head.version == plugin_api::Version::Http11 && !conn.continue_sent;
    conn.continue_sent |= send;
    send
}

/// Reads and drops whatever arrives; closes on EOF, error, when the linger time is up, or after
/// [`LINGER_BYTES`], so that a client uploading a refused body cannot keep a worker busy.
fn linger(conn: &mut Conn, now: u64) -> Next {
    let Some(stream) = conn.stream.as_mut() else {
        return Next::Close;
    };
    if now >= conn.linger_until {
        return Next::Close;
    }
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                discarded += n;
                if discarded > LINGER_BYTES {
                    return Next::Close;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Next::Idle(conn.linger_until);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Tells the pool that a worker thread ends, when dropped; `.2`: the pool counted it already.
struct Exit(Arc<Shared>, Arc<Record>, bool);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.workers.exit(&self.0, &self.1, self.2);
    }
}

/// What `process` returns for a request that was not answered.
fn unsent(answer: Answer) -> Step {
    match answer {
        Answer::Park(bulkhead, deadline) => Step::Park(bulkhead, deadline),
        Answer::Lost { bulkhead } => Step::Lost { bulkhead },
        Answer::Gone | Answer::Sent { .. } => Step::Close { linger: false },
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut mio::net::TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// A socket error ends the connection; resets and broken pipes are routine.
fn closed_by(e: io::Error, conn: &Conn) -> Next {
    tracing::debug!(peer = %conn.peer, error = %e, "connection error");
    Next::Close
}

/// The `500` for a handler that panicked or answered with something that cannot be sent.
pub(crate) fn internal_error() -> Response {
    ResponseBuilder::new(500)
        .content_type("text/plain; charset=utf-8")
        .body("internal server error\n")
        .build()
        .expect("a constant response is valid")
}

/// Moves an empty vector's allocation to another lifetime of `Header`, so the header views of each
/// request reuse one allocation. (The in-place `collect` keeps the buffer: same size and alignment.)
fn reuse<'a, 'b>(v: &mut Vec<Header<'a>>) -> Vec<Header<'b>> {
    let mut v = std::mem::take(v);
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}
