//! Request heads: the request line and header section, parsed with `httparse` and checked against
//! RFC 9112 and the configured [`Limits`].
//!
//! "Need more bytes" is an ordinary outcome (`Ok(None)`), not an error. Everything that would make
//! the message's framing ambiguous is refused here, before any handler runs: a request smuggled
//! past one parser and not another starts with a guess, and this parser never guesses. Body bytes
//! are left to `body.rs`.
//!
//! # Framing, rule by rule
//! Every refusal is answered with its status and the connection is closed after a lingering
//! half-close (`worker/`). Tests: `ambiguous_framing_is_refused`, `malformed_heads_are_400`,
//! `framing_by_length_and_chunked` here, the tests of `target.rs` (method, target, `Host`),
//! `refuses_bad_framing`, `accepts_extensions_as_the_grammar_has_them` and
//! `accepts_trailer_fields` in `body.rs`, and
//! `refuses_bad_requests_with_the_right_status_and_closes` in `server/tests/http.rs`.
//!
//! | RFC 9112 | rule | here |
//! |---|---|---|
//! | §2.2 | a bare LF ends the request line and field lines (MAY) | accepted (httparse); never in chunk lines |
//! | §2.2 | empty lines before the request line (SHOULD ignore) | skipped, within the head limit |
//! | §2.2 | whitespace between the request line and the first field | 400 (httparse) |
//! | §2.2 | bare CR in a field | 400 (httparse) |
//! | §2.3 | `HTTP/1.0` and `HTTP/1.1`, case-sensitive | other `HTTP/d.d` 505 (SHOULD: 1.x as 1.1; httparse refuses it); others 400 |
//! | §3 | request line: one SP between parts; the method a token | 400 (httparse) |
//! | §3 | a method longer than 32 bytes (RFC 9110 §9.1: unrecognised) | 501, before the line ends |
//! | §3 | a target longer than `max_target_bytes` | 414, before the line ends |
//! | §3.2 | exactly one `Host` in HTTP/1.1; at most one in HTTP/1.0 | 400 |
//! | §3.2 | `Host` is `uri-host [":" port]` (RFC 3986 §3.2.2), or empty | others 400 |
//! | §3.2 | targets: origin-, absolute-, asterisk-form (`OPTIONS` only) | others 400 |
//! | §3.2 | no fragment (`#`) in a target; no `\` | 400 |
//! | §3.2.2 | absolute-form: `http`/`https`, a host, no userinfo (RFC 9110 §4.2) | others 400 |
//! | §3.2.2 | absolute-form and a `Host` naming another authority | 400, not "ignore Host" |
//! | §5 | too many fields, or a header section over `max_head_bytes` | 431 |
//! | §5.1 | a field name is a token; whitespace between it and the colon | others 400 (httparse) |
//! | §5.2 | obs-fold (line folding) in a request | 400 |
//! | §5.5 | NUL, other control bytes, DEL in a field value | 400 (httparse) |
//! | §6.1 | `Transfer-Encoding` in an HTTP/1.0 request is faulty framing | 400 |
//! | §6.1 | chunked must be the final coding, applied once; no empty field line | 400 |
//! | §6.1 | a coding the server does not understand (SHOULD 501) | 400: only `chunked` is accepted |
//! | §6.1, §6.3 (3) | both `Transfer-Encoding` and `Content-Length` | 400, never "TE wins" |
//! | §6.2, §6.3 (5) | `Content-Length` not `1*DIGIT`, or differing values | 400 |
//! | §6.2 | `Content-Length` too large to represent | 413 (400 beside `Transfer-Encoding`) |
//! | §6.3 (5) | a list of identical `Content-Length` values | accepted as one |
//! | §6.3 (6) | `Content-Length` larger than allowed | 413 |
//! | §6.3 (7) | neither header: no body | length 0 |
//! | §7.1 | chunk-size overflow (a numeral too large) | 400 |
//! | §7.1 | a chunked body whose decoded size passes the route's limit | 413 |
//! | §7.1, §2.2 | chunk lines end in CRLF; a bare LF is refused | 400 |
//! | §7.1 | whitespace in a chunk line only as BWS before `;` | others 400 |
//! | §7.1.1 | chunk extensions: token names, token or quoted values; ignored; 4 KiB a line | others 400 |
//! | §7.1.2, §5 | trailer lines are field lines (token name, no space before `:`, no obs-fold, no control bytes) | others 400 |
//! | §7.1.2 | trailer fields read and dropped: 4 KiB a line, 16 KiB in all | longer 400, more 431 |
//! | RFC 9110 §10.1.1 | `Expect` other than `100-continue` | 417 |
//! | RFC 9110 §10.1.1 | `100 Continue`: HTTP/1.1 only, while the body is still to come, never before a 413 | |

