//! Bodies that are not bytes in memory: a file larger than every buffer sent with sendfile (whole,
//! in ranges, for `HEAD`, pipelined), and streamed responses (chunked, ended by close for
//! HTTP/1.0, their first event before the handler ends, a client leaving mid-stream).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use integration_tests::HostProcess;

const WAIT: Duration = Duration::from_secs(20);

/// The byte at offset `i` of the big test file: no run of it repeats at a power of two, so a
/// misplaced or repeated block shows.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

#[test]
fn a_file_larger_than_every_buffer_goes_whole_in_ranges_and_for_head() {
    let www = std::env::temp_dir().join(format!("mah-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&www);
    std::fs::create_dir_all(&www).unwrap();
    const LEN: u64 = 40 * 1024 * 1024 + 123;
    let big: Vec<u8> = (0..LEN).map(pattern).collect();
    std::fs::write(www.join("big.bin"), &big).unwrap();
    std::fs::write(www.join("small.txt"), "small").unwrap();
    let config = format!(
        "[plugins.static_files]\nroot = {:?}\n\n[[routes]]\nprefix = \"/s\"\nplugin = \"static_files\"\n",
        www.display().to_string()
    );
    let host = HostProcess::start(&["libstatic_files.so"], &config);
    let mut c = host.connect();

    let r = c.get("/s/big.bin");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some(LEN.to_string().as_str()));
    assert!(r.body == big, "the body differs from the file");

    // A range in the middle, then HEAD, then a small file: the connection persists through all.
    let r = c
        .send("GET /s/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000000-2999999\r\n\r\n")
        .reply();
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000000-2999999/{LEN}").as_str())
    );
    assert!(r.body == big[1_000_000..3_000_000], "the range differs");
    let r = c
        .send("HEAD /s/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .reply_to(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(LEN.to_string().as_str()));
    assert!(r.body.is_empty());
    assert_eq!(c.get("/s/small.txt").text(), "small");

    // Pipelined behind a big file, a request waits its turn and is answered after it, in order.
    c.send(
        "GET /s/big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /s/small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let first = c.reply();
    assert!(first.status == 200 && first.body == big, "{}", first.head);
    assert_eq!(c.reply().text(), "small");
    drop(host);
    let _ = std::fs::remove_dir_all(&www);
}

#[test]
fn events_stream_chunked_and_the_first_arrives_before_the_handler_ends() {
    let host = HostProcess::start(&["libevents.so"], "");
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // Two events two seconds apart: the first must come while the handler sleeps.
    s.write_all(b"GET /events?count=2&interval_ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"data: tick 0\n\n");
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(
        head.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");
    assert!(
        !head.contains("tick 1"),
        "the first event waited for the second: {head}"
    );
    read_until(&mut s, &mut got, b"\r\n0\r\n\r\n");
    let at = find(&got, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        dechunk(&got[at..]),
        b"id: 0\ndata: tick 0\n\nid: 1\ndata: tick 1\n\n"
    );
    // The connection persists after a chunked body.
    s.write_all(b"GET /events?count=1&interval_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut again = Vec::new();
    read_until(&mut s, &mut again, b"\r\n0\r\n\r\n");
    assert!(find(&again, b"data: tick 0").is_some());
}

#[test]
fn a_stream_to_http_1_0_ends_with_the_connection_and_head_has_no_body() {
    let host = HostProcess::start(&["libevents.so"], "");
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /events?count=2&interval_ms=0 HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        !head.contains("chunked") && !head.contains("content-length"),
        "{head}"
    );
    assert_eq!(body, "id: 0\ndata: tick 0\n\nid: 1\ndata: tick 1\n\n");

    let mut c = host.connect();
    let r = c
        .send("HEAD /events?count=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        .reply_to(true);
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_some(), "{}", r.head);
    // Nothing follows the head: the next answer on the connection is the next request's.
    let r = c.get("/nothing-here");
    assert_eq!(r.status, 404, "{}", r.head);
}

#[test]
fn a_client_that_leaves_mid_stream_makes_the_handler_stop() {
    let host = HostProcess::start(&["libevents.so"], "");
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /events?count=100000&interval_ms=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"data: tick 3\n\n");
    drop(s);
    let line = host.wait_for_log("client went away after", WAIT);
    assert!(line.contains("of 100000 events"), "{line}");
    // The worker is free again.
    assert_eq!(host.connect().get("/nothing-here").status, 404);
}

/// Reads into `got` until it contains `needle`.
fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
    let mut chunk = [0u8; 65536];
    while find(got, needle).is_none() {
        let n = s.read(&mut chunk).unwrap_or_else(|e| {
            panic!("{e}; got so far: {:?}", String::from_utf8_lossy(got));
        });
        assert!(
            n > 0,
            "closed; got so far: {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body (no extensions, no trailers).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let eol = find(raw, b"\r\n").expect("a size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap(), 16).unwrap();
        raw = &raw[eol + 2..];
        if size == 0 {
            assert_eq!(raw, b"\r\n", "the end of the body");
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n");
        raw = &raw[size + 2..];
    }
}
