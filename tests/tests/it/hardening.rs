//! Hostile clients and misbehaving plugins against the real binary: every case answered with the
//! right status or closed, never a crash, never a corrupted response, never a leak.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::{Client, HostProcess, get};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn invalid_plugin_responses_become_clean_500s() {
    let host = HostProcess::start(&["libraw_bad.so"], "");
    let mut c = host.connect();
    for path in [
        "empty-line",
        "length",
        "bare-lf",
        "lf-value",
        "lf-end",
        "informational",
        "continue",
        "over-599",
        "bad-name",
        "colon-name",
        "del",
        "connection",
        "transfer-encoding",
        "date",
        "nul",
        "unterminated",
        "status",
        "kind",
        "none",
    ] {
        let r = c.get(&format!("/raw_bad/{path}"));
        assert_eq!(r.status, 500, "{path}: {r:?}");
        assert_eq!(r.text(), "internal server error\n", "{path}");
        assert!(
            !r.head.to_ascii_lowercase().contains("injected"),
            "{path}: {}",
            r.head
        );
    }
    let line = host.wait_for_log("invalid response from the plugin", WAIT);
    assert!(line.contains("raw_bad"), "{line}");
    host.wait_for_log("the plugin returned no response", WAIT);
    // A second answer to one request is ignored; the first stands.
    let r = c.get("/raw_bad/twice");
    assert_eq!(
        (r.status, r.text(), r.header("x-first")),
        (200, "first", Some("yes"))
    );
    assert_eq!(c.get("/raw_bad/fine").header("x-fine"), Some("yes"));
}

#[test]
fn a_hundred_thousand_panics_and_the_server_is_fine() {
    let host = HostProcess::start(&["libpanicky.so", "libhello.so"], "");
    let mut c = host.connect();
    let batch: String = (0..100).map(|_| get("/panicky/boom")).collect();
    for _ in 0..1000 {
        c.send(&batch);
        for _ in 0..100 {
            assert_eq!(c.reply().status, 500);
        }
    }
    assert_eq!(c.get("/hello").text(), "Hello");
    assert_eq!(host.connect().get("/panicky").text(), "calm");
}

#[test]
fn sigterm_under_load_answers_every_request_it_read_and_exits_0() {
    let mut host = HostProcess::start(&["libhello.so"], "");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, answered) = (host.addr, Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    if c.stream.write_all(get("/hello").as_bytes()).is_err() {
                        return;
                    }
                    // A complete response, or a close before any byte of one; never half.
                    match c.try_reply() {
                        Some(r) => {
                            assert_eq!((r.status, r.text()), (200, "Hello"));
                            answered.fetch_add(1, Ordering::Relaxed);
                            if r.header("connection") == Some("close") {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 1000 {
        std::thread::yield_now();
    }
    host.signal("TERM");
    assert_eq!(host.wait_exit(Duration::from_secs(30)), Some(0));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw a broken response");
    }
}

#[test]
fn no_descriptor_leaks_after_many_connections() {
    let host = HostProcess::start(&["libhello.so"], "");
    let _warm = host.connect().get("/hello");
    let before = host.open_fds();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let addr = host.addr;
            std::thread::spawn(move || {
                for n in 0..1000 {
                    let mut c = Client::connect(addr);
                    match (i + n) % 3 {
                        0 => assert_eq!(c.get("/hello").text(), "Hello"),
                        1 => {
                            c.send("GET /hello HTTP/1.1\r\nHo");
                        }
                        _ => {
                            c.send(get("/hello"));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while host.open_fds() > before + 2 {
        assert!(
            Instant::now() < deadline,
            "fds: {} before, {} after",
            before,
            host.open_fds()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn out_of_descriptors_the_loop_waits_instead_of_spinning() {
    let dir = HostProcess::prepare(&["libhello.so"], "");
    let host = HostProcess::spawn_wrapped(&dir, &[], &["prlimit", "--nofile=48"]).ready();
    let mut held: Vec<Client> = (0..80).map(|_| Client::connect(host.addr)).collect();
    host.wait_for_log("cannot accept: out of descriptors", WAIT);
    let cpu = host.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let spent = host.cpu_time() - cpu;
    assert!(
        spent < Duration::from_millis(300),
        "spun for {spent:?} in one second"
    );
    // Let go of most: the rest are accepted and served.
    let mut last = held.split_off(70);
    drop(held);
    for c in &mut last {
        assert_eq!(c.get("/hello").text(), "Hello");
    }
}

#[test]
fn a_head_trickled_one_byte_at_a_time_is_answered_and_a_bad_one_refused() {
    let host = HostProcess::start(&["libecho.so"], "");
    // Each byte its own packet (TCP_NODELAY) and its own read: the server searches the new
    // byte for the head's end instead of parsing the head again from its start.
    let filler = "a".repeat(3000);
    let head = format!("GET /echo/t HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    let mut c = host.connect();
    c.nodelay();
    for b in head.as_bytes() {
        c.send([*b]);
    }
    let r = c.reply();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.text().contains(&filler));
    // The limits still hold for a trickled head: past max_head_bytes it is refused with 431.
    let mut s = std::net::TcpStream::connect(host.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(b"GET /echo/t HTTP/1.1\r\nHost: x\r\n");
    let mut refused = Vec::new();
    for _ in 0..400 {
        if s.write_all(&[b'X'; 50]).is_err() {
            break;
        }
    }
    let _ = s.read_to_end(&mut refused);
    let text = String::from_utf8_lossy(&refused);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}
