//! Server-sent events at `/events`: a response written while it is produced, each event reaching
//! the client when it is flushed, long before the handler returns.
//!
//! `GET /events?count=N&interval_ms=M` sends `N` events (default 10, at most 100000), one every
//! `M` milliseconds (default 1000, at most 10000), as `text/event-stream`: `id: n` and `data: tick n`. The body
//! is `chunked`; a client that goes away makes the next write fail, and the handler stops there
//! and logs how far it got. Try it with `curl -N localhost:7878/events?interval_ms=200`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use plugin_api::{Request, Response, ResponseBuilder};

fn events(request: &Request) -> Response {
    if !matches!(request.method(), "GET" | "HEAD") {
        return ResponseBuilder::new(405)
            .header("allow", "GET, HEAD")
            .build()
            .unwrap_or_else(|_| plain(500));
    }
    let count = param(request, "count").unwrap_or(10).min(100_000);
    let interval = Duration::from_millis(param(request, "interval_ms").unwrap_or(1000).min(10_000));
    ResponseBuilder::empty_200()
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        .stream(move |out| {
            for n in 0..count {
                if n > 0 {
                    std::thread::sleep(interval);
                }
                let sent = write!(out, "id: {n}\ndata: tick {n}\n\n").and_then(|()| out.flush());
                if let Err(e) = sent {
                    plugin_api::info!("client went away after {n} of {count} events ({e})");
                    return Ok(());
                }
            }
            Ok(())
        })
        .build()
        .unwrap_or_else(|_| plain(500))
}

plugin_api::export_handler!(events);

/// A number from the query string.
fn param(request: &Request, name: &str) -> Option<u64> {
    request
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?
        .parse()
        .ok()
}

fn plain(status: u16) -> Response {
    ResponseBuilder::new(status)
        .build()
        .expect("a three-digit status is valid")
}

#[cfg(test)]
mod tests {
    use plugin_api::{Body, RequestParts};

    use super::*;

    #[test]
    fn streams_the_events_asked_for() {
        let request = Request::new(RequestParts {
            target: "/events?count=3&interval_ms=0",
            mount: "/events",
            ..Default::default()
        });
        let Body::Stream(stream) = events(&request).into_content() else {
            panic!("not a stream");
        };
        let mut body = Vec::new();
        stream.collect(&mut body).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "id: 0\ndata: tick 0\n\nid: 1\ndata: tick 1\n\nid: 2\ndata: tick 2\n\n"
        );
    }
}
