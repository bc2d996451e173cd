//! The worker's [`Reply`]: encodes a handler's answer into the turn's output buffer. A body of
//! bytes is encoded whole; a file is left for the turn to send with `sendfile(2)` once the output
//! before it is written (`io.rs`); a stream is written by the handler through this encoder while
//! its call runs, framed by `Content-Length`, `chunked`, or the connection's close, and the
//! handler's thread waits (bounded by the write timeout) while the socket is full.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::net::TcpStream;
use plugin_api::{Header, ResponseView, Version, split_target};

use super::io::{Wait, push_blocking};
use crate::http::compress;
use crate::http::encode::{
    CHUNK_END, Delimit, LAST_CHUNK, bodyless, chunk_size, encode, encode_head, persist,
};
use crate::http::parse::Head;
use crate::limits::Pace;
use crate::reply::{Content, FileRun, Reply};
use crate::running::Record;
use crate::shared::Shared;

/// Streamed bytes held before they are sent, unless the handler flushes first.
const STREAM_BUF: usize = 64 * 1024;

/// Encodes one call's answer; see the module doc.
pub(super) struct Encoder<'w> {
    out: &'w mut Vec<u8>,
    date: &'w [u8],
    /// The request was `HEAD`: headers only.
    head_only: bool,
    version: Version,
    /// The request allows the connection to persist.
    keep_alive: bool,
    /// Read when the head is encoded: shutdown may begin while the handler runs.
    draining: &'w AtomicBool,
    /// The client's socket, for a stream's writes.
    socket: &'w TcpStream,
    /// For the watchdog: a stream that makes progress is not hung, and its client has a head.
    record: &'w Record,
    clock: &'w crate::clock::Clock,
    /// The write timeout and minimum data rate a stream's writes wait by.
    limits: &'w crate::Limits,
    /// What was answered.
    sent: Sent,
    /// A chunked stream's data not yet framed: writes gather here until a flush or
    /// [`STREAM_BUF`].
    chunk: Vec<u8>,
    /// Where this response starts in `out`: what is before it answers earlier requests.
    mark: usize,
    /// Set once some of `out` went to the socket during the call (shared with a streamed
    /// request body, which may then no longer send `100 Continue`).
    pushed: &'w Cell<bool>,
    /// The client's pace, for the minimum data rate.
    pace: Pace,
    /// The request's headers and target, asked of a response that could be compressed.
    request: (&'w [Header<'w>], &'w str),
    handler: &'w dyn crate::Handler,
}

/// What the server and the request tell an [`Encoder`].
pub(super) struct Setting<'w> {
    pub date: &'w [u8],
    pub head: &'w Head<'w>,
    pub headers: &'w [Header<'w>],
    pub socket: &'w TcpStream,
    pub record: &'w Record,
    pub shared: &'w Shared,
    pub limits: &'w crate::Limits,
    /// Set once some of the answer went to the socket.
    pub pushed: &'w Cell<bool>,
}

/// What a call answered, once it ended.
pub(super) enum Finished {
    Nothing,
    /// Encoded in the output.
    Sent {
        close: bool,
    },
    /// The head is in the output; the file follows it.
    File {
        run: FileRun,
        close: bool,
    },
    /// A streamed body was cut short: the connection ends (earlier answers still go out).
    Cut,
}

/// What an [`Encoder`] was given.
enum Sent {
    Nothing,
    /// Encoded whole in the output.
    Whole {
        close: bool,
    },
    /// The head is in the output; the file follows it.
    File {
        run: FileRun,
        close: bool,
    },
    /// The head (and maybe some of the body) is in the output or sent.
    Stream {
        close: bool,
        body: Streamed,
    },
}

/// How far a streamed body got.
enum Streamed {
    Chunked,
    /// `Content-Length`: bytes still owed.
    Sized(u64),
    /// Ended by closing the connection (HTTP/1.0 without a length).
    UntilClose,
    /// The response has no body (`HEAD`, `304`): writes fail.
    NoBody,
    /// The client went away, the socket stayed full past the timeout, more than the declared
    /// length was written, or the producer failed: the connection ends as it is.
    Broken,
}

