//! Answers with the request it received, as plain text:
//!
//! ```text
//! POST /echo/x?y HTTP/1.1
//! mount: /echo
//! peer: 127.0.0.1
//! host: localhost
//! content-length: 4
//!
//! body
//! ```
//!
//! The first line is the request line; then the mount prefix, the client's address, and every header
//! as received (names in the client's case, in order); an empty line; the decoded body.
//!
//! A body larger than the host buffers (`[limits.plugins.echo] buffer_body_bytes`) streams back as
//! it arrives: the answer is `chunked`, and each piece read from the client is written out before
//! the next is read, so memory does not grow with the body.
//!
//! `POST /echo/hash` answers instead with the body's length and its FNV-1a 64-bit hash
//! (`<length> <16 hex digits>`), reading it as it arrives: an upload of any size in constant memory.
#![forbid(unsafe_code)]

use std::io::{Read, Write};

use plugin_api::{Request, Response, ResponseBuilder};

/// Echoes the request.
pub fn echo(request: &Request) -> Response {
    if request.method() == "POST" && request.subpath() == "/hash" {
        return hash(request);
    }
    let head = head_text(request);
    if request.body_streams() {
        return ResponseBuilder::empty_200()
            .content_type("text/plain; charset=utf-8")
            .stream(move |out| {
                out.write_all(&head)?;
                let mut piece = vec![0; 64 * 1024];
                loop {
                    let n = out.request_body().read(&mut piece)?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&piece[..n])?;
                    out.flush()?;
                }
            })
            .build()
            .expect("no user-supplied headers");
    }
    let mut out = head;
    out.extend_from_slice(request.body());
    ResponseBuilder::empty_200()
        .content_type("text/plain; charset=utf-8")
        .body(out)
        .build()
        .expect("no user-supplied headers")
}

/// The body's length and FNV-1a hash, read as it arrives.
fn hash(request: &Request) -> Response {
    let mut body = request.body_reader();
    let mut piece = vec![0; 64 * 1024];
    let (mut len, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
    loop {
        match body.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => {
                len += n as u64;
                for &b in &piece[..n] {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
            Err(e) => {
                plugin_api::warn!("upload failed after {len} bytes: {e}");
                return ResponseBuilder::new(400)
                    .body("the body could not be read\n")
                    .build()
                    .expect("a constant response");
            }
        }
    }
    ResponseBuilder::empty_200()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{len} {hash:016x}\n"))
        .build()
        .expect("no user-supplied headers")
}

/// The request line, mount, peer and headers, then the empty line.
fn head_text(request: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + request.body().len());
    out.extend_from_slice(
        format!(
            "{} {} {}\n",
            request.method(),
            request.target(),
            request.version()
        )
        .as_bytes(),
    );
    out.extend_from_slice(format!("mount: {}\n", request.mount()).as_bytes());
    if let Some(peer) = request.peer() {
        out.extend_from_slice(format!("peer: {}\n", peer.ip()).as_bytes());
    }
    for h in request.headers() {
        out.extend_from_slice(h.name().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

plugin_api::export_handler!(echo);

#[cfg(test)]
mod tests {
    use plugin_api::{Header, RequestParts};

    use super::*;

    #[test]
    fn echoes_everything() {
        let headers = [Header::new("Host", b"h")];
        let request = Request::new(RequestParts {
            method: "PUT",
            target: "/echo/a?b",
            headers: &headers,
            body: b"data",
            mount: "/echo",
            ..RequestParts::default()
        });
        let response = echo(&request);
        assert_eq!(
            String::from_utf8_lossy(response.body()),
            "PUT /echo/a?b HTTP/1.1\nmount: /echo\nHost: h\n\ndata"
        );
    }
}
