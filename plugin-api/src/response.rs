//! [`Response`] and [`ResponseBuilder`]: what a handler returns.
//!
//! The builder checks every header as it is added, so a response that was built can always be
//! written to the wire as it is: a handler can never smuggle a CR or LF into the stream. The server
//! adds the framing headers itself (`Date`, `Content-Length`, `Connection`) in
//! `server/src/http/encode.rs`.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

use crate::body::{Body, BodyWriter, FileBody, StreamBody};

/// A complete HTTP response: status, header lines and body.
///
/// Build one with [`ResponseBuilder`]. Header lines are kept encoded (`name: value\r\n`), which is
/// how they cross the plugin boundary and how the server writes them. The body is bytes, a file or
/// a stream ([`Body`]).
pub struct Response {
    status: u16,
    head: Vec<u8>,
    body: Body,
    close: bool,
}

impl Response {
    /// A `text/plain; charset=utf-8` response with `body`: the shape of most refusals.
    ///
    /// ```
    /// let r = plugin_api::Response::text(404, "no such user\n");
    /// assert_eq!((r.status(), r.body()), (404, &b"no such user\n"[..]));
    /// ```
    ///
    /// # Panics
    /// If `status` is not a final status (200–599): it is meant for constants.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        ResponseBuilder::new(status)
            .content_type("text/plain; charset=utf-8")
            .body(body)
            .build()
            .expect("a final status and a constant content type")
    }

    /// The response as borrowed parts, as the server encodes it. A file or stream body shows as
    /// empty: see [`content`](Self::content).
    pub fn view(&self) -> ResponseView<'_> {
        ResponseView {
            status: self.status,
            head: &self.head,
            body: self.body(),
            close: self.close,
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The header fields the handler set, in order (framing headers are the server's).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        HeaderLines(&self.head).map_while(|line| {
            let (name, value) = line?;
            Some((std::str::from_utf8(name).ok()?, value))
        })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The header lines as encoded: `name: value\r\n` each.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The body, when it is bytes; empty for a file or a stream.
    pub fn body(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(bytes) => bytes,
            Body::File(_) | Body::Stream(_) => &[],
        }
    }

    /// Takes the body out, when it is bytes; empty for a file or a stream.
    pub fn into_body(self) -> Vec<u8> {
        match self.body {
            Body::Bytes(bytes) => bytes,
            Body::File(_) | Body::Stream(_) => Vec::new(),
        }
    }

    /// The body, whatever it is.
    pub fn content(&self) -> &Body {
        &self.body
    }

    /// Takes the body out, whatever it is.
    pub fn into_content(self) -> Body {
        self.body
    }

    /// Status, `close`, header lines and body.
    pub(crate) fn into_parts(self) -> (u16, bool, Vec<u8>, Body) {
        (self.status, self.close, self.head, self.body)
    }

    /// Whether the handler asked for the connection to be closed after this response
    /// (`Connection: close`).
    pub fn close(&self) -> bool {
        self.close
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("head", &String::from_utf8_lossy(&self.head))
            .field("body", &self.body)
            .field("close", &self.close)
            .finish()
    }
}

/// A response borrowed in parts: what crosses the plugin boundary and what the server encodes.
///
/// A view from [`Response::view`] is valid by construction; one assembled from raw parts (by the
/// host, from what a plugin handed over) must go through [`ResponseView::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseView<'a> {
    /// The status code, 200 to 599.
    pub status: u16,
    /// Header lines, each `name: value\r\n`.
    pub head: &'a [u8],
    /// The body.
    pub body: &'a [u8],
    /// Close the connection after this response.
    pub close: bool,
}

