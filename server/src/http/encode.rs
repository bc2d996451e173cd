//! Response encoding: status line, the server's framing headers, the handler's headers, the body.
//!
//! Everything is appended to the worker's output buffer, so the responses to all requests found in
//! one read leave in one `write`. The `Date` header is formatted at most once a second per worker
//! ([`DateCache`]).

use std::time::{SystemTime, UNIX_EPOCH};

use plugin_api::{ResponseView, Version, reason};

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// HTTP/1.1 default: nothing to say.
    KeepAlive11,
    /// HTTP/1.0 keep-alive: say `keep-alive` (RFC 9112 §9.3 and Appendix C.2.2).
    KeepAlive10,
    /// The connection closes after this response: say `close`.
    Close,
}

/// How a response's body is delimited on the wire (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delimit {
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    Chunked,
    /// Neither: the body ends when the connection closes (HTTP/1.0, length unknown).
    Close,
}

/// Appends `response` to `out`.
///
/// For `HEAD` (`head_only`), the headers are those of the `GET` response, `Content-Length`
/// included, and no body is sent (RFC 9110 §9.3.2). Status 1xx, 204 and 304 carry neither a body
/// nor a `Content-Length` (RFC 9110 §8.6, §15.3.5, §15.4.5).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    response: ResponseView<'_>,
    head_only: bool,
    persist: Persist,
    date: &[u8],
) {
    let delimit = Delimit::Length(response.body.len() as u64);
    encode_head(out, response.status, response.head, delimit, persist, date);
    if !head_only && !bodyless(response.status) {
        out.extend_from_slice(response.body);
    }
}

/// Appends a response's status line and headers, for a body delimited by `delimit` (none for a
/// bodyless status).
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    status: u16,
    head: &[u8],
    delimit: Delimit,
    persist: Persist,
    date: &[u8],
) {
    status_line(out, status);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    if !bodyless(status) {
        match delimit {
            Delimit::Length(n) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            Delimit::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Delimit::Close => {}
        }
    }
    match persist {
        Persist::KeepAlive11 => {}
        Persist::KeepAlive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(head);
    out.extend_from_slice(b"\r\n");
}

/// Whether a status never carries a body (RFC 9110 §15.2, §15.3.5, §15.4.5).
pub(crate) fn bodyless(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// Appends the framing of one chunk of `len` bytes (RFC 9112 §7.1): its size line. The data and
/// then [`CHUNK_END`] follow.
pub(crate) fn chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// What follows each chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and an empty trailer section: the end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends a short plain-text error response that closes the connection.
pub(crate) fn encode_error(out: &mut Vec<u8>, status: u16, why: &str, date: &[u8]) {
    status_line(out, status);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    push_decimal(out, why.len() as u64 + 1);
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(why.as_bytes());
    out.push(b'\n');
}

/// The header lines of every `503` that asks the client to come back.
const BUSY_HEAD: &[u8] = b"retry-after: 1\r\ncontent-type: text/plain; charset=utf-8\r\n";

/// Appends a `503` with `Retry-After` (RFC 9110 §10.2.3, §15.6.4) whose body is `why`, a line
/// ending in `\n`: for a server too busy to queue a request, or a request refused by a bulkhead.
pub(crate) fn encode_busy(
    out: &mut Vec<u8>,
    why: &str,
    head_only: bool,
    persist: Persist,
    date: &[u8],
) {
    let view = ResponseView {
        status: 503,
        head: BUSY_HEAD,
        body: why.as_bytes(),
        close: false,
    };
    encode(out, view, head_only, persist, date);
}

/// The interim `100 Continue` (RFC 9110 §15.2.1).
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How the response persists, from the request's version and the decision to close.
pub(crate) fn persist(version: Version, close: bool) -> Persist {
    match (close, version) {
        (true, _) => Persist::Close,
        (false, Version::Http10) => Persist::KeepAlive10,
        (false, Version::Http11) => Persist::KeepAlive11,
    }
}

fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The `Date` header value, reformatted only when the second changes.
pub(crate) struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    pub fn new() -> DateCache {
        DateCache {
            second: u64::MAX,
            text: [0; 29],
        }
    }

    /// The time of the last [`refresh`](Self::refresh), in IMF-fixdate form (RFC 9110 §5.6.7).
    pub fn get(&self) -> &[u8] {
        &self.text
    }

    /// The current time in IMF-fixdate form (RFC 9110 §5.6.7).
    pub fn now(&mut self) -> &[u8] {
        self.refresh();
        &self.text
    }

    /// Reads the clock and reformats if the second changed.
    pub fn refresh(&mut self) {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text = plugin_api::http_date(second);
        }
    }
}

#[cfg(test)]
mod tests {
    use plugin_api::ResponseBuilder;

    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_a_response() {
        let r = ResponseBuilder::empty_200()
            .body("Hello")
            .content_type("text/plain")
            .build()
            .unwrap();
        let mut out = Vec::new();
        encode(&mut out, r.view(), false, Persist::KeepAlive11, b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nHello"
        );
        out.clear();
        encode(&mut out, r.view(), true, Persist::Close, b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length: 5\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\n"
        );
    }

    #[test]
    fn bodyless_statuses_have_no_length() {
        let r = ResponseBuilder::new(204).body("ignored").build().unwrap();
        let mut out = Vec::new();
        encode(&mut out, r.view(), false, Persist::KeepAlive10, b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 204 No Content\r\ndate: D\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn error_responses_close() {
        let mut out = Vec::new();
        encode_error(&mut out, 400, "bad", b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 400 Bad Request\r\ndate: D\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbad\n"
        );
        let mut c = Vec::new();
        chunk_size(&mut c, 0x1a2b);
        chunk_size(&mut c, 0);
        assert_eq!(text(&c), "1a2b\r\n0\r\n");
        let mut n = Vec::new();
        push_decimal(&mut n, 0);
        push_decimal(&mut n, u64::MAX);
        assert_eq!(text(&n), "018446744073709551615");
    }
}
