//! [`Request`]: one parsed HTTP request, as the handler sees it.
//!
//! A request borrows everything from the buffer it was read into: no byte is copied to build it,
//! and the same value crosses the plugin boundary as a pointer (it is `#[repr(C)]`). The server
//! builds it after parsing (`server/src/http/parse.rs`); tests build it with [`Request::new`].

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::abi::{BodySource, RawBytes, RawPeer};
pub use crate::abi::{Header, Request};
use crate::body::BodyReader;

/// The pieces [`Request::new`] is built from. `target` is split into path and query for you.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a str,
    /// The request target as sent: `/path?query`, `http://host/path`, or `*`.
    pub target: &'a str,
    /// The protocol version.
    pub version: Version,
    /// The header fields in the order they arrived.
    pub headers: &'a [Header<'a>],
    /// The decoded body.
    pub body: &'a [u8],
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// The route prefix that chose the handler (`/hello`), or `""`.
    pub mount: &'a str,
    /// Where the body is read from as it arrives, when `body` is not all of it (the server sets
    /// it for a body it did not read whole).
    pub source: Option<&'a BodySource>,
}

impl Default for RequestParts<'_> {
    fn default() -> Self {
        RequestParts {
            method: "GET",
            target: "/",
            version: Version::Http11,
            headers: &[],
            body: &[],
            peer: None,
            mount: "",
            source: None,
        }
    }
}

impl<'a> Request<'a> {
    /// Builds a request from borrowed parts.
    ///
    /// ```
    /// use plugin_api::{Header, Request, RequestParts};
    ///
    /// let headers = [Header::new("Host", b"example.com")];
    /// let request = Request::new(RequestParts {
    ///     method: "GET",
    ///     target: "/hello?name=ann",
    ///     headers: &headers,
    ///     ..RequestParts::default()
    /// });
    /// assert_eq!(request.path(), "/hello");
    /// assert_eq!(request.query(), Some("name=ann"));
    /// assert_eq!(request.header("host"), Some("example.com"));
    /// ```
    pub fn new(parts: RequestParts<'a>) -> Request<'a> {
        let (path, query) = split_target(parts.target);
        Request {
            method: RawBytes::new(parts.method.as_bytes()),
            target: RawBytes::new(parts.target.as_bytes()),
            path: RawBytes::new(path.as_bytes()),
            query: RawBytes::new(query.unwrap_or("").as_bytes()),
            has_query: query.is_some() as u8,
            version: parts.version as u8,
            mount: RawBytes::new(parts.mount.as_bytes()),
            headers: parts.headers.as_ptr(),
            headers_len: parts.headers.len(),
            body: RawBytes::new(parts.body),
            peer: RawPeer::new(parts.peer),
            source: parts
                .source
                .map_or(std::ptr::null(), |s| s as *const BodySource),
            _borrow: PhantomData,
        }
    }

    /// The same request with another mount prefix (the router sets it before calling a plugin).
    pub fn with_mount(&self, mount: &'a str) -> Request<'a> {
        Request {
            mount: RawBytes::new(mount.as_bytes()),
            ..*self
        }
    }

    /// The method, e.g. `GET`. Methods are case-sensitive (RFC 9110 §9.1).
    pub fn method(&self) -> &'a str {
        str_of(self.method)
    }

    /// The request target exactly as sent.
    pub fn target(&self) -> &'a str {
        str_of(self.target)
    }

    /// The path, still percent-encoded: `/a/b` for `/a/b?x=1` and for `http://host/a/b?x=1`, `*`
    /// for `OPTIONS *`.
    pub fn path(&self) -> &'a str {
        str_of(self.path)
    }

    /// The query string after `?`, without the `?`.
    pub fn query(&self) -> Option<&'a str> {
        (self.has_query != 0).then(|| str_of(self.query))
    }

    /// The route prefix under which the handler was reached (`/hello`), or `""` when the handler
    /// serves every path.
    pub fn mount(&self) -> &'a str {
        str_of(self.mount)
    }

    /// The path below the mount prefix: `/x` for `/hello/x` mounted at `/hello`, `/` for `/hello`.
    pub fn subpath(&self) -> &'a str {
        let rest = self.path().get(self.mount().len()..).unwrap_or("");
        if rest.is_empty() { "/" } else { rest }
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        if self.version == Version::Http10 as u8 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// All header fields, in the order they arrived.
    pub fn headers(&self) -> &'a [Header<'a>] {
        if self.headers_len == 0 || self.headers.is_null() {
            return &[];
        }
        // SAFETY: `headers`/`headers_len` were taken from a `&'a [Header<'a>]` in `Request::new`,
        // or written by the host under the ABI contract, which promises the same.
        unsafe { std::slice::from_raw_parts(self.headers, self.headers_len) }
    }

    /// The first value of the header `name` (any case), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of the header `name` (any case), as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.header_all(name).next()
    }

    /// Every value of the header `name` (any case), in order; repeated headers are all kept.
    pub fn header_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers()
            .iter()
            .filter(move |h| h.name().eq_ignore_ascii_case(name))
            .map(|h| h.value())
    }

    /// The decoded body, when the server read it whole before calling the handler (every body up
    /// to the server's `buffer_body_bytes`); empty when it is to be read as it arrives, with
    /// [`body_reader`](Self::body_reader) (see [`body_streams`](Self::body_streams)).
    pub fn body(&self) -> &'a [u8] {
        // SAFETY: set from a `&'a [u8]` in `Request::new`, or by the host under the ABI contract.
        unsafe { self.body.as_slice() }
    }

    /// Whether the body is read as it arrives ([`body_reader`](Self::body_reader)) rather than
    /// whole in [`body`](Self::body).
    pub fn body_streams(&self) -> bool {
        !self.source.is_null()
    }

    /// The whole body as an [`io::Read`](std::io::Read), however it arrives: what
    /// [`body`](Self::body) holds, or the body read from the client as the handler asks for it
    /// (then the first read sends `100 Continue` to a client that waits for one).
    ///
    /// ```
    /// use std::io::Read;
    /// use plugin_api::{Request, RequestParts};
    ///
    /// let request = Request::new(RequestParts { body: b"abc", ..Default::default() });
    /// let mut body = String::new();
    /// request.body_reader().read_to_string(&mut body).unwrap();
    /// assert_eq!(body, "abc");
    /// ```
    pub fn body_reader(&self) -> BodyReader<'a> {
        BodyReader {
            buffered: self.body(),
            // SAFETY: set from a `&'a BodySource` in `Request::new`, or by the host under the ABI
            // contract, which keeps it valid for the call.
            source: unsafe { self.source.as_ref() },
        }
    }

    /// The client's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer.get()
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("version", &self.version())
            .field("headers", &self.headers())
            .field("body_len", &self.body().len())
            .field("peer", &self.peer())
            .finish()
    }
}