impl<'a> ResponseView<'a> {
    /// A view of raw parts, after checking everything the builder checks, in one pass and
    /// without allocating.
    ///
    /// # Errors
    /// The first problem found: a status that is not a final one (200–599), a line that is not
    /// `name: value\r\n`, a name that is not a token, a value with CR, LF, NUL or another control
    /// byte, or a header the server sets itself. The bytes checked are the bytes sent: a value's
    /// spaces and tabs around it are allowed (RFC 9110 §5.5), nothing else is trimmed away.
    pub fn check(status: u16, head: &'a [u8], body: &'a [u8], close: bool) -> Result<Self, Error> {
        if !FINAL.contains(&status) {
            return Err(Error::InvalidStatus(status));
        }
        let mut rest = head;
        while !rest.is_empty() {
            // A value holds no CR (checked below), so the first CR ends the line.
            let end = rest
                .iter()
                .position(|&b| b == b'\r')
                .filter(|&i| rest.get(i + 1) == Some(&b'\n'))
                .ok_or(Error::MalformedHeaderLines)?;
            let line = &rest[..end];
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(Error::MalformedHeaderLines)?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            check_field(name, value)?;
            if reserved(name) || (name.len() == 10 && name.eq_ignore_ascii_case(b"connection")) {
                return Err(Error::ReservedHeader(String::from_utf8_lossy(name).into()));
            }
            rest = &rest[end + 2..];
        }
        Ok(ResponseView {
            status,
            head,
            body,
            close,
        })
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Response {
        Response {
            status: self.status,
            head: self.head.to_vec(),
            body: Body::Bytes(self.body.to_vec()),
            close: self.close,
        }
    }
}

/// Builds a [`Response`], one call per part.
///
/// ```
/// use plugin_api::ResponseBuilder;
///
/// let response = ResponseBuilder::empty_200()
///     .body(b"Hello")
///     .content_type("text/plain")
///     .build()
///     .unwrap();
/// assert_eq!(response.body(), b"Hello");
///
/// let refused = ResponseBuilder::new(200).header("x-evil", "a\r\nb").build();
/// assert!(refused.is_err());
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ResponseBuilder {
    response: Response,
    error: Option<Error>,
}

impl ResponseBuilder {
    /// A `200 OK` with no headers and an empty body.
    pub fn empty_200() -> ResponseBuilder {
        ResponseBuilder::new(200)
    }

    /// A response with status `status` (checked by [`build`](Self::build)).
    pub fn new(status: u16) -> ResponseBuilder {
        let mut builder = ResponseBuilder {
            response: Response {
                status: 200,
                head: Vec::new(),
                body: Body::Bytes(Vec::new()),
                close: false,
            },
            error: None,
        };
        builder = builder.status(status);
        builder
    }

    /// Sets the status code: a final one, 200 to 599 (RFC 9110 §15). Informational answers
    /// (`100 Continue`) are the server's to send; a handler cannot switch protocols.
    pub fn status(mut self, status: u16) -> ResponseBuilder {
        if !FINAL.contains(&status) {
            self.fail(Error::InvalidStatus(status));
        }
        self.response.status = status;
        self
    }

    /// Adds a header field. Repeating a name adds another field.
    ///
    /// `Content-Length`, `Transfer-Encoding` and `Date` belong to the server and are refused;
    /// `Connection: close` asks the server to close the connection after this response.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> ResponseBuilder {
        let value = value.as_ref();
        if let Err(e) = check_field(name.as_bytes(), value) {
            self.fail(e);
            return self;
        }
        if name.eq_ignore_ascii_case("connection") {
            self.response.close |= has_token(value, "close");
            return self;
        }
        if reserved(name.as_bytes()) {
            self.fail(Error::ReservedHeader(name.into()));
            return self;
        }
        let head = &mut self.response.head;
        head.reserve(name.len() + value.len() + 4);
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
        self
    }

    /// Adds a `Content-Type` header.
    pub fn content_type(self, value: &str) -> ResponseBuilder {
        self.header("content-type", value)
    }

