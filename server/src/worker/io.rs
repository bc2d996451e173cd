//! A worker's socket I/O: writing what the socket takes and keeping the rest, the lingering close
//! after an error, and lending the read buffer between the worker and the connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;

use super::{LINGER_BYTES, LINGER_MS, Next, READ_BUF, SMALL_BUF, Worker};
use crate::conn::{Conn, InBuf, Reading, Transfer, Writing};
use crate::http::encode::{Persist, encode_busy};
use crate::reply::FileRun;
use crate::shared::Shared;

impl Worker {
    /// Writes `data`, then the file run if any; `None` when all of it went. Otherwise keeps the
    /// rest for the next turn, asks mio for write readiness, and returns what to do: wait until
    /// `deadline` (sooner if the client reads slower than the minimum data rate), or close.
    #[inline]
    pub(super) fn write(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        data: &[u8],
        file: Option<FileRun>,
        deadline: u64,
    ) -> Option<Next> {
        let stream = conn.stream.as_mut().expect("checked by drive");
        // Bytes before a file go out with it: `MSG_MORE` holds them for the file's first segment,
        // one packet (and one wake-up of the client) fewer per response.
        let more = file.as_ref().is_some_and(|f| f.remaining > 0);
        let written = match write_some(stream, data, more) {
            Ok(n) => n,
            Err(e) => return Some(closed_by(e, conn)),
        };
        let mut sent = written as u64;
        conn.writing = match file {
            None if written == data.len() => {
                conn.transfer = None;
                return None;
            }
            None => Writing::Owed(data[written..].to_vec()),
            Some(mut file) if written == data.len() => {
                let before = file.remaining;
                let done = send_file(stream, &mut file);
                sent += before - file.remaining;
                match done {
                    Ok(true) => {
                        conn.transfer = None;
                        return None;
                    }
                    Ok(false) => Writing::File {
                        bytes: Vec::new(),
                        file,
                    },
                    Err(e) => return Some(closed_by(e, conn)),
                }
            }
            Some(file) => Writing::File {
                bytes: data[written..].to_vec(),
                file,
            },
        };
        let now = shared.clock.now();
        let transfer = conn.transfer.get_or_insert(Transfer {
            since: now,
            sent: 0,
        });
        transfer.sent += sent;
        let by_rate = shared
            .limits
            .load()
            .rate_deadline(transfer.since, transfer.sent);
        if by_rate <= now {
            tracing::debug!(peer = %conn.peer, sent = transfer.sent, "the client reads too slowly: cut off");
            return Some(Next::Close);
        }
        let deadline = deadline.min(by_rate);
        tracing::trace!(peer = %conn.peer, sent = transfer.sent, by_rate, now, "write blocked");
        if conn.write_interest {
            return Some(Next::Idle(deadline));
        }
        conn.write_interest = true;
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        let token = mio::Token(conn.token);
        if let Err(e) = shared.registry.reregister(stream, token, interest) {
            tracing::warn!(peer = %conn.peer, error = %e, "cannot wait for write readiness");
            return Some(Next::Close);
        }
        // Space may have freed before the interest was added: try once more, so that the edge we
        // wait for cannot have passed already.
        let (rest, file) = match std::mem::replace(&mut conn.writing, Writing::Clear) {
            Writing::Owed(rest) => (rest, None),
            Writing::File { bytes, file } => (bytes, Some(file)),
            Writing::Clear => unreachable!("set above"),
        };
        self.write(shared, conn, &rest, file, deadline)
    }

    /// Answers a request whose buffer would take the server past its buffer budget: `503` with
    /// `Retry-After`, then a lingering close. What it sent so far is dropped.
    pub(super) fn refuse_buffer(
        &mut self,
        shared: &Shared,
        conn: &mut Conn,
        buf: &mut InBuf,
        now: u64,
    ) -> Next {
        tracing::warn!(peer = %conn.peer, "refused: the server's buffer budget is spent");
        buf.start = buf.end;
        let why = "the server holds too much buffered data; retry shortly\n";
        encode_busy(&mut self.out, why, false, Persist::Close, self.date.get());
        let out = std::mem::take(&mut self.out);
        let deadline = shared.clock.after(now, shared.limits.load().write_timeout);
        let blocked = self.write(shared, conn, &out, None, deadline);
        self.out = out;
        self.out.clear();
        match blocked {
            Some(next) => {
                conn.reading = Reading::Done;
                next
            }
            None => start_linger(conn, now),
        }
    }