use std::mem::MaybeUninit;

use plugin_api::__private::is_tchar;
use plugin_api::{Header, Version, has_token};

use super::target::{self, check_host, check_host_matches, check_method, check_target};
use crate::Limits;

/// A complete, checked request head, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'b> {
    pub method: &'b str,
    pub target: &'b str,
    pub version: Version,
    /// Bytes of the head, including the empty line that ends it.
    pub len: usize,
    pub framing: Framing,
    /// Whether the connection stays open after this exchange, as far as the client is concerned.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (RFC 9110 §10.1.1).
    pub expect_continue: bool,
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Whether `bytes` hold the end of a head: an empty line, after CRLF or a bare LF (RFC 9112 §2.2).
/// Cheap: the worker asks it of the bytes that arrived since a partial head was last parsed, and
/// parses again only when it says yes.
pub(crate) fn head_ends(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|w| w == b"\n\n" || (w[0] == b'\n' && w[1] == b'\r'))
}

/// RFC 9112 §6.3 (6): a body larger than the route's `max` is refused with 413 (a `chunked` one
/// when its decoded size passes it, in `http/body.rs`).
pub(crate) fn check_length(framing: Framing, max: u64) -> Result<(), Reject> {
    match framing {
        Framing::Length(n) if n > max => Err(Reject::new(413, "request body too large")),
        _ => Ok(()),
    }
}

/// A request the server refuses: the status to answer with and a reason for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: u16,
    pub why: &'static str,
}

impl Reject {
    pub const fn new(status: u16, why: &'static str) -> Reject {
        Reject { status, why }
    }
}

