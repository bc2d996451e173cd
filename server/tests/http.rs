//! The embeddable server over real TCP: every HTTP/1.1 behaviour of the core, and every
//! rejection, checked on the bytes that come back.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{Client, get};
use mini_async_http::{AIOServer, Limits, Request, Response, ResponseBuilder, ServerHandle};

/// A server on an ephemeral port, shut down when dropped.
struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    fn start(limits: Limits) -> TestServer {
        TestServer::with_handler(limits, echo)
    }

    fn with_handler(
        limits: Limits,
        handler: impl Fn(&Request<'_>) -> Response + Send + Sync + 'static,
    ) -> TestServer {
        let server = AIOServer::new(2, "127.0.0.1:0", handler).with_limits(limits);
        let handle = server.handle();
        let thread = thread::spawn(move || server.start());
        let addr = handle.ready().expect("server starts");
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Shuts down and returns what `start` returned.
    fn stop(&mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().expect("server thread"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Answers with what it received: method, target pieces and version in headers, the body as body.
fn echo(request: &Request<'_>) -> Response {
    let mut headers = String::new();
    for h in request.headers() {
        headers.push_str(&format!(
            "{}={};",
            h.name(),
            String::from_utf8_lossy(h.value())
        ));
    }
    ResponseBuilder::empty_200()
        .header("x-method", request.method())
        .header("x-target", request.target())
        .header("x-path", request.path())
        .header("x-query", request.query().unwrap_or("-"))
        .header("x-version", request.version().to_string())
        .header("x-headers", headers)
        .header(
            "x-peer",
            request
                .peer()
                .map(|p| p.ip().to_string())
                .unwrap_or_default(),
        )
        .body(request.body())
        .build()
        .unwrap()
}

#[test]
fn answers_a_get_with_date_and_length() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    let r = c.send(get("/a/b?x=1")).reply();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.head);
    assert!(
        r.header("date").is_some_and(|d| d.ends_with(" GMT")),
        "{}",
        r.head
    );
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("x-path"), Some("/a/b"));
    assert_eq!(r.header("x-query"), Some("x=1"));
    assert_eq!(r.header("x-peer"), Some("127.0.0.1"));
    assert_eq!(r.header("connection"), None);
}

#[test]
fn keeps_connections_alive_and_answers_pipelined_requests_in_order() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    for i in 0..3 {
        assert_eq!(
            c.send(get(&format!("/{i}"))).reply().header("x-path"),
            Some(&*format!("/{i}"))
        );
    }
    let pipelined: String = (0..20).map(|i| get(&format!("/p{i}"))).collect();
    c.send(pipelined);
    for i in 0..20 {
        let r = c.reply();
        assert_eq!(r.header("x-path"), Some(&*format!("/p{i}")), "{r:?}");
    }
}

#[test]
fn http10_closes_unless_keep_alive() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    let r = c.send("GET / HTTP/1.0\r\n\r\n").reply();
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("x-version"), Some("HTTP/1.0"));
    c.expect_closed();

    let mut c = server.connect();
    let r = c
        .send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .reply();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let r = c.send("GET /again HTTP/1.0\r\n\r\n").reply();
    assert_eq!(r.header("x-path"), Some("/again"));
    c.expect_closed();
}

#[test]
fn connection_close_is_honoured_both_ways() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    let r = c
        .send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .reply();
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed();

    let server = TestServer::with_handler(Limits::default(), |_| {
        ResponseBuilder::empty_200()
            .header("Connection", "close")
            .body("bye")
            .build()
            .unwrap()
    });
    let mut c = server.connect();
    let r = c.send(get("/")).reply();
    assert_eq!((r.header("connection"), r.text()), (Some("close"), "bye"));
    c.expect_closed();
}

#[test]
fn reads_content_length_bodies_in_pieces() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    c.send("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
    thread::sleep(Duration::from_millis(20));
    let r = c.send(" world").reply();
    assert_eq!(r.text(), "hello world");
    // A large body, bigger than any read buffer.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    c.send(format!(
        "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        big.len()
    ));
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        let big = big.clone();
        thread::spawn(move || s.write_all(&big).unwrap())
    };
    let r = c.reply();
    writer.join().unwrap();
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "large body differs");
}

