//! Finding the requests in what a connection read: the head (`http/parse.rs`), the body by its
//! framing (a length, or `chunked` decoded in place by `http/body.rs`), `100 Continue`, and what a
//! malformed request is answered.

use plugin_api::Header;

use super::upload::{Outcome, Spec, State};
use super::{Answer, OUT_HIGH_WATER, Step, TURN_REQUESTS, Worker};
use crate::Limits;
use crate::conn::{Conn, InBuf, PeerFrom, Reading};
use crate::http::body::Chunked;
use crate::http::encode::{CONTINUE, encode_error};
use crate::http::parse::{
    Framing, Head, Reject, check_length, check_partial, head_ends, parse_head,
};
use crate::http::proxy;
use crate::shared::Shared;

impl Worker {
    /// Answers every complete request in `buf`, appending the responses to `self.out`. `times`:
    /// when the requests of this turn arrived, and now.
    #[inline]
    pub(super) fn process(
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
                if !matches!(conn.reading, Reading::Proxy) {
                    conn.reading = Reading::HEAD;
                }
                return Step::NeedInput;
            }
            if let Reading::Proxy = conn.reading {
                match proxy::parse(buf.pending()) {
                    Ok(Some(header)) => {
                        buf.start += header.len;
                        conn.peer_from = match header.client {
                            Some(client) => {
                                conn.peer = client;
                                PeerFrom::ProxyHeader
                            }
                            None => PeerFrom::ProxyWithout,
                        };
                        conn.reading = Reading::HEAD;
                        continue;
                    }
                    Ok(None) => return Step::NeedInput,
                    Err(why) => {
                        tracing::debug!(peer = %conn.peer, "refused connection: {why}");
                        return Step::Close { linger: false };
                    }
                }
            }
            if self.out.len() > OUT_HIGH_WATER || self.file.is_some() {
                return Step::More;
            }
            if conn.answered.saturating_sub(self.turn_began) >= TURN_REQUESTS {
                if !shared.queue.is_empty() {
                    return Step::Yield;
                }
                // No one waits for a worker: another share, without the cost of a requeue.
                self.turn_began = conn.answered;
            }
            if let Reading::Head { since: 0, scanned } = conn.reading {
                conn.reading = Reading::Head {
                    since: arrived,
                    scanned,
                };
            }
            let pending = buf.pending();
            if let Reading::Head { scanned, .. } = &mut conn.reading
                && *scanned > 0
                && pending
                    .get(scanned.saturating_sub(3)..)
                    .is_some_and(|new| !head_ends(new))
            {
                // Still no end of the head in what arrived since it was last parsed: no parse.
                *scanned = pending.len();
                if let Err(reject) = check_partial(pending, limits) {
                    return self.reject(conn, reject);
                }
                return Step::NeedInput;
            }
            let mut headers = reuse(&mut self.headers);
            let head = match parse_head(pending, limits, &mut headers) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    self.headers = reuse(&mut headers);
                    if let Reading::Head { scanned, .. } = &mut conn.reading {
                        *scanned = pending.len();
                    }
                    return Step::NeedInput;
                }
                Err(reject) => {
                    self.headers = reuse(&mut headers);
                    return self.reject(conn, reject);
                }
            };
            let body_limits = match head.framing {
                Framing::Empty => limits.body(),
                // Asked only of requests with a body: a route's limits cost a table look-up.
                _ => shared
                    .handler
                    .body_limits(plugin_api::split_target(head.target).0, limits.body()),
            };
            if let Err(reject) = check_length(head.framing, body_limits.max) {
                self.headers = reuse(&mut headers);
                return self.reject(conn, reject);
            }
            let streams = match head.framing {
                Framing::Empty => false,
                Framing::Length(n) => n > body_limits.buffer,
                Framing::Chunked => body_limits.max > body_limits.buffer,
            };
            if streams && (!self.out.is_empty() || self.file.is_some()) {
                // Earlier answers go first, without blocking: their client may wait for them
                // before it sends this body.
                self.headers = reuse(&mut headers);
                return Step::More;
            }
            if streams {
                let prefix = &pending[head.len..];
                let max = body_limits.max;
                let step = self.stream_body(shared, limits, conn, &head, &headers, prefix, max);
                self.headers = reuse(&mut headers);
                match step {
                    Ok((used, past)) => {
                        buf.start += used;
                        if !past.is_empty() {
                            // Read past the body into the upload's buffer: the next request's
                            // first bytes, after whatever of the input is left (none: the body
                            // used it all).
                            buf.start = 0;
                            buf.end = 0;
                            let room = buf.make_room(past.len(), usize::MAX);
                            debug_assert!(room >= past.len());
                            buf.data[..past.len()].copy_from_slice(&past);
                            buf.end = past.len();
                        }
                        continue;
                    }
                    Err(step) => {
                        if let Step::Close { linger: true } = step {
                            buf.start = buf.end;
                        }
                        return step;
                    }
                }
            }
            let (body, consumed) = match head.framing {
                Framing::Empty => (&pending[..0], head.len),
                Framing::Length(n) if (pending.len() - head.len) as u64 >= n => {
                    let n = n as usize;
                    (&pending[head.len..head.len + n], head.len + n)
                }
                Framing::Length(n) => {
                    self.want = head.len + n as usize - pending.len();
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
                    let max = usize::try_from(body_limits.max).unwrap_or(usize::MAX);
                    match decode_chunked(conn, buf, head_len, max) {
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
                    let chunked = conn.reading.body().0.take().expect("decoded above");
                    let body = &pending[head.len..head.len + chunked.decoded()];
                    let answer =
                        self.respond(shared, limits, conn, &head, &headers, body, now, None);
                    self.headers = reuse(&mut headers);
                    let close = match answer {
                        Answer::Sent { close } => close,
                        // Decoded in place: it stays whole for the next try.
                        other => {
                            *conn.reading.body().0 = Some(chunked);
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
            let answer = self.respond(shared, limits, conn, &head, &headers, body, now, None);
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

    /// Calls the handler of a request whose body it reads as it arrives (`upload.rs`). `Ok`: the
    /// bytes of the input the request took, head and body, and the bytes read past the body
    /// (the next request's start), and the connection goes on; `Err`: what the turn does instead.
    #[allow(clippy::too_many_arguments)]
    fn stream_body(
        &mut self,
        shared: &Shared,
        limits: &Limits,
        conn: &mut Conn,
        head: &Head<'_>,
        headers: &[Header<'_>],
        prefix: &[u8],
        max: u64,
    ) -> Result<(usize, Vec<u8>), Step> {
        // Sent on an earlier turn, when the body was to be buffered (the limits changed since).
        let sent = matches!(
            conn.reading,
            Reading::Body {
                continue_sent: true,
                ..
            }
        );
        let expect = head.expect_continue && head.version == plugin_api::Version::Http11 && !sent;
        let spec = Spec {
            prefix,
            length: match head.framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            expect,
            max,
        };
        let now = shared.clock.now();
        let answer = self.respond(shared, limits, conn, head, headers, &[], now, Some(spec));
        let outcome = self.upload.take();
        let close = match answer {
            Answer::Sent { close } => close,
            other => return Err(unsent(other)),
        };
        // No outcome: the request was answered without running (a 503), its body unread.
        let Some(Outcome {
            state,
            used,
            past,
            answered,
        }) = outcome
        else {
            return Err(Step::Close { linger: true });
        };
        match state {
            State::Done => match self.finish_request(conn, close) {
                Some(step) => Err(step),
                None => Ok((head.len + used, past)),
            },
            // The handler answered without reading all of the body: the rest is dropped while
            // the connection closes.
            State::Reading => Err(Step::Close { linger: true }),
            State::Failed(reject) if !answered => {
                self.out.clear();
                self.file = None;
                Err(self.reject(conn, reject))
            }
            State::Failed(_) => {
                self.out.clear();
                self.file = None;
                Err(Step::Close { linger: false })
            }
        }
    }

    /// Resets per-request state; `Some` when the connection must close.
    fn finish_request(&mut self, conn: &mut Conn, close: bool) -> Option<Step> {
        conn.answered += 1;
        conn.reading = Reading::HEAD;
        close.then_some(Step::Close { linger: false })
    }

    fn reject(&mut self, conn: &Conn, reject: Reject) -> Step {
        tracing::debug!(peer = %conn.peer, status = reject.status, "refused request: {}", reject.why);
        let date = self.date.get();
        encode_error(&mut self.out, reject.status, reject.why, date);
        Step::Close { linger: true }
    }
}

/// Decodes as much of a chunked body as `buf` holds. `Ok(true)` when complete.
fn decode_chunked(
    conn: &mut Conn,
    buf: &mut InBuf,
    head_len: usize,
    max_body: usize,
) -> Result<bool, Reject> {
    let chunked = conn.reading.body().0.get_or_insert_with(Chunked::default);
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
    let sent = conn.reading.body().1;
    let send = head.expect_continue && head.version == plugin_api::Version::Http11 && !*sent;
    *sent |= send;
    send
}

/// What `process` returns for a request that was not answered.
fn unsent(answer: Answer) -> Step {
    match answer {
        Answer::Park(bulkhead, deadline) => Step::Park(bulkhead, deadline),
        Answer::Lost => Step::Lost,
        Answer::Gone | Answer::Sent { .. } => Step::Close { linger: false },
    }
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