/// Parses the head at the start of `buf`, filling `headers`.
///
/// Returns `Ok(None)` when the head is not complete yet and still within the limits.
pub(crate) fn parse_head<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut Vec<Header<'b>>,
) -> Result<Option<Head<'b>>, Reject> {
    let mut raw = [const { MaybeUninit::<httparse::Header<'b>>::uninit() }; Limits::MAX_HEADERS];
    let max_headers = limits.max_headers.min(Limits::MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut raw[..max_headers]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::new(431, "too many header fields"));
        }
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(httparse::Error::HeaderName) => {
            return Err(Reject::new(
                400,
                "malformed header field name (whitespace before the colon, or obs-fold)",
            ));
        }
        Err(_) => return Err(Reject::new(400, "malformed request line or header field")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Reject::new(400, "malformed request line"));
    };
    if target.len() > limits.max_target_bytes {
        return Err(Reject::new(414, "request target too long"));
    }
    if len > limits.max_head_bytes {
        return Err(Reject::new(431, "request header section too large"));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    check_method(method)?;
    let authority = check_target(method, target)?;

    let mut fields = Fields::default();
    headers.clear();
    for h in req.headers.iter() {
        headers.push(Header::new(h.name, h.value));
        fields.add(h.name, h.value)?;
    }
    let framing = fields.framing(version)?;
    if version == Version::Http11 && fields.hosts != 1 {
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1.
        return Err(Reject::new(
            400,
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if fields.hosts > 1 {
        return Err(Reject::new(400, "more than one Host header"));
    }
    if let Some(host) = fields.host {
        // RFC 9112 §3.2: a Host with an invalid value MUST get 400.
        check_host(host)?;
        if let Some(authority) = authority {
            check_host_matches(authority, host)?;
        }
    }
    let keep_alive = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    Ok(Some(Head {
        method,
        target,
        version,
        len,
        framing,
        keep_alive,
        expect_continue: fields.expect_continue,
    }))
}

/// What the header fields said about framing and the connection.
#[derive(Default)]
struct Fields<'b> {
    /// The agreed `Content-Length`, once one was seen.
    length: Option<u64>,
    /// A `Content-Length` too large to represent.
    length_overflow: bool,
    /// `Transfer-Encoding` codings, in order.
    codings: Vec<TransferCoding>,
    hosts: usize,
    /// The (first) `Host` value.
    host: Option<&'b [u8]>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

#[derive(PartialEq, Eq)]
enum TransferCoding {
    Chunked,
    Other,
}

impl<'b> Fields<'b> {
    fn add(&mut self, name: &str, value: &'b [u8]) -> Result<(), Reject> {
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3 (5): a list of identical valid values may be taken as one.
            for item in value.split(|&b| b == b',') {
                let item = item.trim_ascii();
                if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                    return Err(Reject::new(400, "invalid Content-Length"));
                }
                let n = std::str::from_utf8(item)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok());
                match (n, self.length) {
                    (None, _) => self.length_overflow = true,
                    (Some(n), Some(seen)) if n != seen => {
                        return Err(Reject::new(400, "differing Content-Length values"));
                    }
                    (Some(n), _) => self.length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let before = self.codings.len();
            for item in value.split(|&b| b == b',') {
                let item = item.trim_ascii();
                if item.is_empty() {
                    continue;
                }
                self.codings.push(if item.eq_ignore_ascii_case(b"chunked") {
                    TransferCoding::Chunked
                } else {
                    TransferCoding::Other
                });
            }
            // Each line must name a coding, wherever it comes among the others.
            if self.codings.len() == before {
                return Err(Reject::new(400, "empty Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
            self.host.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("connection") {
            self.close |= has_token(value, "close");
            self.keep_alive |= has_token(value, "keep-alive");
        } else if name.eq_ignore_ascii_case("expect") {
            if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                return Err(Reject::new(
                    417,
                    "the only expectation supported is 100-continue",
                ));
            }
        }
        Ok(())
    }

    /// RFC 9112 §6.1 and §6.3: one unambiguous framing, or a refusal.
    fn framing(&self, version: Version) -> Result<Framing, Reject> {
        let has_length = self.length.is_some() || self.length_overflow;
        if !self.codings.is_empty() {
            if has_length {
                return Err(Reject::new(
                    400,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if version == Version::Http10 {
                return Err(Reject::new(400, "Transfer-Encoding in an HTTP/1.0 request"));
            }
            if self.codings != [TransferCoding::Chunked] {
                return Err(Reject::new(
                    400,
                    "the only transfer coding accepted is chunked",
                ));
            }
            return Ok(Framing::Chunked);
        }
        if self.length_overflow {
            return Err(Reject::new(413, "request body too large"));
        }
        // Its size is checked against the limit of the route it goes to (`worker/framing.rs`).
        match self.length {
            None | Some(0) => Ok(Framing::Empty),
            Some(n) => Ok(Framing::Length(n)),
        }
    }
}

/// An incomplete head may still be refused: it is already too long to ever fit.
pub(crate) fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), Reject> {
    // Empty lines before the request line are skipped (RFC 9112 §2.2).
    let buf = &buf[buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())..];
    // A method longer than any this server implements: no need to wait for the rest. (Bytes
    // that are no method at all are httparse's to refuse, with 400.)
    if buf.len() > target::MAX_METHOD && buf[..=target::MAX_METHOD].iter().all(|&b| is_tchar(b)) {
        return Err(target::long_method());
    }
    let line_end = buf.iter().position(|&b| b == b'\n');
    // Request line: method SP target SP version; allow generous room for method and version.
    let line_limit = limits.max_target_bytes + 64;
    if line_end.is_none_or(|end| end > line_limit) && buf.len() > line_limit {
        return Err(Reject::new(414, "request target too long"));
    }
    if buf.len() > limits.max_head_bytes {
        return Err(Reject::new(431, "request header section too large"));
    }
    Ok(())
}

/// `HTTP/x.y` that is not 1.0 or 1.1 is a version we do not speak (505); anything else in that
/// place is a malformed request line (400).
fn version_error(buf: &[u8]) -> Reject {
    let line = buf
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty());
    let version = line.and_then(|l| l.trim_ascii_end().rsplit(|&b| b == b' ').next());
    match version {
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Reject::new(505, "HTTP version not supported")
        }
        Some([b'H', b'T', b'T', b'P', b'/', major]) if major.is_ascii_digit() => {
            Reject::new(505, "HTTP version not supported")
        }
        _ => Reject::new(400, "malformed request line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed<'b> = Result<Option<(Head<'b>, Vec<(String, String)>)>, Reject>;

    fn parse(input: &str) -> Parsed<'_> {
        parse_with(input, &Limits::default())
    }

    fn parse_with<'b>(input: &'b str, limits: &Limits) -> Parsed<'b> {
        let mut headers = Vec::new();
        let head = parse_head(input.as_bytes(), limits, &mut headers)?;
        let pairs = headers
            .iter()
            .map(|h| {
                (
                    h.name().to_owned(),
                    String::from_utf8_lossy(h.value()).into_owned(),
                )
            })
            .collect();
        Ok(head.map(|h| (h, pairs)))
    }

    fn status(input: &str) -> u16 {
        match parse(input) {
            Err(r) => r.status,
            Ok(Some(_)) => 0,
            Ok(None) => 1,
        }
    }

    #[test]
    fn parses_a_simple_request() {
        let (head, headers) = parse("GET /a?b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/a?b");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(
            head.len,
            "GET /a?b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n".len()
        );
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[2], ("x-a".into(), "2".into()));
    }

    #[test]
    fn partial_heads_need_more() {
        for cut in [
            "",
            "G",
            "GET / HTTP/1.1",
            "GET / HTTP/1.1\r\nHost: x\r\n",
            "GET / HTTP/1.1\r\nHo",
        ] {
            assert!(parse(cut).unwrap().is_none(), "{cut:?}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version() {
        let ka = |s| parse(s).unwrap().unwrap().0.keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn framing_by_length_and_chunked() {
        let framing = |s| parse(s).unwrap().unwrap().0.framing;
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            framing(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n"
            ),
            Framing::Length(5)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Framing::Chunked
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            // An empty line of the field is refused wherever it comes among the others.
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
        ];
        for case in cases {
            assert_eq!(status(case), 400, "{case:?}");
        }
    }

    #[test]
    fn a_long_method_is_501_before_its_line_ends_and_garbage_is_not_a_method() {
        let limits = Limits::default();
        let long = "M".repeat(40);
        assert_eq!(
            check_partial(long.as_bytes(), &limits).map_err(|r| r.status),
            Err(501)
        );
        let after_empty_lines = format!("\r\n\r\n{long}");
        let refused = check_partial(after_empty_lines.as_bytes(), &limits);
        assert_eq!(refused.map_err(|r| r.status), Err(501));
        assert!(
            check_partial(&[1u8; 40], &limits).is_ok(),
            "httparse's to refuse"
        );
        assert_eq!(
            status(&format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(33))),
            501
        );
        assert_eq!(
            status(&format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(32))),
            0
        );
    }

    #[test]
    fn malformed_heads_are_400() {
        let cases = [
            "GET / HTTP/1.1\r\n\r\n",                                  // no Host
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",            // two Hosts
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", // obs-fold
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",                      // space before colon
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            "GET nothing HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / FTP/1.1\r\nHost: x\r\n\r\n",
            "G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
        ];
        for case in cases {
            assert_eq!(status(case), 400, "{case:?}");
        }
    }

    #[test]
    fn other_targets_are_accepted() {
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
        assert_eq!(status("GET http://x/a?b HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 0);
    }

    #[test]
    fn versions_we_do_not_speak_are_505() {
        assert_eq!(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/3\r\nHost: x\r\n\r\n"), 505);
    }

    #[test]
    fn expectations() {
        assert!(
            parse("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap()
                .unwrap()
                .0
                .expect_continue
        );
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n"),
            417
        );
    }

    #[test]
    fn the_end_of_a_head_is_found_in_any_piece() {
        assert!(head_ends(b"x\r\n\r\n"));
        assert!(head_ends(b"\n\r"));
        assert!(head_ends(b"a\n\nb"));
        assert!(!head_ends(b"Host: x\r\nAccept: y"));
        assert!(!head_ends(b"\r"));
    }

    #[test]
    fn lengths_past_the_limit_are_413() {
        assert_eq!(
            check_length(Framing::Length(11), 10).unwrap_err().status,
            413
        );
        assert!(check_length(Framing::Length(10), 10).is_ok());
        assert!(check_length(Framing::Chunked, 0).is_ok());
    }

    #[test]
    fn limits_give_414_431_413() {
        let limits = Limits {
            max_target_bytes: 20,
            max_head_bytes: 200,
            max_headers: 3,
            ..Limits::default()
        };
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(30));
        assert_eq!(parse_with(&long_target, &limits).unwrap_err().status, 414);
        let endless_target = format!("GET /{}", "a".repeat(100));
        assert_eq!(
            parse_with(&endless_target, &limits).unwrap_err().status,
            414
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(300)
        );
        assert_eq!(parse_with(&big, &limits).unwrap_err().status, 431);
        let partial_big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(300));
        assert_eq!(parse_with(&partial_big, &limits).unwrap_err().status, 431);
        let many = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_with(many, &limits).unwrap_err().status, 431);
        let huge = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse_with(huge, &limits).unwrap_err().status, 413);
    }
}