#[test]
fn decodes_chunked_bodies_with_extensions_and_trailers() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    let body = "5;name=value\r\nHello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let r = c
        .send(format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ))
        .reply();
    assert_eq!(r.text(), "Hello, world");
    // The same, one byte per write, followed by a pipelined request.
    let whole = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}{}",
        get("/next")
    );
    for b in whole.bytes() {
        c.send([b]);
    }
    assert_eq!(c.reply().text(), "Hello, world");
    assert_eq!(c.reply().header("x-path"), Some("/next"));
    // A chunked body larger than the read buffer.
    let chunk = "x".repeat(40_000);
    let mut msg = String::from("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        msg.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    msg.push_str("0\r\n\r\n");
    assert_eq!(c.send(msg).reply().body.len(), 200_000);
}

#[test]
fn sends_100_continue_before_the_body() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    c.send("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let interim = c.reply();
    assert_eq!(interim.status, 100, "{interim:?}");
    let r = c.send("data").reply();
    assert_eq!((r.status, r.text()), (200, "data"));
    // A body too large is refused instead of continued.
    let small = TestServer::start(Limits {
        max_body_bytes: 3,
        ..Limits::default()
    });
    let mut c = small.connect();
    let r = c
        .send("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .reply();
    assert_eq!(r.status, 413);
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let server = TestServer::with_handler(Limits::default(), |_| {
        ResponseBuilder::empty_200()
            .body("Hello")
            .content_type("text/plain")
            .build()
            .unwrap()
    });
    let mut c = server.connect();
    let r = c.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").reply_to(true);
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // Had a body been sent, it would be read as the start of this response.
    let r = c.send(get("/")).reply();
    assert_eq!((r.status, r.text()), (200, "Hello"));
}

#[test]
fn accepts_absolute_and_asterisk_targets() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    let r = c
        .send("GET http://example.com/p/q?z HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .reply();
    assert_eq!(
        (r.header("x-path"), r.header("x-query")),
        (Some("/p/q"), Some("z"))
    );
    let r = c.send("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").reply();
    assert_eq!((r.status, r.header("x-path")), (200, Some("*")));
}

#[test]
fn refuses_bad_requests_with_the_right_status_and_closes() {
    let limits = Limits {
        max_target_bytes: 100,
        max_head_bytes: 1000,
        max_headers: 10,
        max_body_bytes: 100,
        ..Limits::default()
    };
    let server = TestServer::start(limits);
    let h = "Host: x\r\n";
    let cases: Vec<(String, u16)> = vec![
        ("GET / HTTP/1.1 x\r\nHost: x\r\n\r\n".into(), 400),
        ("GET /\r\n\r\n".into(), 400),
        (format!("GET / HTTP/1.1\r\n{h}X: a\r\n b\r\n\r\n"), 400),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        (
            format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400,
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            400,
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Content-Length: -3\r\n\r\n"),
            400,
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            400,
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
            400,
        ),
        (
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{}\r\n",
                "f".repeat(20)
            ),
            400,
        ),
        (format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(200)), 414),
        (
            format!("GET / HTTP/1.1\r\n{h}X: {}\r\n\r\n", "a".repeat(2000)),
            431,
        ),
        (
            format!("GET / HTTP/1.1\r\n{h}{}\r\n", "A: 1\r\n".repeat(11)),
            431,
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 101\r\n\r\n"),
            413,
        ),
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n65\r\n"),
            413,
        ),
        (format!("GET / HTTP/2.0\r\n{h}\r\n"), 505),
    ];
    for (request, status) in cases {
        let mut c = server.connect();
        let r = c.send(&request).reply();
        assert_eq!(r.status, status, "for {request:?}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "for {request:?}");
        assert!(!r.body.is_empty(), "the body says why");
        c.expect_closed();
    }
}

#[test]
fn a_panicking_handler_gets_500_and_the_server_goes_on() {
    let server = TestServer::with_handler(Limits::default(), |r| {
        if r.path() == "/panic" {
            panic!("boom");
        }
        ResponseBuilder::empty_200().body("fine").build().unwrap()
    });
    let mut c = server.connect();
    for _ in 0..5 {
        assert_eq!(c.send(get("/panic")).reply().status, 500);
        assert_eq!(c.send(get("/ok")).reply().text(), "fine");
    }
}