    /// Sets the body: `&[u8]`, `&[u8; N]`, `Vec<u8>`, `&str` or `String`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> ResponseBuilder {
        self.response.body = Body::Bytes(body.into());
        self
    }

    /// Makes the body the whole of `file`, as it is long now. The server sends it straight from
    /// the file to the socket (`sendfile(2)` on Linux), never through a buffer, and closes it.
    pub fn file(self, file: File) -> ResponseBuilder {
        match file.metadata() {
            Ok(meta) => self.file_range(file, 0, meta.len()),
            Err(e) => self.failed(Error::File(e.to_string())),
        }
    }

    /// Makes the body `len` bytes of `file` from `offset` (a byte range, say), sent as
    /// [`file`](Self::file) sends.
    pub fn file_range(mut self, file: File, offset: u64, len: u64) -> ResponseBuilder {
        let fits = file
            .metadata()
            .map_err(|e| Error::File(e.to_string()))
            .and_then(|meta| match offset.checked_add(len) {
                Some(end) if end <= meta.len() => Ok(()),
                _ => Err(Error::File(format!(
                    "{len} bytes from {offset} run past the end of a file of {}",
                    meta.len()
                ))),
            });
        if let Err(e) = fits {
            return self.failed(e);
        }
        self.response.body = Body::File(FileBody { file, offset, len });
        self
    }

    /// Makes the body the file at `path`, opened now (see [`file`](Self::file)).
    pub fn file_path(self, path: impl AsRef<Path>) -> ResponseBuilder {
        let path = path.as_ref();
        match File::open(path) {
            Ok(file) => self.file(file),
            Err(e) => self.failed(Error::File(format!("{}: {e}", path.display()))),
        }
    }

    /// Makes the body a stream: once the status and headers are on their way, the server calls
    /// `produce` on the handler's thread with a [`BodyWriter`], and the body is what it writes. It
    /// goes out `chunked` (to an HTTP/1.0 client: ended by closing the connection); see
    /// [`stream_sized`](Self::stream_sized) for a body of known length.
    ///
    /// The writer blocks while the client's socket is full. A write fails once the client has
    /// gone: return then. An `Err` returned from `produce` (or a panic) cuts the body short, and
    /// the server closes the connection so that the client sees it incomplete.
    ///
    /// ```
    /// use std::io::Write;
    /// use plugin_api::ResponseBuilder;
    ///
    /// let events = ResponseBuilder::empty_200()
    ///     .content_type("text/event-stream")
    ///     .stream(|out| {
    ///         for n in 0..3 {
    ///             write!(out, "data: {n}\n\n")?;
    ///             out.flush()?;
    ///         }
    ///         Ok(())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let mut body = Vec::new();
    /// # let plugin_api::Body::Stream(stream) = events.into_content() else { panic!() };
    /// # stream.collect(&mut body).unwrap();
    /// # assert_eq!(body, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
    /// ```
    pub fn stream<F>(mut self, produce: F) -> ResponseBuilder
    where
        F: FnOnce(&mut BodyWriter<'_>) -> io::Result<()> + Send + 'static,
    {
        self.response.body = Body::Stream(StreamBody {
            len: None,
            produce: Box::new(produce),
        });
        self
    }

    /// Like [`stream`](Self::stream), for a body of exactly `len` bytes, sent with
    /// `Content-Length`. Writing more fails; writing less closes the connection after it.
    pub fn stream_sized<F>(mut self, len: u64, produce: F) -> ResponseBuilder
    where
        F: FnOnce(&mut BodyWriter<'_>) -> io::Result<()> + Send + 'static,
    {
        self.response.body = Body::Stream(StreamBody {
            len: Some(len),
            produce: Box::new(produce),
        });
        self
    }

    /// The finished response.
    ///
    /// # Errors
    /// The first invalid part that was given: a status outside 200–599, a header name that is not a
    /// token, a header value with CR, LF, NUL or another control byte, or a header the server owns.
    pub fn build(self) -> Result<Response, Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.response),
        }
    }

    fn fail(&mut self, error: Error) {
        self.error.get_or_insert(error);
    }

    fn failed(mut self, error: Error) -> ResponseBuilder {
        self.fail(error);
        self
    }
}