impl Reply for Encoder<'_> {
    fn start(&mut self, view: ResponseView<'_>, content: Content) {
        let closing = !self.keep_alive || view.close || self.draining.load(Ordering::Acquire);
        let no_body = self.head_only || bodyless(view.status);
        self.sent = match content {
            Content::Bytes => {
                let persist = persist(self.version, closing);
                match self.compressed(&view) {
                    None => encode(self.out, view, self.head_only, persist, self.date),
                    Some((head, body)) => {
                        let view = ResponseView {
                            head: &head,
                            body: body.as_deref().unwrap_or(view.body),
                            ..view
                        };
                        encode(self.out, view, self.head_only, persist, self.date);
                    }
                }
                Sent::Whole { close: closing }
            }
            Content::File(run) => {
                self.head(&view, Delimit::Length(run.remaining), closing);
                match no_body {
                    // The file closes as `run` drops.
                    true => Sent::Whole { close: closing },
                    false => Sent::File {
                        run,
                        close: closing,
                    },
                }
            }
            Content::Stream(len) => {
                let (delimit, body, close) = match (len, self.version) {
                    (Some(n), _) => (Delimit::Length(n), Streamed::Sized(n), closing),
                    (None, Version::Http11) => (Delimit::Chunked, Streamed::Chunked, closing),
                    (None, Version::Http10) => (Delimit::Close, Streamed::UntilClose, true),
                };
                let body = if no_body { Streamed::NoBody } else { body };
                self.mark = self.out.len();
                self.head(&view, delimit, close);
                Sent::Stream { close, body }
            }
        };
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        if self.draining.load(Ordering::Acquire) {
            // Shutdown ends streams: the client sees the body cut short and may come back.
            self.abort();
        }
        let Sent::Stream { body, .. } = &mut self.sent else {
            return false;
        };
        let len = bytes.len();
        if len == 0 {
            // Nothing to frame (an empty chunk would end the body).
            return !matches!(body, Streamed::NoBody | Streamed::Broken);
        }
        match body {
            Streamed::NoBody | Streamed::Broken => return false,
            Streamed::Sized(owed) if len as u64 > *owed => {
                tracing::warn!("a streamed body was longer than its declared length; closing");
                *body = Streamed::Broken;
                return false;
            }
            Streamed::Sized(owed) => *owed -= len as u64,
            Streamed::Chunked | Streamed::UntilClose => {}
        }
        if self.out.len() + self.chunk.len() + len <= STREAM_BUF {
            // Small writes gather: one chunk (and one send) for many of them.
            let held = if matches!(body, Streamed::Chunked) {
                &mut self.chunk
            } else {
                &mut *self.out
            };
            held.extend_from_slice(bytes);
            return true;
        }
        // A large write goes out now, straight from the handler's buffer.
        let chunked = matches!(body, Streamed::Chunked);
        if chunked {
            chunk_size(self.out, self.chunk.len() + len);
            self.out.append(&mut self.chunk);
        }
        let sent = self.send_out() && self.push(bytes);
        if chunked {
            self.out.extend_from_slice(CHUNK_END);
        }
        sent
    }

    fn flush(&mut self) -> bool {
        if self.draining.load(Ordering::Acquire) {
            self.abort();
        }
        match &self.sent {
            Sent::Stream {
                body: Streamed::Chunked | Streamed::Sized(_) | Streamed::UntilClose,
                ..
            } => {}
            _ => return false,
        }
        self.frame_chunk();
        self.send_out()
    }

    fn abort(&mut self) {
        // A body that was never to be sent (`HEAD`, `304`) stays so: its head goes out whole.
        if let Sent::Stream { body, .. } = &mut self.sent
            && !matches!(body, Streamed::NoBody)
        {
            *body = Streamed::Broken;
        }
    }
}