#[test]
fn a_trickled_head_is_cut_off_while_others_are_served() {
    let limits = Limits {
        header_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let server = TestServer::start(limits);
    let mut slow = server.connect();
    let started = Instant::now();
    slow.send("GET / HTTP/1.1\r\n");
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        let mut fast = server.connect();
        assert_eq!(fast.send(get("/")).reply().status, 200);
        if slow.stream.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        slow.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0u8; 1];
        match slow.stream.read(&mut byte) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("no response expected"),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the trickling client was never cut off");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "cut off too early"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let limits = Limits {
        keep_alive_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::start(limits);
    let mut c = server.connect();
    assert_eq!(c.send(get("/")).reply().status, 200);
    let started = Instant::now();
    c.expect_closed();
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn stops_accepting_at_max_connections_until_one_closes() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let server = TestServer::start(limits);
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(first.send(get("/")).reply().status, 200);
    assert_eq!(second.send(get("/")).reply().status, 200);
    // The kernel completes the handshake, but the server does not take the connection yet.
    let mut third = server.connect();
    third.send(get("/third"));
    third
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.stream.read(&mut byte);
    assert!(early.is_err(), "served past the limit: {early:?}");
    drop(first);
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(third.reply().header("x-path"), Some("/third"));
    assert_eq!(second.send(get("/")).reply().status, 200);
}

#[test]
fn large_responses_reach_a_slow_reader_whole() {
    let body: Arc<Vec<u8>> = Arc::new((0..8_000_000u32).map(|i| (i % 253) as u8).collect());
    let served = Arc::clone(&body);
    let server = TestServer::with_handler(Limits::default(), move |_| {
        ResponseBuilder::empty_200()
            .body(served.as_slice())
            .build()
            .unwrap()
    });
    let mut c = server.connect();
    c.send(get("/")).send(get("/again"));
    thread::sleep(Duration::from_millis(200)); // let the socket buffers fill up
    let r = c.reply();
    assert!(
        r.body == *body,
        "first body differs ({} bytes)",
        r.body.len()
    );
    let r = c.reply();
    assert!(
        r.body == *body,
        "second body differs ({} bytes)",
        r.body.len()
    );
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let (proceed, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let mut server = TestServer::with_handler(Limits::default(), move |r| {
        if r.path() == "/slow" {
            seen.fetch_add(1, Ordering::SeqCst);
            gate.lock().unwrap().recv().unwrap();
        }
        ResponseBuilder::empty_200()
            .body(r.path().to_owned())
            .build()
            .unwrap()
    });
    let mut idle = server.connect();
    assert_eq!(idle.send(get("/warm")).reply().text(), "/warm");
    let mut busy = server.connect();
    busy.send(get("/slow"));
    while started.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
    let addr = server.addr;
    server.handle.begin_shutdown();
    // Shutdown has begun once new connections are refused.
    while TcpStream::connect(addr).is_ok() {
        thread::yield_now();
    }
    proceed.send(()).unwrap();
    server.stop().expect("clean stop");
    let r = busy.reply();
    assert_eq!((r.status, r.text()), (200, "/slow"));
    assert_eq!(r.header("connection"), Some("close"));
    busy.expect_closed();
    idle.expect_closed();
}

#[test]
fn binding_a_used_port_is_an_error_naming_the_address() {
    let server = TestServer::start(Limits::default());
    let addr = server.addr.to_string();
    let second = AIOServer::new(1, &addr, echo);
    let err = second.start().expect_err("port in use");
    assert!(err.to_string().contains(&addr), "{err}");
    let err = AIOServer::new(1, "not an address", echo)
        .start()
        .expect_err("bad address");
    assert!(err.to_string().contains("not an address"), "{err}");
}

#[test]
fn a_half_closed_client_gets_its_answer_and_an_end() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    c.send(get("/last"));
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let r = c.reply();
    assert_eq!(r.header("x-path"), Some("/last"));
    // Within the client's 10 s read timeout, not the 60 s keep-alive timeout.
    c.expect_closed();
}

#[test]
fn a_silent_connection_gets_the_header_timeout_not_the_keep_alive_one() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        keep_alive_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let server = TestServer::start(limits);
    let mut c = server.connect();
    let started = Instant::now();
    c.expect_closed();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn requests_after_a_close_are_not_answered_and_the_answer_arrives_whole() {
    let server = TestServer::start(Limits::default());
    let mut c = server.connect();
    c.send(format!(
        "GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n{}",
        get("/second")
    ));
    let r = c.reply();
    assert_eq!(
        (r.header("x-path"), r.header("connection")),
        (Some("/first"), Some("close"))
    );
    c.expect_closed();
}

#[test]
fn shutdown_at_any_moment_of_startup_returns() {
    for _ in 0..20 {
        let server = AIOServer::new(1, "127.0.0.1:0", echo);
        let handle = server.handle();
        let thread = thread::spawn(move || server.start());
        handle.shutdown();
        thread.join().unwrap().unwrap();
    }
}