/// Why a response could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The status code is not a final one: 200 to 599.
    InvalidStatus(u16),
    /// A header name is empty or has a byte that is not a token character (RFC 9110 §5.1).
    InvalidHeaderName(String),
    /// A header value has CR, LF, NUL or another control byte (RFC 9110 §5.5).
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
    /// The header is set by the server (`Content-Length`, `Transfer-Encoding`, `Date`; in raw
    /// response lines also `Connection`, which is `RawResponse::CLOSE`).
    ReservedHeader(String),
    /// Encoded header lines are not `name: value\r\n` lines.
    MalformedHeaderLines,
    /// A file body cannot be used: it cannot be opened or read, or the range runs past its end.
    File(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidStatus(s) => {
                write!(f, "invalid status code {s}: a response's is 200 to 599")
            }
            Error::InvalidHeaderName(n) => write!(f, "invalid header name {n:?}"),
            Error::InvalidHeaderValue { name } => write!(
                f,
                "invalid value for header {name:?}: CR, LF, NUL and control bytes are not allowed"
            ),
            Error::ReservedHeader(n) => write!(f, "header {n:?} is set by the server"),
            Error::MalformedHeaderLines => f.write_str("header lines are not `name: value\\r\\n`"),
            Error::File(why) => write!(f, "file body: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Whether a comma-separated header value contains `token` (any case), as in `Connection`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The reason phrase for a status code, or `""` for codes without a well-known one.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A header field's syntax: a token name (RFC 9110 §5.6.2) and a value without CR, LF, NUL or other
/// control bytes but tab (RFC 9110 §5.5).
fn check_field(name: &[u8], value: &[u8]) -> Result<(), Error> {
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::InvalidHeaderName(
            String::from_utf8_lossy(name).into(),
        ));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::InvalidHeaderValue {
            name: String::from_utf8_lossy(name).into(),
        });
    }
    Ok(())
}

/// The final statuses a handler may answer with.
const FINAL: std::ops::RangeInclusive<u16> = 200..=599;

/// A value without the optional whitespace around it (spaces and tabs, RFC 9110 §5.6.3).
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ' && b != b'\t');
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(start), Some(end)) => &value[start..=end],
        _ => &[],
    }
}

/// Headers the server writes itself.
fn reserved(name: &[u8]) -> bool {
    match name.len() {
        4 => name.eq_ignore_ascii_case(b"date"),
        14 => name.eq_ignore_ascii_case(b"content-length"),
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
    }
}

