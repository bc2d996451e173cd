//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a balancer sends first on a
//! connection to say whose it is, so that the server sees the client's address instead of the
//! balancer's. And who may say so: [`Trusted`] sources (loopback by default), whose
//! `X-Forwarded-For` the host may also take (`forwarded_for`).
//!
//! Only a trusted source's connection is read for the header; with `proxy_protocol = true` a
//! connection from any other source is refused at once, and one from a trusted source that does
//! not begin with a valid header is closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes a version 2 header begins with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// The longest version 2 header we take: the fixed part, the addresses and 8 KiB of TLVs (TLS
/// and cloud balancers' TLVs fit; HAProxy itself sends a few dozen bytes).
const V2_MAX: usize = 16 + 8192;

/// What a complete header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// Its length: where the HTTP bytes begin.
    pub len: usize,
    /// The client's address; `None` when the balancer speaks for itself (v2 `LOCAL`, a health
    /// check) or does not know (`UNKNOWN`, an unsupported family): the connection's own peer
    /// stands.
    pub client: Option<SocketAddr>,
}

/// Parses the header at the start of `bytes`: `Ok(None)` while it is incomplete, `Err` with a
/// reason when it is not a valid header.
pub fn parse(bytes: &[u8]) -> Result<Option<Proxied>, &'static str> {
    if bytes.len() >= V2_SIGNATURE.len() && bytes.starts_with(V2_SIGNATURE) {
        return v2(bytes);
    }
    // A prefix of either signature may still become one.
    let n = bytes.len().min(V2_SIGNATURE.len());
    if bytes.len() < V2_SIGNATURE.len() && bytes[..n] == V2_SIGNATURE[..n] {
        return Ok(None);
    }
    let n = bytes.len().min(6);
    if bytes[..n] != b"PROXY "[..n] {
        return Err("the connection does not begin with a PROXY protocol header");
    }
    v1(bytes)
}

/// `PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n`, or `PROXY UNKNOWN …\r\n`.
fn v1(bytes: &[u8]) -> Result<Option<Proxied>, &'static str> {
    let Some(end) = bytes.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err("PROXY v1 header longer than 107 bytes")
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&bytes[..end]).map_err(|_| "PROXY v1 header is not text")?;
    let len = end + 2;
    let mut fields = line.split(' ');
    let _ = fields.next(); // PROXY
    let family = fields.next().ok_or("PROXY v1 header without a protocol")?;
    if family == "UNKNOWN" {
        return Ok(Some(Proxied { len, client: None }));
    }
    let (src, _dst, sport, _dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err("PROXY v1 header without two addresses and two ports"),
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| "PROXY v1 TCP4 source is not an IPv4 address")?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| "PROXY v1 TCP6 source is not an IPv6 address")?,
        _ => return Err("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let valid_port =
        |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if !valid_port(sport) {
        return Err("PROXY v1 source port is not a number");
    }
    let port: u16 = sport
        .parse()
        .map_err(|_| "PROXY v1 source port is out of range")?;
    Ok(Some(Proxied {
        len,
        client: Some(SocketAddr::new(ip, port)),
    }))
}

/// The binary header: signature, version and command, family, length, addresses, TLVs.
fn v2(bytes: &[u8]) -> Result<Option<Proxied>, &'static str> {
    if bytes.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (bytes[12] >> 4, bytes[12] & 0x0f);
    if version != 2 {
        return Err("PROXY v2 header of another version");
    }
    let rest = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = 16 + rest;
    if len > V2_MAX {
        return Err("PROXY v2 header too long");
    }
    if bytes.len() < len {
        return Ok(None);
    }
    let body = &bytes[16..len];
    let client = match command {
        // LOCAL: the balancer's own connection (a health check): its address stands.
        0 => None,
        1 => match bytes[13] {
            // TCP over IPv4: source, destination, source port, destination port.
            0x11 if body.len() >= 12 => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3])),
                u16::from_be_bytes([body[8], body[9]]),
            )),
            0x21 if body.len() >= 36 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&body[..16]);
                Some(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(ip)),
                    u16::from_be_bytes([body[32], body[33]]),
                ))
            }
            0x11 | 0x21 => return Err("PROXY v2 addresses shorter than their family"),
            // UNSPEC, UDP, UNIX: no TCP client address to take.
            0x00 | 0x12 | 0x22 | 0x31 | 0x32 => None,
            _ => return Err("PROXY v2 address family is not one the spec defines"),
        },
        _ => return Err("PROXY v2 command is neither LOCAL nor PROXY"),
    };
    Ok(Some(Proxied { len, client }))
}

/// Who may say whose a connection or a request is, and how (`proxy_protocol`, `forwarded_for`,
/// `trusted_proxies` at the top of `config.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Connections from `trusted` sources must begin with a PROXY header; connections from any
    /// other source are refused.
    pub protocol: bool,
    /// A request whose peer is trusted is from the rightmost untrusted address of its
    /// `X-Forwarded-For`.
    pub forwarded_for: bool,
    /// The balancers and proxies.
    pub trusted: Trusted,
}

/// Sources trusted to say whose a connection or a request is: address blocks (`10.0.0.0/8`,
/// `::1`), loopback by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted(Vec<(IpAddr, u8)>);

