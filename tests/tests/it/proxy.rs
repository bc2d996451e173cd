//! The real client address behind a balancer: the PROXY protocol (v1 and v2) from trusted
//! sources, and `X-Forwarded-For` from trusted proxies. The access log shows whose a request was.

use std::time::Duration;

use integration_tests::HostProcess;

const WAIT: Duration = Duration::from_secs(30);
const GET: &str = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x20 | command, family]);
    h.extend((body.len() as u16).to_be_bytes());
    h.extend(body);
    h
}

/// The access log line of the request for `target` (a unique query tells requests apart).
fn logged(host: &HostProcess, target: &str) -> String {
    host.wait_for_log(&format!("\"GET {target} HTTP/1.1\""), WAIT)
}

#[test]
fn the_proxy_protocol_gives_each_request_its_client_address() {
    let host = HostProcess::start(
        &["libhello.so"],
        "proxy_protocol = true\n[log]\naccess = true\n",
    );
    // Version 1, then two requests on the same connection: both are the client's.
    let mut c = host.connect();
    let r = c
        .send(
            "PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\nGET /hello?v1 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .reply();
    assert_eq!((r.status, r.text()), (200, "Hello"), "{r:?}");
    assert_eq!(c.get("/hello?again").status, 200);
    assert!(logged(&host, "/hello?v1").starts_with_log_peer("203.0.113.7"));
    assert!(logged(&host, "/hello?again").starts_with_log_peer("203.0.113.7"));
    // Version 2, the header and the request in separate writes.
    let mut body = vec![198, 51, 100, 9, 127, 0, 0, 1];
    body.extend(5555u16.to_be_bytes());
    body.extend(80u16.to_be_bytes());
    let mut c = host.connect();
    c.send(v2(1, 0x11, &body));
    std::thread::sleep(Duration::from_millis(20));
    let r = c.send("GET /hello?v2 HTTP/1.1\r\nHost: t\r\n\r\n").reply();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(logged(&host, "/hello?v2").starts_with_log_peer("198.51.100.9"));
    // LOCAL (a balancer's health check): the connection's own address.
    let mut c = host.connect();
    let r = c
        .send(
            [
                v2(0, 0, &[]),
                b"GET /hello?local HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            ]
            .concat(),
        )
        .reply();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(logged(&host, "/hello?local").starts_with_log_peer("127.0.0.1"));
}

#[test]
fn a_connection_without_the_header_or_from_an_untrusted_source_is_refused() {
    let host = HostProcess::start(&["libhello.so"], "proxy_protocol = true\n");
    let mut c = host.connect();
    c.send(GET);
    c.expect_closed();
    let mut c = host.connect();
    c.send("PROXY TCP4 nowhere 127.0.0.1 1 2\r\n");
    c.expect_closed();
    // Only 10.0.0.0/8 may connect: a loopback client is refused before it sends a byte.
    let host = HostProcess::start(
        &["libhello.so"],
        "proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    );
    let mut c = host.connect();
    c.send("PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\n");
    c.expect_closed();
}

#[test]
fn x_forwarded_for_is_taken_from_trusted_proxies_only() {
    let host = HostProcess::start(
        &["libhello.so"],
        "forwarded_for = true\n[log]\naccess = true\n",
    );
    let mut c = host.connect();
    let r = c
        .send(
            "GET /hello?xff HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.1, 203.0.113.5\r\n\
             X-Forwarded-For: 127.0.0.1\r\n\r\n",
        )
        .reply();
    assert_eq!(r.status, 200, "{r:?}");
    // The rightmost address that is not a trusted proxy: what the first one of ours saw.
    assert!(logged(&host, "/hello?xff").starts_with_log_peer("203.0.113.5"));
    // Behind a PROXY header that names no client, the balancer vouches for no one.
    let host = HostProcess::start(
        &["libhello.so"],
        "proxy_protocol = true\nforwarded_for = true\n[log]\naccess = true\n",
    );
    let r = host
        .connect()
        .send(
            "PROXY UNKNOWN\r\nGET /hello?unknown HTTP/1.1\r\nHost: t\r\n\
             X-Forwarded-For: 203.0.113.5\r\n\r\n",
        )
        .reply();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(logged(&host, "/hello?unknown").starts_with_log_peer("127.0.0.1"));
    // A peer that is not trusted cannot say whose its request is.
    let host = HostProcess::start(
        &["libhello.so"],
        "forwarded_for = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n[log]\naccess = true\n",
    );
    let r = host
        .connect()
        .send("GET /hello?spoof HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n")
        .reply();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(logged(&host, "/hello?spoof").starts_with_log_peer("127.0.0.1"));
}

/// The access log's message begins with the peer's address (Common Log Format).
trait LogPeer {
    fn starts_with_log_peer(&self, ip: &str) -> bool;
}

impl LogPeer for String {
    fn starts_with_log_peer(&self, ip: &str) -> bool {
        self.contains(&format!(" {ip} - - ["))
    }
}