/// `tchar` of RFC 9110 §5.6.2 (the host checks request tokens with it too).
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_tchar`] as a table: header names are checked on every response a plugin returns.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
            )
            || matches!(c, b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    table
};

/// Iterates `name: value\r\n` lines; yields `None` for a malformed line.
struct HeaderLines<'a>(&'a [u8]);

impl<'a> Iterator for HeaderLines<'a> {
    type Item = Option<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let Some(end) = self.0.windows(2).position(|w| w == b"\r\n") else {
            self.0 = &[];
            return Some(None);
        };
        let line = &self.0[..end];
        self.0 = &self.0[end + 2..];
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(None);
        };
        Some(Some((&line[..colon], trim_ows(&line[colon + 1..]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_seed_response() {
        let r = ResponseBuilder::empty_200()
            .body(b"Hello")
            .content_type("text/plain")
            .build()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.head(), b"content-type: text/plain\r\n");
        assert_eq!(r.header("Content-Type"), Some(&b"text/plain"[..]));
        assert_eq!(r.body(), b"Hello");
        assert!(!r.close());
    }

    #[test]
    fn body_takes_every_usual_type() {
        let from = |b: ResponseBuilder| b.build().unwrap().into_body();
        assert_eq!(from(ResponseBuilder::empty_200().body(&b"ab"[..])), b"ab");
        assert_eq!(from(ResponseBuilder::empty_200().body(vec![1u8])), [1]);
        assert_eq!(from(ResponseBuilder::empty_200().body("s")), b"s");
        assert_eq!(
            from(ResponseBuilder::empty_200().body(String::from("t"))),
            b"t"
        );
    }

    #[test]
    fn refuses_what_would_corrupt_the_wire() {
        let err = |b: ResponseBuilder| b.build().unwrap_err();
        assert_eq!(
            err(ResponseBuilder::empty_200().header("x", "a\r\nb")),
            Error::InvalidHeaderValue { name: "x".into() }
        );
        assert_eq!(
            err(ResponseBuilder::empty_200().header("x", b"a\0")),
            Error::InvalidHeaderValue { name: "x".into() }
        );
        assert_eq!(
            err(ResponseBuilder::empty_200().header("x y", "a")),
            Error::InvalidHeaderName("x y".into())
        );
        assert_eq!(
            err(ResponseBuilder::empty_200().header("", "a")),
            Error::InvalidHeaderName("".into())
        );
        assert_eq!(
            err(ResponseBuilder::empty_200().header("Content-Length", "3")),
            Error::ReservedHeader("Content-Length".into())
        );
        assert_eq!(err(ResponseBuilder::new(42)), Error::InvalidStatus(42));
        // The first error wins.
        assert_eq!(
            err(ResponseBuilder::new(1000).header("x y", "a")),
            Error::InvalidStatus(1000)
        );
    }

    #[test]
    fn connection_close_is_a_flag() {
        let r = ResponseBuilder::new(200)
            .header("Connection", "Keep-Alive, Close")
            .build()
            .unwrap();
        assert!(r.close());
        assert!(r.head().is_empty());
    }

    #[test]
    fn check_rechecks_plugin_output() {
        let check = |status, head: &'static [u8]| ResponseView::check(status, head, b"x", false);
        let r = check(404, b"a: 1\r\nb: two words\r\n").unwrap().to_owned();
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(headers, [("a", &b"1"[..]), ("b", &b"two words"[..])]);
        assert_eq!(r.view(), check(404, b"a: 1\r\nb: two words\r\n").unwrap());
        assert_eq!(check(200, b"a: 1\r\nb"), Err(Error::MalformedHeaderLines));
        assert_eq!(
            check(200, b"a: 1\r\n\r\nx: y\r\n"),
            Err(Error::MalformedHeaderLines)
        );
        let bad_value = check(200, b"a: 1\nb: 2\r\n");
        assert!(matches!(bad_value, Err(Error::InvalidHeaderValue { .. })));
        assert!(matches!(
            check(200, b"a b: 1\r\n"),
            Err(Error::InvalidHeaderName(_))
        ));
        assert!(matches!(
            check(200, b"Date: x\r\n"),
            Err(Error::ReservedHeader(_))
        ));
        let connection = check(200, b"connection: close\r\n");
        assert!(matches!(connection, Err(Error::ReservedHeader(_))));
        assert_eq!(check(99, b""), Err(Error::InvalidStatus(99)));
    }

    #[test]
    fn check_looks_at_the_bytes_that_are_sent() {
        let check = |status, head: &'static [u8]| ResponseView::check(status, head, b"x", false);
        // A line break at either end of a value was trimmed before it was checked, and went out
        // as a bare LF: a second header, or the end of the head, for a lenient client.
        for head in [
            &b"x: \nContent-Length: 0\r\n"[..],
            b"x: a\n\r\n",
            b"x:\x0bvalue\r\n",
            b"x: a \x0c\r\n",
        ] {
            assert!(
                matches!(check(200, head), Err(Error::InvalidHeaderValue { .. })),
                "{head:?}"
            );
        }
        let spaced = check(200, b"x: \t a b \t\r\ny:\r\n").unwrap().to_owned();
        let headers: Vec<_> = spaced.headers().collect();
        assert_eq!(headers, [("x", &b"a b"[..]), ("y", &b""[..])]);
    }

    #[test]
    fn only_final_statuses_are_answers() {
        for status in [100, 101, 103, 199, 600, 999] {
            assert_eq!(
                ResponseView::check(status, b"", b"", false),
                Err(Error::InvalidStatus(status))
            );
            assert_eq!(
                ResponseBuilder::new(status).build().unwrap_err(),
                Error::InvalidStatus(status)
            );
        }
        for status in [200, 204, 304, 404, 599] {
            assert!(ResponseView::check(status, b"", b"", false).is_ok());
            assert!(ResponseBuilder::new(status).build().is_ok());
        }
    }
}