impl Default for Trusted {
    fn default() -> Trusted {
        Trusted(vec![
            (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ])
    }
}

impl Trusted {
    /// Parses blocks written `ADDRESS` or `ADDRESS/BITS`.
    ///
    /// # Errors
    /// The first entry that is not one, and why.
    pub fn parse(blocks: &[String]) -> Result<Trusted, String> {
        blocks
            .iter()
            .map(|b| {
                let (ip, bits) = b.split_once('/').unwrap_or((b, ""));
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("{b:?} is not an address or an ADDRESS/BITS block"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits =
                    match bits {
                        "" => max,
                        n => n.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(|| {
                            format!("{b:?}: the prefix length must be 0 to {max}")
                        })?,
                    };
                Ok((ip, bits))
            })
            .collect::<Result<_, _>>()
            .map(Trusted)
    }

    /// Whether `ip` is in one of the blocks (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(block, bits)| match (block, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => prefix(&b.octets(), &a.octets(), bits),
            (IpAddr::V6(b), IpAddr::V6(a)) => prefix(&b.octets(), &a.octets(), bits),
            _ => false,
        })
    }

    /// The client of a request that came through trusted proxies: the rightmost address of
    /// `X-Forwarded-For` (each proxy appends the peer it saw) that is not itself trusted; `None`
    /// when the header holds no such valid address.
    pub fn forwarded_client(&self, forwarded_for: &str) -> Option<IpAddr> {
        for entry in forwarded_for.rsplit(',') {
            let ip: IpAddr = entry.trim().parse().ok()?;
            if !self.contains(ip) {
                return Some(ip);
            }
        }
        None
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] ^ b[whole]) & (0xffu8 << (8 - rest)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(bytes: &[u8]) -> Option<SocketAddr> {
        parse(bytes).unwrap().unwrap().client
    }

    #[test]
    fn version_1_gives_the_source_and_where_http_begins() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        let p = parse(h).unwrap().unwrap();
        assert_eq!(p.client, Some("192.0.2.1:56324".parse().unwrap()));
        assert_eq!(&h[p.len..p.len + 3], b"GET");
        assert_eq!(
            client(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"),
            Some("[2001:db8::1]:1".parse().unwrap())
        );
        assert_eq!(client(b"PROXY UNKNOWN\r\n"), None);
        assert_eq!(client(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), None);
        // Incomplete: wait for more.
        assert_eq!(parse(b"PROX"), Ok(None));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.1"), Ok(None));
    }

    #[test]
    fn version_1_refuses_what_is_not_a_header() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 120]].concat();
        assert!(parse(&long).is_err());
    }

    fn v2_header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x20 | command, family]);
        h.extend((body.len() as u16).to_be_bytes());
        h.extend(body);
        h
    }

    #[test]
    fn version_2_gives_the_source_and_skips_tlvs() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
        body.extend(56324u16.to_be_bytes());
        body.extend(443u16.to_be_bytes());
        body.extend([0x04, 0x00, 0x01, 0xaa]); // a TLV (NOOP)
        let mut h = v2_header(1, 0x11, &body);
        let len = h.len();
        h.extend(b"GET /");
        let p = parse(&h).unwrap().unwrap();
        assert_eq!(
            (p.len, p.client),
            (len, Some("192.0.2.1:56324".parse().unwrap()))
        );
        let mut six = [0u8; 36];
        six[15] = 1;
        six[32..34].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(
            client(&v2_header(1, 0x21, &six)),
            Some("[::1]:8080".parse().unwrap())
        );
        // LOCAL (a health check): no client address.
        assert_eq!(client(&v2_header(0, 0x00, &[])), None);
        // Incomplete.
        assert_eq!(parse(&h[..10]), Ok(None));
        assert_eq!(parse(&h[..20]), Ok(None));
        // Short addresses, another version, another command.
        assert!(parse(&v2_header(1, 0x11, &[1, 2, 3])).is_err());
        let mut v3 = v2_header(1, 0x11, &body);
        v3[12] = 0x31;
        assert!(parse(&v3).is_err());
        assert!(parse(&v2_header(2, 0x11, &body)).is_err());
        assert!(parse(&v2_header(1, 0x41, &body)).is_err());
        assert_eq!(client(&v2_header(1, 0x12, &body)), None);
    }

    #[test]
    fn trusted_blocks_and_the_forwarded_client() {
        let t = Trusted::parse(&["10.0.0.0/8".into(), "192.168.1.7".into(), "fd00::/8".into()])
            .unwrap();
        assert!(t.contains("10.200.3.4".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert!(t.contains("192.168.1.7".parse().unwrap()));
        assert!(!t.contains("192.168.1.8".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(Trusted::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Trusted::parse(&["nowhere".into()]).is_err());
        assert!(Trusted::default().contains("127.0.0.1".parse().unwrap()));
        // The rightmost untrusted entry: what the first trusted proxy saw.
        assert_eq!(
            t.forwarded_client("203.0.113.9, 198.51.100.1, 10.0.0.2"),
            Some("198.51.100.1".parse().unwrap())
        );
        assert_eq!(t.forwarded_client("10.0.0.1, 10.0.0.2"), None);
        assert_eq!(t.forwarded_client("junk, 10.0.0.2"), None);
    }
}
