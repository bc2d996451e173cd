//! A deliberately raw HTTP/1.1 client: it writes exactly the bytes a test gives it and parses
//! responses just enough to split them, so that tests can assert on what went over the wire.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One connection.
pub struct Client {
    /// The socket, for tests that need to poke at it.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// One response, as received.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The status line and headers, as text.
    pub head: String,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as text.
    ///
    /// # Panics
    /// If it is not UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }
}

/// A `GET` of `path` with a `Host` header.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

impl Client {
    /// Connects, with a 30-second read timeout so that a hung server fails the test (and a slow,
    /// busy machine does not).
    ///
    /// # Panics
    /// If the connection is refused.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends each write at once (`TCP_NODELAY`), for tests that trickle bytes.
    ///
    /// # Panics
    /// If the option cannot be set.
    pub fn nodelay(&mut self) -> &mut Client {
        self.stream.set_nodelay(true).expect("set TCP_NODELAY");
        self
    }

    /// Writes `bytes`.
    ///
    /// # Panics
    /// If the write fails.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Client {
        self.stream.write_all(bytes.as_ref()).expect("send");
        self
    }

    /// Reads once more into the buffer; returns how much arrived (0 at EOF or reset).
    ///
    /// # Panics
    /// On a read error other than a reset, with what was received so far.
    pub fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) => panic!(
                "read failed: {e}; received so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads one response framed by `Content-Length` (none for a `HEAD`: `head_request`).
    ///
    /// # Panics
    /// If the connection closes first, or the response is malformed; shows what arrived.
    pub fn reply_to(&mut self, head_request: bool) -> Reply {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill() > 0,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("an ASCII head");
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut reply = Reply {
            status,
            head,
            body: Vec::new(),
        };
        let len: usize = match reply.header("content-length") {
            Some(v) if !head_request => v.parse().expect("a numeric Content-Length"),
            _ => 0,
        };
        while self.buf.len() < head_end + len {
            assert!(self.fill() > 0, "connection closed mid-body");
        }
        reply.body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        reply
    }

    /// Reads one response, or `None` when the connection closes before any byte of one arrived
    /// (the server had not read the request).
    ///
    /// # Panics
    /// If the connection closes in the middle of a response.
    pub fn try_reply(&mut self) -> Option<Reply> {
        if self.buf.is_empty() && self.fill() == 0 {
            return None;
        }
        Some(self.reply())
    }

    /// Reads one response to a request that was not `HEAD`.
    pub fn reply(&mut self) -> Reply {
        self.reply_to(false)
    }

    /// Sends a `GET` of `path` and reads the response.
    pub fn get(&mut self, path: &str) -> Reply {
        self.send(get(path)).reply()
    }

    /// Asserts that the server closes the connection without sending anything more.
    ///
    /// # Panics
    /// If bytes arrive instead.
    pub fn expect_closed(&mut self) {
        let n = self.fill();
        assert_eq!(
            n,
            0,
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}
