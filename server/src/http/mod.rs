//! HTTP/1.1 on the wire: parsing request heads, decoding bodies, encoding responses.
//!
//! Pure functions over byte buffers, with no sockets: `worker/` drives them. Each behaviour that
//! comes from the spec cites its section of RFC 9110 (semantics) or RFC 9112 (message syntax).

pub(crate) mod body;
pub mod compress;
pub(crate) mod encode;
pub(crate) mod lines;
pub(crate) mod parse;
pub mod proxy;
pub(crate) mod target;
