//! Calling the handler for one request, under the watchdog and the request's bulkhead, and
//! encoding what it answers (or the `503` or `500` the server answers instead).

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use plugin_api::__private::panic_message;
use plugin_api::{Header, Request, RequestParts, Response};

use super::reply::{Encoder, Finished, Setting};
use super::upload::{Source, Spec, Upload};
use super::{Answer, Worker};
use crate::Limits;
use crate::bulkhead::{Admission, Call, Declined, Gate};
use crate::conn::{Conn, PeerFrom};
use crate::http::encode::{encode, encode_busy, persist};
use crate::http::parse::Head;
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
            peer: Some(peer(limits, conn, headers)),
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
        let setting = Setting {
            date: self.date.get(),
            head,
            headers,
            socket,
            record,
            shared,
            limits,
            pushed: &answered,
        };
        let mut encoder = Encoder::new(&mut self.out, setting);
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
        let finished = encoder.finish();
        self.upload = upload.as_mut().map(|u| u.get().outcome(answered.get()));
        if let Ended::Lost { .. } = record.end() {
            return Answer::Lost;
        }
        match declined {
            Some(Declined::Busy(bulkhead, deadline)) => return Answer::Park(bulkhead, deadline),
            Some(Declined::Expired) => {
                return self.refuse(head, "the request waited past its deadline\n", draining());
            }
            Some(Declined::Gone) => return Answer::Gone,
            None => {}
        }
        match finished {
            Finished::Nothing => {}
            Finished::Sent { close } => return Answer::Sent { close },
            Finished::File { run, close } => {
                self.file = Some(run);
                return Answer::Sent { close };
            }
            Finished::Cut => return Answer::Gone,
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
    Response::text(500, "internal server error\n")
}

/// The request's client: the connection's peer (the PROXY header's client, if one came), or,
/// from a trusted proxy with `forwarded_for` on, the rightmost untrusted address of its
/// `X-Forwarded-For` lines (its port unknown: 0). Not behind a PROXY header that named no
/// client: the balancer did not vouch for anyone, so the header is the client's own word.
#[inline]
fn peer(limits: &Limits, conn: &Conn, headers: &[Header<'_>]) -> std::net::SocketAddr {
    let policy = &limits.proxy;
    if !policy.forwarded_for
        || conn.peer_from == PeerFrom::ProxyWithout
        || !policy.trusted.contains(conn.peer.ip())
    {
        return conn.peer;
    }
    let mut list = String::new();
    for h in headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("x-forwarded-for"))
    {
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(&String::from_utf8_lossy(h.value()));
    }
    match policy.trusted.forwarded_client(&list) {
        Some(ip) => std::net::SocketAddr::new(ip, 0),
        None => conn.peer,
    }
}
