//! The embeddable server's file and stream bodies, with in-process handlers: a stream whose
//! producer fails, a `HEAD` whose producer's writes are refused, and answers pipelined before a
//! stream that broke.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use integration_tests::Client;
use mini_async_http::{AIOServer, Request, ResponseBuilder};

fn run(server: AIOServer) -> (std::net::SocketAddr, mini_async_http::ServerHandle) {
    let handle = server.handle();
    thread::spawn(move || server.start());
    (handle.ready().expect("server starts"), handle)
}

fn server() -> AIOServer {
    AIOServer::new(2, "127.0.0.1:0", |r: &Request<'_>| match r.path() {
        "/fails" => ResponseBuilder::empty_200()
            .stream(|out| {
                out.write_all(b"part")?;
                out.flush()?;
                Err(std::io::Error::other("the export broke"))
            })
            .build()
            .unwrap(),
        "/fails-early" => ResponseBuilder::empty_200()
            .stream(|_| Err(std::io::Error::other("broke before a byte")))
            .build()
            .unwrap(),
        "/sized" => ResponseBuilder::empty_200()
            .stream_sized(6, |out| out.write_all(b"abcdef"))
            .build()
            .unwrap(),
        "/file" => ResponseBuilder::empty_200()
            .file_path("Cargo.toml")
            .build()
            .unwrap(),
        _ => ResponseBuilder::empty_200().body("plain").build().unwrap(),
    })
}

#[test]
fn a_failed_stream_ends_the_connection_without_its_last_chunk() {
    let (addr, handle) = run(server());
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.ends_with("4\r\npart\r\n"),
        "the body must end cut short: {text:?}"
    );
    handle.shutdown();
}

#[test]
fn head_gets_the_head_even_when_the_producer_returns_the_refused_write() {
    let (addr, handle) = run(server());
    let mut c = Client::connect(addr);
    let r = c
        .send("HEAD /fails HTTP/1.1\r\nHost: x\r\n\r\n")
        .reply_to(true);
    assert_eq!(r.status, 200, "{}", r.head);
    let r = c
        .send("HEAD /sized HTTP/1.1\r\nHost: x\r\n\r\n")
        .reply_to(true);
    assert_eq!(r.header("content-length"), Some("6"), "{}", r.head);
    assert_eq!(c.get("/sized").text(), "abcdef");
    let file = c.get("/file");
    assert_eq!(file.body, std::fs::read("Cargo.toml").unwrap());
    assert_eq!(c.get("/plain").text(), "plain");
    handle.shutdown();
}

#[test]
fn answers_pipelined_before_a_broken_stream_still_go_out() {
    let (addr, handle) = run(server());
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /fails-early HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nplain"),
        "only the first answer, whole: {text:?}"
    );
    handle.shutdown();
}
