//! The request as it crosses: [`Request`], its [`Header`]s and its peer ([`RawPeer`]), all
//! borrowed from the host for one `on_handle` call. Their methods are in `src/request.rs`; the
//! fields are private to this crate so that only `Request::new` (and the host, through it) fills
//! them.

use std::marker::PhantomData;

use super::{BodySource, RawBytes};

/// One HTTP request, borrowed from the server's buffers for the duration of a handler call.
///
/// The body is complete and already decoded (a `chunked` body arrives de-chunked, its trailers
/// dropped). Header names keep the case the client sent; look-ups ignore case. Build one in a
/// test with [`Request::new`].
#[repr(C)]
pub struct Request<'a> {
    /// The method token (UTF-8, a token by RFC 9110 §5.6.2).
    pub(crate) method: RawBytes,
    /// The request target as sent.
    pub(crate) target: RawBytes,
    /// The target's path, still percent-encoded.
    pub(crate) path: RawBytes,
    /// The query, without its `?`; see `has_query`.
    pub(crate) query: RawBytes,
    /// 1 when the target has a `?` (the query may still be empty), else 0.
    pub(crate) has_query: u8,
    /// 0: HTTP/1.0, 1: HTTP/1.1.
    pub(crate) version: u8,
    /// The route prefix that chose the plugin, or empty.
    pub(crate) mount: RawBytes,
    /// The header fields in the order they arrived, `headers_len` of them.
    pub(crate) headers: *const Header<'a>,
    pub(crate) headers_len: usize,
    /// The decoded body, or empty when it is read from `source`.
    pub(crate) body: RawBytes,
    /// The client's address.
    pub(crate) peer: RawPeer,
    /// Where the rest of the body is read from, when the host did not read it whole before the
    /// call; null when `body` is all of it.
    pub(crate) source: *const BodySource,
    pub(crate) _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: a `Request` is a set of shared borrows (`&'a str`, `&'a [u8]`, `&'a [Header]`), all of
// which are `Send` and `Sync`; the raw pointers only erase their types for the C ABI.
unsafe impl Send for Request<'_> {}
// SAFETY: as above: nothing in a `Request` is ever written through.
unsafe impl Sync for Request<'_> {}

/// One header field: a name and a raw value, borrowed from the request.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header<'a> {
    /// The name, in the case the client sent it (a token).
    pub(crate) name: RawBytes,
    /// The value without the whitespace around it; not necessarily UTF-8.
    pub(crate) value: RawBytes,
    pub(crate) _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: a `Header` is a pair of shared borrows; see `Request`.
unsafe impl Send for Header<'_> {}
// SAFETY: as above.
unsafe impl Sync for Header<'_> {}

/// A socket address in a C layout.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawPeer {
    /// 0: none, 4: IPv4 (the first 4 bytes of `ip`), 6: IPv6.
    pub family: u8,
    /// The port, in host byte order.
    pub port: u16,
    /// The address, in network byte order.
    pub ip: [u8; 16],
}
