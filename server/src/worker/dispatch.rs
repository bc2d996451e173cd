//! Calling the handler for one request, under the watchdog and the request's bulkhead, and
//! encoding what it answers (or the `503` or `500` the server answers instead).

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use plugin_api::__private::panic_message;
use plugin_api::{Header, Request, RequestParts, Response, ResponseBuilder};

use super::reply::{Encoder, Sent, Streamed};
use super::upload::{Source, Spec, Upload};
use super::{Answer, Worker};
use crate::Limits;
use crate::bulkhead::{Admission, Call, Declined, Gate};
use crate::conn::Conn;
use crate::http::encode::{CHUNK_END, LAST_CHUNK, chunk_size, encode, encode_busy, persist};
use crate::http::parse::Head;
use crate::limits::Pace;
use crate::running::{self, Ended};
use crate::shared::Shared;

impl Worker {
    /// Calls the handler, under the watchdog and the bulkheads, and encodes its response.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn respond(
        &mut self,
        shared: &Shared,
        limits: &Limits,
        conn: &mut Conn,
        head: &Head<'_>,
        headers: &[Header<'_>],
        body: &[u8],
        now: u64,
        upload: Option<Spec<'_>>,
    ) -> Answer {
        // Read when encoding, not before the handler runs: shutdown may begin meanwhile.
        let draining = || shared.draining.load(Ordering::Acquire);
        let head_only = head.method == "HEAD";
        let received = conn.reading.since();
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
        let Some(socket) = conn.stream.as_ref() else {
            return Answer::Gone;
        };
        let fd = socket.as_raw_fd();
        let record = &*self.record;
        // Set once the answer is under way: a streamed body's `100 Continue` may not follow it.
        let answered = Cell::new(false);
        let mut upload = upload.map(|spec| {
            let clocked = (limits, &shared.clock);
            Source::new(Upload::new(socket, spec, clocked, record, &answered))
        });
        let source = upload.as_ref().map(|u| u.source());
        let request = Request::new(RequestParts {
            method: head.method,
            target: head.target,
            version: head.version,
            headers,
            body,
            peer: Some(conn.peer),
            mount: "",
            source: source.as_ref(),
        });
        record.begin(&running::Call {
            started: now,
            deadline,
            budget: limits.handler_timeout.as_millis() as u64,
            fd,
            token: conn.token,
            clean: self.out.is_empty(),
            method: head.method,
            target: head.target,
        });
        let mut encoder = Encoder {
            out: &mut self.out,
            date: self.date.get(),
            head_only,
            version: head.version,
            keep_alive: head.keep_alive,
            draining: &shared.draining,
            socket,
            record,
            clock: &shared.clock,
            limits,
            sent: Sent::Nothing,
            chunk: Vec::new(),
            mark: 0,
            pushed: &answered,
            pace: Pace::default(),
        };
        let declined = {
            let gate = Gate {
                shared,
                record,
                received,
                now,
                default_timeout: limits.handler_timeout,
                fd,
                granted,
                body,
                source: source.as_ref(),
            };
            let mut call = Call::gated(&mut encoder, gate);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                shared.handler.serve(&request, &mut call)
            }));
            if let Err(panic) = outcome {
                // A body under way is cut short: only closing tells the client.
                call.abort();
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
        let sent = std::mem::replace(&mut encoder.sent, Sent::Nothing);
        let chunk = std::mem::take(&mut encoder.chunk);
        let unsent = (!answered.get()).then_some(encoder.mark);
        self.streamed = answered.get();
        drop(encoder);
        self.upload = upload.as_mut().map(|u| {
            let u = u.get();
            let (used, past) = u.rest();
            (u.state(), used, past.to_vec())
        });
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
        match sent {
            Sent::Nothing => {}
            Sent::Whole { close } => return Answer::Sent { close },
            Sent::File { run, close } => {
                self.file = Some(run);
                return Answer::Sent { close };
            }
            Sent::Stream { close, body } => return self.end_stream(body, &chunk, close, unsent),
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

    /// Ends a streamed body after its handler returned.
    /// `chunk`: data of a chunked body not yet framed; `unsent`: where the response starts in the
    /// output when nothing of it was sent yet.
    fn end_stream(
        &mut self,
        body: Streamed,
        chunk: &[u8],
        close: bool,
        unsent: Option<usize>,
    ) -> Answer {
        match body {
            Streamed::Chunked => {
                if !chunk.is_empty() {
                    chunk_size(&mut self.out, chunk.len());
                    self.out.extend_from_slice(chunk);
                    self.out.extend_from_slice(CHUNK_END);
                }
                self.out.extend_from_slice(LAST_CHUNK);
                Answer::Sent { close }
            }
            Streamed::Sized(0) | Streamed::NoBody => Answer::Sent { close },
            Streamed::UntilClose => Answer::Sent { close: true },
            Streamed::Sized(owed) => {
                // What was written goes out; the close tells the client the body is short.
                tracing::warn!(
                    owed,
                    "a streamed body was shorter than its declared length; closing"
                );
                Answer::Gone
            }
            Streamed::Broken => {
                // Answers to earlier pipelined requests still go out; this one cannot.
                self.out.truncate(unsent.unwrap_or(0));
                Answer::Gone
            }
        }
    }

    /// Answers `503` with `Retry-After` without calling the handler; `why` is a line.
    pub(super) fn refuse(&mut self, head: &Head<'_>, why: &str, draining: bool) -> Answer {
        let closing = !head.keep_alive || draining;
        let persist = persist(head.version, closing);
        let head_only = head.method == "HEAD";
        encode_busy(&mut self.out, why, head_only, persist, self.date.get());
        Answer::Sent { close: closing }
    }
}

/// The `500` for a handler that panicked or answered with something that cannot be sent.
pub(crate) fn internal_error() -> Response {
    ResponseBuilder::new(500)
        .content_type("text/plain; charset=utf-8")
        .body("internal server error\n")
        .build()
        .expect("a constant response is valid")
}
