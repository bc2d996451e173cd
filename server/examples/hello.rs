// The seed README's first example, verbatim below the attribute line: it names a `request` it
// does not use and a `mut` it does not need, and drops the `io::Result` of `start` (a new program
// should handle it: `server.start().expect("cannot serve")`).
#![allow(unused_variables, unused_mut, unused_must_use)]

extern crate mini_async_http;

use mini_async_http::AIOServer;
use mini_async_http::ResponseBuilder;

pub fn main() {
    let mut server = AIOServer::new(3, "0.0.0.0:7878", move |request| {
        ResponseBuilder::empty_200()
            .body(b"Hello")
            .content_type("text/plain")
            .build()
            .unwrap()
    });

    server.start();
}
