//! A worker thread: takes a connection from the queue and drives it as far as it can go without
//! blocking: flush what is owed, read what arrived, answer every complete request, write all the
//! answers in one `write`, and hand the connection back.
//!
//! This is where the server's work happens; the event loop only says which connection is ready.
//! A read shorter than the buffer means the socket was drained, so no extra `read` is made just to
//! see `WouldBlock`: new data makes a new edge. This file is the turn (the reads, and what to do
//! with the connection after); `framing.rs` finds the requests in what was read, `dispatch.rs`
//! calls the handler and encodes its answer, `io.rs` writes, lingers and lends buffers. Parsing
//! is in `http/`; the connection's states are in `conn/`.

mod dispatch;
mod framing;
mod io;
mod reply;
mod upload;

use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use plugin_api::__private::panic_message;
use plugin_api::Header;

use crate::Limits;
use crate::bulkhead::{Admission, Bulkhead};
use crate::conn::{Conn, InBuf, Reading, Slot, Writing};
use crate::http::encode::DateCache;
use crate::reply::FileRun;
use crate::running::Record;
use crate::shared::Shared;

pub(crate) use dispatch::internal_error;

/// The read buffer a worker lends to the connection it drives.
const READ_BUF: usize = 16 * 1024;
/// Partial requests up to this size move into a buffer of their own; larger ones keep the one
/// they grew in.
const SMALL_BUF: usize = 4 * 1024;
/// Encoded output past which the worker writes before it answers more pipelined requests.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Requests one turn answers at most while other connections wait for a worker: a client with more
/// pipelined then goes back to the queue, behind them, so it cannot keep a worker to itself. Twice the depth pipelining
/// benchmarks use (16), so their batches are never split; at most a few ms of a fast handler's
/// time, and a slow handler's share is bounded by its bulkhead besides.
const TURN_REQUESTS: u64 = 32;
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
    /// The file body of the last response encoded, sent once `out` is written.
    file: Option<FileRun>,
    /// How the last call's streamed request body ended.
    upload: Option<upload::Outcome>,
    /// The connection's answered count when this worker took it from the queue
    /// ([`TURN_REQUESTS`]).
    turn_began: u64,
}

/// What to do with a connection after a turn.
enum Next {
    /// Hand it back to the loop, to be closed at this deadline unless readiness comes first.
    Idle(u64),
    /// Close it now.
    Close,
    /// Its next request waits for a place in this bulkhead, until this deadline.
    Park(Arc<Bulkhead>, u64),
    /// A handler ran past its deadline and the watchdog answered for it: drop the connection
    /// without a word.
    Lost,
    /// It had its share of this worker ([`TURN_REQUESTS`]) and has more to do: back to the end of
    /// the queue.
    Yield,
}

