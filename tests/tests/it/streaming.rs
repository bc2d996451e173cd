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

/// FNV-1a 64, as the echo plugin's `/echo/hash` computes it.
fn fnv(bytes: impl IntoIterator<Item = u8>, mut hash: u64) -> u64 {
    for b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

const BIG_UPLOADS: &str = "[limits.plugins.echo]\nmax_body_bytes = 1073741824\n";

#[test]
fn a_256_mib_upload_is_hashed_as_it_streams() {
    let host = HostProcess::start(&["libecho.so"], BIG_UPLOADS);
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    const LEN: u64 = 256 * 1024 * 1024;
    write!(
        s,
        "POST /echo/hash HTTP/1.1\r\nHost: x\r\nContent-Length: {LEN}\r\n\r\n"
    )
    .unwrap();
    let mut hash = FNV_START;
    let mut block = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < LEN {
        for (i, b) in block.iter_mut().enumerate() {
            *b = pattern(offset + i as u64);
        }
        hash = fnv(block.iter().copied(), hash);
        s.write_all(&block).unwrap();
        offset += block.len() as u64;
    }
    let mut got = Vec::new();
    read_until(&mut s, &mut got, format!("{LEN} {hash:016x}\n").as_bytes());
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    // The connection persists: the body was read to its end.
    s.write_all(b"GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut more = Vec::new();
    read_until(&mut s, &mut more, b"Host: x\n\n");
}

#[test]
fn a_chunked_upload_in_odd_pieces_hashes_the_same() {
    let host = HostProcess::start(&["libecho.so"], BIG_UPLOADS);
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"POST /echo/hash HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let (mut hash, mut len, mut size) = (FNV_START, 0u64, 1usize);
    while len < 20 * 1024 * 1024 {
        let data: Vec<u8> = (len..len + size as u64).map(pattern).collect();
        hash = fnv(data.iter().copied(), hash);
        write!(s, "{size:x};ext=1\r\n").unwrap();
        s.write_all(&data).unwrap();
        s.write_all(b"\r\n").unwrap();
        len += size as u64;
        size = size * 7 % 300_007 + 1;
    }
    s.write_all(b"0\r\nX-Trailer: t\r\n\r\nGET /echo/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let line = format!("{len} {hash:016x}\n");
    read_until(&mut s, &mut got, line.as_bytes());
    // Pipelined behind the chunked upload, the next request is answered: what the upload read
    // past its body's end is the next request's start.
    let mut rest = got.split_off(find(&got, line.as_bytes()).unwrap() + line.len());
    read_until(
        &mut s,
        &mut rest,
        b"GET /echo/next HTTP/1.1\nmount: /echo\n",
    );
}

#[test]
fn echo_streams_a_body_back_as_it_arrives_and_sends_100_continue_on_its_first_read() {
    let config = "[limits.plugins.echo]\nbuffer_body_bytes = 0\n";
    let host = HostProcess::start(&["libecho.so"], config);
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"POST /echo/up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 200000\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"HTTP/1.1 100 Continue\r\n\r\n");
    let first: Vec<u8> = (0..100_000u64).map(|i| b'a' + (i % 26) as u8).collect();
    s.write_all(&first).unwrap();
    // The first half comes back before the second is sent.
    read_until(&mut s, &mut got, &first[99_990..]);
    let head_at = find(&got, b"\r\n\r\nHTTP/1.1 200 OK").is_some();
    assert!(head_at, "{:?}", String::from_utf8_lossy(&got[..200]));
    let second: Vec<u8> = (0..100_000u64).map(|i| b'A' + (i % 26) as u8).collect();
    s.write_all(&second).unwrap();
    read_until(&mut s, &mut got, b"\r\n0\r\n\r\n");
    let at = find(&got, b"200 OK").unwrap();
    let body_at = at + find(&got[at..], b"\r\n\r\n").unwrap() + 4;
    let body = dechunk(&got[body_at..]);
    assert!(body.starts_with(b"POST /echo/up HTTP/1.1\nmount: /echo\n"));
    assert!(
        body.ends_with(&[first, second].concat()),
        "the body differs"
    );
}

#[test]
fn a_handler_sees_its_client_leave_mid_upload() {
    let host = HostProcess::start(&["libecho.so"], BIG_UPLOADS);
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.write_all(b"POST /echo/hash HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .unwrap();
    s.write_all(&vec![7u8; 1 << 20]).unwrap();
    drop(s);
    let line = host.wait_for_log("upload failed after", WAIT);
    assert!(line.contains("echo"), "{line}");
    assert_eq!(host.connect().get("/echo/x").status, 200);
}

#[test]
fn slow_uploaders_and_slow_readers_are_cut_off_while_others_are_served() {
    let www = std::env::temp_dir().join(format!("mah-slow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&www);
    std::fs::create_dir_all(&www).unwrap();
    const LEN: u64 = 64 * 1024 * 1024;
    std::fs::write(www.join("big.bin"), vec![1u8; LEN as usize]).unwrap();
    let config = format!(
        "[log]\nlevel = \"debug\"\n\n[limits]\nmin_data_rate = 1000000\nmin_data_rate_grace_ms = 500\nwrite_timeout_ms = 120000\n\n\
         [limits.plugins.echo]\nmax_body_bytes = 1073741824\n\n\
         [plugins.static_files]\nroot = {:?}\n\n[[routes]]\nprefix = \"/s\"\nplugin = \"static_files\"\n",
        www.display().to_string()
    );
    let host = HostProcess::start(&["libecho.so", "libstatic_files.so"], &config);

    // An upload of 10 MB at about 2 KB/s: the host answers 408 and closes.
    let mut up = TcpStream::connect(host.addr).unwrap();
    up.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    up.write_all(b"POST /echo/hash HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        .unwrap();
    // A download read at about 50 KB/s, far below the rate, of a file far larger than the
    // socket buffers. (What the kernel buffers counts as sent: on loopback that is megabytes, so
    // the rate here is high, 1 MB/s, to cut it off within seconds.)
    let mut down = TcpStream::connect(host.addr).unwrap();
    down.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    down.write_all(b"GET /s/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();

    // The client's own buffers hold megabytes the server sent before it cut the reader off, so
    // the cut shows in the host's log, not at the client.
    let peer = format!("peer={}", down.local_addr().unwrap());
    let cut = |host: &HostProcess| {
        host.log()
            .iter()
            .any(|l| l.contains("closing: timed out") && l.contains(&peer))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut answer, mut upload_done) = (Vec::new(), false);
    let mut downloaded = 0u64;
    let mut piece = [0u8; 1024];
    while !(upload_done && cut(&host)) {
        assert!(
            std::time::Instant::now() < deadline,
            "not cut off: uploaded answer {:?}, downloaded {downloaded}",
            String::from_utf8_lossy(&answer)
        );
        if !upload_done {
            let _ = up.write_all(&[b'x'; 200]);
            match up.read(&mut piece) {
                Ok(0) => upload_done = true,
                Ok(n) => answer.extend_from_slice(&piece[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => upload_done = true,
            }
        }
        if let Ok(n) = down.read(&mut piece) {
            downloaded += n as u64;
        }
        // Others are served meanwhile.
        assert_eq!(host.connect().get("/echo/other").status, 200);
        // A slow client: about 1 KiB every 20 ms.
        std::thread::sleep(Duration::from_millis(20));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(downloaded < LEN, "the slow reader got the whole file");
    drop(host);
    let _ = std::fs::remove_dir_all(&www);
}

#[test]
fn past_the_buffer_budget_a_growing_request_gets_503_and_small_ones_are_served() {
    let config = "[limits]\nmax_buffered_bytes = 1048576\n";
    let host = HostProcess::start(&["libecho.so"], config);
    // A body of 4 MiB is buffered whole before the call (it is under buffer_body_bytes), so its
    // buffer would pass the 1 MiB budget.
    let mut big = TcpStream::connect(host.addr).unwrap();
    big.set_read_timeout(Some(WAIT)).unwrap();
    big.write_all(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut piece = [0u8; 4096];
    let mut sent = 0;
    let deadline = std::time::Instant::now() + WAIT;
    while find(&answer, b"\r\n\r\n").is_none() {
        assert!(std::time::Instant::now() < deadline, "no answer");
        // The kernel's buffers may take the whole body before the server reads much of it.
        if sent < 4 << 20 && big.write_all(&[b'b'; 64 * 1024]).is_ok() {
            sent += 64 * 1024;
        }
        big.set_nonblocking(true).unwrap();
        if let Ok(n) = big.read(&mut piece) {
            answer.extend_from_slice(&piece[..n]);
        }
        big.set_nonblocking(false).unwrap();
        // Small requests are served meanwhile.
        assert_eq!(host.connect().get("/echo/small").status, 200);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    host.wait_for_log("buffer budget is spent", WAIT);
}