    /// Gives the read buffer back: the connection keeps a partial request in a buffer of its own,
    /// and the worker keeps (or regains) its spare.
    #[inline]
    pub(super) fn stash(&mut self, conn: &mut Conn, mut buf: InBuf) {
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

/// Half-closes the connection and starts discarding input (RFC 9112 §9.6).
pub(super) fn start_linger(conn: &mut Conn, now: u64) -> Next {
    let until = now + LINGER_MS;
    conn.reading = Reading::Discard { until };
    if let Some(stream) = conn.stream.as_ref() {
        let _ = stream.shutdown(Shutdown::Write);
    }
    linger(conn, now, until)
}

/// Reads and drops whatever arrives; closes on EOF, error, when the linger time is up, or after
/// [`LINGER_BYTES`], so that a client uploading a refused body cannot keep a worker busy.
pub(super) fn linger(conn: &mut Conn, now: u64, until: u64) -> Next {
    let Some(stream) = conn.stream.as_mut() else {
        return Next::Close;
    };
    if now >= until {
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
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Next::Idle(until);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Writes as much of `data` as the socket takes now.
#[inline]
fn write_some(stream: &mut mio::net::TcpStream, data: &[u8], more: bool) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        let rest = &data[written..];
        let sent = if more {
            send_more(stream, rest)
        } else {
            stream.write(rest)
        };
        match sent {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// `send(2)` with `MSG_MORE`: more data follows at once (a file's `sendfile`).
fn send_more(stream: &mio::net::TcpStream, data: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the socket is open for the call; `data` is valid for its length.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Sends as much of a file run as the socket takes now, straight from the file (`sendfile(2)`):
/// `Ok(true)` when all of it went. A file shorter than the run promised is an error: the response
/// cannot be completed, so the connection ends.
fn send_file(stream: &mut mio::net::TcpStream, run: &mut FileRun) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    while run.remaining > 0 {
        let mut offset = libc::off_t::try_from(run.offset)
            .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "file offset too large"))?;
        // At most 1 GiB a call, well under what `sendfile` takes at once.
        let count = run.remaining.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call (the socket is the connection's, the
        // file is owned by `run`); `offset` is a valid `off_t` that `sendfile` updates, leaving
        // the file's own position alone.
        let n =
            unsafe { libc::sendfile(stream.as_raw_fd(), run.file.as_raw_fd(), &mut offset, count) };
        match n {
            0 => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the file is shorter than the response promised",
                ));
            }
            n if n > 0 => {
                run.offset += n as u64;
                run.remaining -= n as u64;
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    ErrorKind::WouldBlock => return Ok(false),
                    ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(true)
}

/// How long a blocking write may wait for room in the socket.
pub(super) enum Wait {
    For(std::time::Duration),
    /// Not at all: give up.
    Stop,
}

/// Writes all of `data` to `socket` from a thread that may block (a handler's worker): before each
/// wait for room, `wait` says for how long, and `waited` hears how long it took; after each write
/// `progress` hears how much went.
///
/// # Errors
/// The socket failed, or stayed full past the wait (`TimedOut`).
pub(super) fn push_blocking(
    socket: &mio::net::TcpStream,
    mut data: &[u8],
    mut wait: impl FnMut() -> Wait,
    mut waited: impl FnMut(u64),
    mut progress: impl FnMut(usize),
) -> io::Result<()> {
    while !data.is_empty() {
        match (&*socket).write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                progress(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let ms = match wait() {
                    Wait::For(d) => d.as_millis() as u64,
                    Wait::Stop => 0,
                };
                let began = std::time::Instant::now();
                let ready = ms > 0 && wait_for(socket, libc::POLLOUT, ms);
                waited(began.elapsed().as_millis() as u64);
                if !ready {
                    return Err(ErrorKind::TimedOut.into());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `socket` is ready for `events` (`POLLIN`, `POLLOUT`) or `ms` pass: `false` then,
/// or on an error or hang-up. Blocks the calling thread: only a handler's worker waits so.
pub(super) fn wait_for(socket: &mio::net::TcpStream, events: i16, ms: u64) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: one valid `pollfd` for the socket, which the worker's connection keeps open for
        // the whole call.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        if n < 0 && io::Error::last_os_error().kind() == ErrorKind::Interrupted {
            continue;
        }
        return n > 0 && fd.revents & events != 0 && fd.revents & libc::POLLERR == 0;
    }
}

/// A socket error ends the connection; resets and broken pipes are routine.
pub(super) fn closed_by(e: io::Error, conn: &Conn) -> Next {
    tracing::debug!(peer = %conn.peer, error = %e, "connection error");
    Next::Close
}
