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
        // RFC 9112 §3.2: a Host that is not uri-host [":" port].
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n".into(), 400),
        // §3.2.2: an absolute-form target names its authority; a Host naming another is refused.
        ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n".into(), 400),
        ("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        // §3.2: a target has no fragment (it steered routing: http://x#/admin went to /admin).
        (
            "GET http://x#/admin HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        // §7.1.2 with §5.1: a trailer line with whitespace before its colon.
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n0\r\nX : 1\r\n\r\n"),
            400,
        ),
        // RFC 9110 §9.1: a method no server implements, before its request line is complete.
        (format!("{} / HTTP/1.1\r\n{h}\r\n", "M".repeat(33)), 501),
        ("M".repeat(40), 501),
        // §7.1: whitespace in a chunk line only before an extension; extension names are tokens.
        (
            format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n1;a b\r\na\r\n0\r\n\r\n"
            ),
            400,
        ),
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
    // Within the client's 30 s read timeout, not the 60 s keep-alive timeout.
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

/// A handler that blocks on `/block` until the returned sender sends, and says when it started.
fn gated() -> (
    std::sync::mpsc::Sender<()>,
    Arc<AtomicUsize>,
    impl Fn(&Request<'_>) -> Response + Send + Sync + 'static,
) {
    let (proceed, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let handler = move |r: &Request<'_>| {
        if r.path() == "/block" {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = gate.lock().unwrap().recv();
        }
        ResponseBuilder::empty_200()
            .body(r.path().to_owned())
            .build()
            .unwrap()
    };
    (proceed, started, handler)
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::yield_now();
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let (proceed, started, handler) = gated();
    let limits = Limits {
        max_queued: 1,
        ..Limits::default()
    };
    let server = AIOServer::new(1, "127.0.0.1:0", handler).with_limits(limits);
    let handle = server.handle();
    let thread = thread::spawn(move || server.start());
    let addr = handle.ready().unwrap();
    let mut busy = Client::connect(addr);
    busy.send(get("/block"));
    wait_until("the only worker is busy", || {
        started.load(Ordering::SeqCst) == 1
    });
    let mut second = Client::connect(addr);
    let mut third = Client::connect(addr);
    second.send(get("/second"));
    third.send(get("/third"));
    // One of the two fits in the queue; the other is refused at once.
    let (mut refused, mut queued) = (Vec::new(), Vec::new());
    for (c, path) in [(&mut second, "/second"), (&mut third, "/third")] {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut peek = [0u8; 1];
        match c.stream.peek(&mut peek) {
            Ok(_) => refused.push(c.reply()),
            Err(_) => queued.push(path),
        }
    }
    assert_eq!(
        (refused.len(), queued.len()),
        (1, 1),
        "refused: {refused:?}"
    );
    let r = &refused[0];
    assert_eq!(
        (r.status, r.header("retry-after"), r.header("connection")),
        (503, Some("1"), Some("close"))
    );
    assert!(r.header("date").is_some());
    proceed.send(()).unwrap();
    assert_eq!(busy.reply().text(), "/block");
    for c in [&mut second, &mut third] {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    let served = if queued[0] == "/second" {
        &mut second
    } else {
        &mut third
    };
    assert_eq!(served.reply().text(), queued[0]);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_slow_handler_occupies_one_worker_not_the_server() {
    let (proceed, started, handler) = gated();
    let server = TestServer::with_handler(Limits::default(), handler);
    let mut slow = server.connect();
    slow.send(get("/block"));
    wait_until("the slow handler runs", || {
        started.load(Ordering::SeqCst) == 1
    });
    for i in 0..50 {
        assert_eq!(
            server.connect().send(get(&format!("/{i}"))).reply().text(),
            format!("/{i}")
        );
    }
    proceed.send(()).unwrap();
    assert_eq!(slow.reply().text(), "/block");
}

#[test]
fn a_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let body = Arc::new(vec![b'x'; 32 << 20]);
    let served = Arc::clone(&body);
    let limits = Limits {
        write_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = TestServer::with_handler(limits, move |r| {
        let body: &[u8] = if r.path() == "/big" {
            &served
        } else {
            b"small"
        };
        ResponseBuilder::empty_200().body(body).build().unwrap()
    });
    let mut stalled = server.connect();
    stalled.send(get("/big"));
    // Others are served while the stalled client holds its response.
    for _ in 0..20 {
        assert_eq!(server.connect().send(get("/")).reply().text(), "small");
    }
    // Sleep past the write timeout without reading, then read what the server managed to send.
    thread::sleep(Duration::from_millis(2000));
    let mut got = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match stalled.stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < body.len(),
        "the whole body arrived: the server never gave up"
    );
}

#[test]
fn client_faults_leave_the_server_serving() {
    let server = TestServer::start(Limits::default());
    // Disconnect mid-request.
    server
        .connect()
        .send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf");
    server.connect().send("GET / HTT");
    // Disconnect mid-response: ask for a large answer, read a little, close with data unread (the
    // kernel resets the connection).
    let big = TestServer::with_handler(Limits::default(), |_| {
        ResponseBuilder::empty_200()
            .body(vec![b'y'; 8 << 20])
            .build()
            .unwrap()
    });
    for _ in 0..5 {
        let mut c = big.connect();
        c.send(get("/"));
        let mut some = [0u8; 1000];
        let _ = c.stream.read(&mut some);
    }
    assert_eq!(big.connect().send(get("/")).reply().body.len(), 8 << 20);
    assert_eq!(
        server
            .connect()
            .send(get("/after"))
            .reply()
            .header("x-path"),
        Some("/after")
    );
}

/// Any split of a valid request stream gets the same responses as the stream in one piece.
#[test]
fn any_split_of_a_request_stream_parses_the_same() {
    let server = TestServer::start(Limits::default());
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..40 {
        let mut stream = Vec::new();
        let count = 1 + next(4);
        for i in 0..count {
            let body: String = (0..next(40))
                .map(|k| (b'a' + (k % 26) as u8) as char)
                .collect();
            let req = match next(3) {
                0 => format!(
                    "GET /r{round}/{i}?q={} HTTP/1.1\r\nHost: x\r\nX-N: {i}\r\n\r\n",
                    next(1000)
                ),
                1 => format!(
                    "POST /r{round}/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                _ => {
                    let mut chunked = String::new();
                    let mut rest = body.as_str();
                    while !rest.is_empty() {
                        let n = (1 + next(10) as usize).min(rest.len());
                        chunked.push_str(&format!("{n:x};e=1\r\n{}\r\n", &rest[..n]));
                        rest = &rest[n..];
                    }
                    format!(
                        "PUT /r{round}/{i} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}0\r\nT: 1\r\n\r\n"
                    )
                }
            };
            stream.extend_from_slice(req.as_bytes());
        }
        let responses = |pieces: Vec<&[u8]>| {
            let mut c = server.connect();
            c.stream.set_nodelay(true).unwrap();
            for piece in pieces {
                c.send(piece);
                thread::yield_now();
            }
            (0..count)
                .map(|_| {
                    let r = c.reply();
                    let head: Vec<&str> =
                        r.head.lines().filter(|l| !l.starts_with("date:")).collect();
                    (head.join("\n"), r.body)
                })
                .collect::<Vec<_>>()
        };
        let whole = responses(vec![&stream]);
        let mut cuts: Vec<usize> = (0..1 + next(6))
            .map(|_| next(stream.len() as u64) as usize)
            .collect();
        cuts.sort();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            pieces.push(&stream[at..cut]);
            at = cut;
        }
        assert_eq!(responses(pieces), whole, "round {round}");
    }
}
