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
#![forbid(unsafe_code)]

use plugin_api::{Request, Response, ResponseBuilder};

/// Echoes the request.
pub fn echo(request: &Request) -> Response {
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
    out.extend_from_slice(request.body());
    ResponseBuilder::empty_200()
        .content_type("text/plain; charset=utf-8")
        .body(out)
        .build()
        .expect("no user-supplied headers")
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