impl<'w> Encoder<'w> {
    /// An encoder that appends to `out` (which may hold answers to earlier requests).
    pub fn new(out: &'w mut Vec<u8>, set: Setting<'w>) -> Encoder<'w> {
        Encoder {
            out,
            date: set.date,
            head_only: set.head.method == "HEAD",
            version: set.head.version,
            keep_alive: set.head.keep_alive,
            draining: &set.shared.draining,
            socket: set.socket,
            record: set.record,
            clock: &set.shared.clock,
            limits: set.limits,
            sent: Sent::Nothing,
            chunk: Vec::new(),
            mark: 0,
            pushed: set.pushed,
            pace: Pace::default(),
            request: (set.headers, set.head.target),
            handler: &*set.shared.handler,
        }
    }

    /// The head and body to send for a body of bytes that is to be compressed, or at least to
    /// say it varies by `Accept-Encoding` (`http/compress.rs`); `None` for one sent as it is.
    /// A body shorter than the threshold costs one comparison.
    #[inline]
    fn compressed(&self, view: &ResponseView<'_>) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let policy = &self.limits.compression;
        if view.body.len() < policy.min_bytes || !policy.enabled {
            return None;
        }
        let path = split_target(self.request.1).0;
        if !compress::eligible(view.status, view.head) || !self.handler.compress(path) {
            return None;
        }
        let coding = compress::chosen(self.request.0);
        let body = coding.map(|c| compress::compress(c, view.body));
        Some((compress::head(view.head, coding), body))
    }

    /// What the call answered, once it ended; a streamed body is ended here (its last chunk),
    /// or, cut short, taken back out of the output if none of it went.
    pub fn finish(mut self) -> Finished {
        match std::mem::replace(&mut self.sent, Sent::Nothing) {
            Sent::Nothing => Finished::Nothing,
            Sent::Whole { close } => Finished::Sent { close },
            Sent::File { run, close } => Finished::File { run, close },
            Sent::Stream { close, body } => match body {
                Streamed::Chunked => {
                    self.frame_chunk();
                    self.out.extend_from_slice(LAST_CHUNK);
                    Finished::Sent { close }
                }
                Streamed::Sized(0) | Streamed::NoBody => Finished::Sent { close },
                Streamed::UntilClose => Finished::Sent { close: true },
                Streamed::Sized(owed) => {
                    // What was written goes out; the close tells the client the body is short.
                    tracing::warn!(
                        owed,
                        "a streamed body was shorter than its declared length; closing"
                    );
                    Finished::Cut
                }
                Streamed::Broken => {
                    // Answers to earlier pipelined requests still go out; this one cannot.
                    let keep = if self.pushed.get() { 0 } else { self.mark };
                    self.out.truncate(keep);
                    Finished::Cut
                }
            },
        }
    }

    /// Frames the chunk data gathered so far into the output.
    fn frame_chunk(&mut self) {
        if !self.chunk.is_empty() {
            chunk_size(self.out, self.chunk.len());
            self.out.append(&mut self.chunk);
            self.out.extend_from_slice(CHUNK_END);
        }
    }

    /// Sends all of the output, which is empty afterwards.
    fn send_out(&mut self) -> bool {
        let out = std::mem::take(self.out);
        let sent = self.push(&out);
        *self.out = out;
        self.out.clear();
        sent
    }

    /// Encodes the status line and headers of a body delimited by `delimit`.
    fn head(&mut self, view: &ResponseView<'_>, delimit: Delimit, close: bool) {
        let persist = persist(self.version, close);
        encode_head(
            self.out,
            view.status,
            view.head,
            delimit,
            persist,
            self.date,
        );
    }

    /// Writes all of `data` to the socket, waiting while it is full (each wait bounded by the
    /// write timeout and the minimum data rate). On failure the stream is broken.
    fn push(&mut self, data: &[u8]) -> bool {
        if !self.pushed.get() {
            // From here on the client may have part of this answer: a late `504` would corrupt
            // it, so the watchdog closes the connection instead.
            self.record.streaming();
            if !self.record.is_running() {
                return self.broken();
            }
            self.pushed.set(true);
        }
        let (record, clock, limits) = (self.record, self.clock, self.limits);
        let pace = std::cell::Cell::new(self.pace);
        let wait = || {
            let ms = pace
                .get()
                .allowance(limits)
                .min(limits.write_timeout.as_millis() as u64);
            // The wait is bounded here, not by the handler's deadline.
            let now = clock.now();
            record.extend_to(now.saturating_add(ms).saturating_add(1000));
            match ms {
                0 => Wait::Stop,
                ms => Wait::For(std::time::Duration::from_millis(ms)),
            }
        };
        let waited = |ms: u64| {
            let mut p = pace.get();
            p.waited(ms);
            pace.set(p);
        };
        let pushed = push_blocking(self.socket, data, wait, waited, |n| {
            // Progress: the handler's deadline counts again from now.
            record.progress(clock.now());
            let mut p = pace.get();
            p.moved(n);
            pace.set(p);
        });
        self.pace = pace.get();
        match pushed {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "a streamed response's client went away or reads too slowly");
                self.broken()
            }
        }
    }

    fn broken(&mut self) -> bool {
        self.abort();
        false
    }
}
