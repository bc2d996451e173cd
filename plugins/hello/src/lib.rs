//! The smallest plugin: every request under `/hello` gets `Hello`.
#![forbid(unsafe_code)]

use plugin_api::{Request, Response, ResponseBuilder};

/// Answers `Hello` in plain text.
pub fn hello(_request: &Request) -> Response {
    ResponseBuilder::empty_200()
        .body(b"Hello")
        .content_type("text/plain")
        .build()
        .expect("a constant response is valid")
}

plugin_api::export_handler!(hello);
