//! The host binary. For now it serves a built-in `Hello`; plugins come next.

use mini_async_http::{AIOServer, ResponseBuilder};

fn main() -> std::io::Result<()> {
    let server = AIOServer::new(2, "127.0.0.1:7878", |_request| {
        ResponseBuilder::empty_200()
            .body("Hello")
            .content_type("text/plain")
            .build()
            .expect("a constant response is valid")
    });
    server.start()
}