impl<'a> Header<'a> {
    /// A header from its name and value.
    pub const fn new(name: &'a str, value: &'a [u8]) -> Header<'a> {
        Header {
            name: RawBytes::new(name.as_bytes()),
            value: RawBytes::new(value),
            _borrow: PhantomData,
        }
    }

    /// The name, in the case the client sent it.
    pub fn name(&self) -> &'a str {
        str_of(self.name)
    }

    /// The value, without surrounding whitespace. Not necessarily UTF-8 (RFC 9110 §5.5).
    pub fn value(&self) -> &'a [u8] {
        // SAFETY: set from a `&'a [u8]` in `Header::new`, or by the host under the ABI contract.
        unsafe { self.value.as_slice() }
    }
}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.name(),
            String::from_utf8_lossy(self.value())
        )
    }
}

/// The HTTP version of a request.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`
    Http10 = 0,
    /// `HTTP/1.1`
    Http11 = 1,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

impl RawPeer {
    pub(crate) fn new(peer: Option<SocketAddr>) -> RawPeer {
        let mut ip = [0; 16];
        let (family, port) = match peer {
            None => (0, 0),
            Some(SocketAddr::V4(a)) => {
                ip[..4].copy_from_slice(&a.ip().octets());
                (4, a.port())
            }
            Some(SocketAddr::V6(a)) => {
                ip = a.ip().octets();
                (6, a.port())
            }
        };
        RawPeer { family, port, ip }
    }

    pub(crate) fn get(&self) -> Option<SocketAddr> {
        let ip = match self.family {
            4 => IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            )),
            6 => IpAddr::V6(Ipv6Addr::from(self.ip)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

/// Splits a request target into path and query (RFC 9112 §3.2): origin-form `/p?q`,
/// absolute-form `http://authority/p?q` (path `/` when empty), and asterisk-form `*`.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let rest = match scheme_len(target) {
        Some(n) => {
            let after = &target[n..];
            match after.find(['/', '?']) {
                Some(i) => &after[i..],
                None => "",
            }
        }
        None => target,
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// The length of `http://` or `https://` (any case) at the start of `target`.
fn scheme_len(target: &str) -> Option<usize> {
    let bytes = target.as_bytes();
    for scheme in ["http://", "https://"] {
        if bytes.len() >= scheme.len()
            && bytes[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        {
            return Some(scheme.len());
        }
    }
    None
}

fn str_of<'a>(raw: RawBytes) -> &'a str {
    // SAFETY: every string field is set from a `&'a str` in `Request::new`/`Header::new`, or by the
    // host under the ABI contract, which promises valid UTF-8 that lives for the call.
    unsafe { std::str::from_utf8_unchecked(raw.as_slice()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_target_form() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1")));
        assert_eq!(split_target("/a"), ("/a", None));
        assert_eq!(split_target("/a?"), ("/a", Some("")));
        assert_eq!(split_target("http://h:80/p?q"), ("/p", Some("q")));
        assert_eq!(split_target("HTTPS://h"), ("/", None));
        assert_eq!(split_target("http://h?q"), ("/", Some("q")));
        assert_eq!(split_target("*"), ("*", None));
    }

    #[test]
    fn headers_are_case_insensitive_and_repeatable() {
        let headers = [
            Header::new("Accept", b"a"),
            Header::new("X-Bad", &[0xff]),
            Header::new("accept", b"b"),
        ];
        let req = Request::new(RequestParts {
            headers: &headers,
            peer: Some("[::1]:8080".parse().unwrap()),
            ..RequestParts::default()
        });
        assert_eq!(req.header("ACCEPT"), Some("a"));
        let all: Vec<&[u8]> = req.header_all("accept").collect();
        assert_eq!(all, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(req.header("x-bad"), None);
        assert_eq!(req.header_bytes("x-bad"), Some(&[0xff][..]));
        assert_eq!(req.peer(), Some("[::1]:8080".parse().unwrap()));
    }

    #[test]
    fn subpath_is_relative_to_the_mount() {
        let req = Request::new(RequestParts {
            target: "/kv/key?x",
            mount: "/kv",
            ..RequestParts::default()
        });
        assert_eq!(req.subpath(), "/key");
        assert_eq!(req.with_mount("/kv/key").subpath(), "/");
        assert_eq!(req.with_mount("").subpath(), "/kv/key");
    }
}