/// How processing the buffered requests ended.
enum Step {
    /// Everything complete was answered; waiting for more bytes.
    NeedInput,
    /// Output passed the high-water mark, or a file body must follow it, with requests still
    /// buffered: write, then continue.
    More,
    /// Close after the output is written; `linger` after an error.
    Close { linger: bool },
    /// The next request waits for a place in this bulkhead (the output is written first).
    Park(Arc<Bulkhead>, u64),
    /// See [`Next::Lost`].
    Lost,
    /// The turn answered [`TURN_REQUESTS`] with requests still buffered: write, then requeue.
    Yield,
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
    Lost,
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
            file: None,
            upload: None,
            turn_began: 0,
        }
    }

    /// Serves queued connections until the queue is stopped, or until this thread is written off
    /// and replaced.
    pub fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        // However this thread ends (a panic outside a turn too), the pool learns of it.
        let mut exit = Exit(Arc::clone(&shared), Arc::clone(&self.record), false);
        // Asked to give way (`Queue::recycle`), the thread returns: its exit has the pool start
        // a fresh one, and its thread-local destructors run (releasing libraries they pin).
        let born = shared.queue.epoch();
        'serving: loop {
            let Some(slot) = shared.queue.pop(born) else {
                if !shared.queue.is_stopped() {
                    shared.workers.replace(&shared, &self.record);
                    exit.2 = true;
                }
                break;
            };
            // Requests already there when the loop queued it were received then.
            let mut arrived = slot.begin();
            let mut popped = true;
            loop {
                let mut conn = slot.conn();
                if popped {
                    // The share counts from here, however many times readiness makes it drive
                    // again.
                    self.turn_began = conn.answered;
                    popped = false;
                }
                let hup = slot.hung_up();
                let turn = catch_unwind(AssertUnwindSafe(|| {
                    self.drive(&shared, &mut conn, hup, arrived)
                }));
                arrived = 0;
                conn.recharge();
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
                        let used = conn.answered.saturating_sub(self.turn_began) >= TURN_REQUESTS;
                        drop(conn);
                        if slot.release(deadline) {
                            break;
                        }
                        // Readiness came meanwhile: more to do. After its share, while others
                        // wait, in its turn (the next turn reads until the socket is drained).
                        if used && !shared.queue.is_empty() {
                            self.requeue(&slot);
                            break;
                        }
                    }
                    Next::Park(bulkhead, deadline) => {
                        drop(conn);
                        if self.park(&bulkhead, &slot, deadline) {
                            break;
                        }
                    }
                    Next::Lost => {
                        // The watchdog answered the client and told the loop to forget it.
                        *conn = Conn::closed(conn.token, conn.peer);
                        drop(conn);
                        if shared.workers.found(&shared, shared.max_lost_workers()) {
                            // The pool is full without this thread (and counted it gone).
                            exit.2 = true;
                            break 'serving;
                        }
                        break;
                    }
                    Next::Yield => {
                        drop(conn);
                        self.requeue(&slot);
                        break;
                    }
                }
            }
        }
    }

    /// Puts a connection this worker owns at the back of the queue (see [`TURN_REQUESTS`]).
    fn requeue(&self, slot: &Arc<Slot>) {
        slot.requeue(self.shared.clock.now());
        self.shared.queue.requeue(Arc::clone(slot));
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
        let (output, file) = match std::mem::replace(&mut conn.writing, Writing::Clear) {
            Writing::Clear => (Vec::new(), None),
            Writing::Owed(output) => (output, None),
            Writing::File { bytes, file } => (bytes, Some(file)),
        };
        if !output.is_empty() || file.is_some() {
            let deadline = match conn.reading {
                Reading::Discard { until } => until,
                _ => shared.clock.after(now, limits.write_timeout),
            };
            if let Some(next) = self.write(shared, conn, &output, file, deadline) {
                return next;
            }
        }
        match conn.reading {
            Reading::Discard { until } => {
                if let Some(stream) = conn.stream.as_ref() {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                return io::linger(conn, now, until);
            }
            Reading::Done => return Next::Close,
            Reading::Proxy | Reading::Head { .. } | Reading::Body { .. } => {}
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
        // A body larger than `buffer_body_bytes` is read by its handler, not buffered.
        let cap = limits.max_head_bytes + limits.buffer_body_bytes + 2 * READ_BUF;
        let (mut eof, mut drained, mut reads) = (false, false, 0u32);
        loop {
            let step = self.process(shared, limits, conn, buf, [arrived, now]);
            if !self.out.is_empty() {
                // Handlers ran: the write deadline and the next calls count from now.
                now = shared.clock.now();
            }
            if let Step::Lost = step {
                self.out.clear();
                return Next::Lost;
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
            if !self.out.is_empty() || self.file.is_some() {
                let out = std::mem::take(&mut self.out);
                let deadline = shared.clock.after(now, limits.write_timeout);
                let file = self.file.take();
                let blocked = self.write(shared, conn, &out, file, deadline);
                self.out = out;
                self.out.clear();
                if let Some(next) = blocked {
                    match close {
                        Some(true) => {
                            let until = now + LINGER_MS;
                            conn.reading = Reading::Discard { until };
                            if let Next::Idle(_) = next {
                                return Next::Idle(until);
                            }
                        }
                        Some(false) => conn.reading = Reading::Done,
                        None => {}
                    }
                    return next;
                }
            }
            match close {
                Some(true) => return io::start_linger(conn, now),
                Some(false) => return Next::Close,
                None => {}
            }
            match step {
                Step::More => continue,
                Step::Yield => return Next::Yield,
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
            let before = buf.data.len();
            let room = buf.make_room(self.want.clamp(1024, 64 * 1024), cap);
            if room == 0 {
                return Next::Close;
            }
            let grown = buf.data.len() - before;
            if grown > 0 && over_budget(shared, limits, grown) {
                return self.refuse_buffer(shared, conn, buf, now);
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
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return io::closed_by(e, conn),
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
        } else if matches!(conn.reading, Reading::Proxy) {
            // Part of a PROXY header: it is the first request's, timed from the accept.
            Next::Idle(clock.after(conn.accepted, limits.header_timeout))
        } else if matches!(conn.reading, Reading::Body { .. }) {
            // The head is in; the body is on its way, at the minimum data rate at least.
            let by_rate = limits.rate_deadline(conn.reading.since(), buf.pending().len() as u64);
            Next::Idle(clock.after(now, limits.body_timeout).min(by_rate))
        } else {
            Next::Idle(clock.after(conn.reading.since(), limits.header_timeout))
        }
    }
}

/// Whether `more` bytes of buffer would take the connections past the server-wide budget.
fn over_budget(shared: &Shared, limits: &Limits, more: usize) -> bool {
    shared.buffered.load(Ordering::Relaxed) + more > limits.max_buffered_bytes
}

/// Tells the pool that a worker thread ends, when dropped; `.2`: the pool counted it already.
struct Exit(Arc<Shared>, Arc<Record>, bool);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.workers.exit(&self.0, &self.1, self.2);
    }
}
