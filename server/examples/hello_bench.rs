//! The seed's hello server with its address and worker count from the command line, for the
//! benchmarks (`bench/run.py`): `hello_bench [ADDR] [WORKERS]`.

use mini_async_http::{AIOServer, Limits, ResponseBuilder};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7878".into());
    let workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let server = AIOServer::new(workers, addr, |_request| {
        ResponseBuilder::empty_200()
            .body(b"Hello")
            .content_type("text/plain")
            .build()
            .unwrap()
    })
    .with_limits(Limits {
        max_connections: 20_000,
        ..Limits::default()
    });
    server.start()
}
