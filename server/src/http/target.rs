//! The request line's method and target, and the `Host` header: RFC 9112 §3 and §3.2, with the
//! authority grammar of RFC 3986 §3.2.2 (`uri-host [ ":" port ]`).
//!
//! `parse.rs` calls these once per request head; nothing here allocates.

use std::net::Ipv6Addr;

use super::parse::Reject;

/// The longest method accepted. Registered methods are at most 17 bytes (`UPDATEREDIRECTREF`); a
/// longer one is not one this server could implement (RFC 9110 §9.1: 501).
pub(crate) const MAX_METHOD: usize = 32;

/// An absolute-form target's authority, kept to compare with `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Authority<'b> {
    https: bool,
    host: &'b [u8],
    port: &'b [u8],
}

/// The method: a token (httparse checked it) of at most [`MAX_METHOD`] bytes.
pub(crate) fn check_method(method: &str) -> Result<(), Reject> {
    if method.len() > MAX_METHOD {
        return Err(long_method());
    }
    Ok(())
}

/// 501 for a method longer than [`MAX_METHOD`].
pub(crate) const fn long_method() -> Reject {
    Reject::new(501, "request method not implemented (longer than 32 bytes)")
}

/// RFC 9112 §3.2: origin-form; absolute-form for `http` and `https` with a valid authority and no
/// userinfo (RFC 9110 §4.2.4: a recipient treats it as an error); asterisk-form for `OPTIONS`
/// only. (Authority-form is for `CONNECT`, which this server does not proxy.) Returns the
/// authority of an absolute-form target.
///
/// A target has no fragment, so `#` is refused: `http://x#/admin` would otherwise be routed to
/// `/admin` here and to `/` by a proxy in front. So is `\`, which some proxies turn into `/`.
/// Other bytes outside RFC 3986's (`{`, `|`, `^`, raw UTF-8 …) are taken as browsers send them.
pub(crate) fn check_target<'b>(
    method: &str,
    target: &'b str,
) -> Result<Option<Authority<'b>>, Reject> {
    let bytes = target.as_bytes();
    if bytes.iter().any(|&b| b == b'#' || b == b'\\') {
        return Err(Reject::new(
            400,
            "invalid request target (a fragment or a backslash)",
        ));
    }
    let rest = if bytes.len() >= 8 && bytes[..8].eq_ignore_ascii_case(b"https://") {
        Some((true, &bytes[8..]))
    } else if bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"http://") {
        Some((false, &bytes[7..]))
    } else {
        None
    };
    match (bytes.first(), rest) {
        (Some(b'/'), _) => Ok(None),
        (Some(b'*'), _) if target == "*" && method == "OPTIONS" => Ok(None),
        (Some(_), Some((https, rest))) => {
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            let authority = &rest[..end];
            if authority.contains(&b'@') {
                return Err(Reject::new(400, "userinfo in the request target"));
            }
            match split_host(authority) {
                // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
                Some((host, port)) if !host.is_empty() => Ok(Some(Authority { https, host, port })),
                _ => Err(Reject::new(400, "invalid authority in the request target")),
            }
        }
        _ => Err(Reject::new(400, "invalid request target")),
    }
}

/// RFC 9112 §3.2: `Host` is `uri-host [ ":" port ]`, or empty (for a target without an
/// authority). `value` as httparse gives it: no whitespace before it; trailing whitespace is OWS.
pub(crate) fn check_host(value: &[u8]) -> Result<(), Reject> {
    let value = value.trim_ascii_end();
    match split_host(value) {
        Some((host, port)) if !host.is_empty() || (value.is_empty() && port.is_empty()) => Ok(()),
        _ => Err(Reject::new(400, "invalid Host header")),
    }
}

/// RFC 9112 §3.2.2: for an absolute-form target, the server uses the target's authority and
/// ignores `Host`; a `Host` that names another authority is refused rather than ignored, so that
/// a handler reading `Host` never sees a different host from the one the request is for.
pub(crate) fn check_host_matches(authority: Authority<'_>, host: &[u8]) -> Result<(), Reject> {
    let Some((name, port)) = split_host(host.trim_ascii_end()) else {
        return Err(Reject::new(400, "invalid Host header"));
    };
    let default: &[u8] = if authority.https { b"443" } else { b"80" };
    let port_or_default = |p: &'_ [u8]| -> u64 {
        let p = if p.is_empty() { default } else { p };
        std::str::from_utf8(p)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(u64::MAX)
    };
    if name.eq_ignore_ascii_case(authority.host)
        && port_or_default(port) == port_or_default(authority.port)
    {
        Ok(())
    } else {
        Err(Reject::new(
            400,
            "Host does not match the request target's authority",
        ))
    }
}

/// Splits `uri-host [ ":" port ]` into the host and the port's digits (empty when absent);
/// `None` when it is not that. The host may be empty here; callers decide.
fn split_host(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let (host, rest) = if value.first() == Some(&b'[') {
        let close = value.iter().position(|&b| b == b']')?;
        let literal = &value[1..close];
        if !is_ip_literal(literal) {
            return None;
        }
        (&value[..=close], &value[close + 1..])
    } else {
        let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let host = &value[..colon];
        if !is_reg_name(host) {
            return None;
        }
        (host, &value[colon..])
    };
    let port = match rest {
        [] => rest,
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => port,
        _ => return None,
    };
    Some((host, port))
}

/// RFC 3986 `reg-name`: unreserved, pct-encoded and sub-delims (an IPv4 address is one too).
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if is_unreserved(b) || is_sub_delim(b) => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// RFC 3986 `IP-literal` without its brackets: an IPv6 address or `IPvFuture`.
fn is_ip_literal(literal: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = literal {
        let dot = rest.iter().position(|&b| b == b'.');
        return dot.is_some_and(|dot| {
            let (version, tail) = (&rest[..dot], &rest[dot + 1..]);
            !version.is_empty()
                && version.iter().all(u8::is_ascii_hexdigit)
                && !tail.is_empty()
                && tail
                    .iter()
                    .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
        });
    }
    std::str::from_utf8(literal).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_follow_the_authority_grammar() {
        for good in [
            &b"example.com"[..],
            b"example.com:8080",
            b"EXAMPLE.com:",
            b"127.0.0.1:80",
            b"[::1]:443",
            b"[2001:db8::7]",
            b"[v1.fe80::a+en1]",
            b"a%20b",
            b"xn--bcher-kva.example",
            b"sub_delims!$&'()*+,;=",
            b"",
            b"host ",
        ] {
            assert!(
                check_host(good).is_ok(),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"a:b",
            b"a:80:80",
            b":80",
            b"user@host",
            b"[::1",
            b"[not-an-ip]",
            b"[::1]x",
            b"[v1.]",
            b"a%2",
            b"a%zz",
            b"h\x7fst",
            b"h\xc3\xa9",
        ] {
            assert_eq!(
                check_host(bad).map_err(|r| r.status),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn targets_and_their_authority() {
        assert_eq!(check_target("GET", "/a?b"), Ok(None));
        assert_eq!(check_target("OPTIONS", "*"), Ok(None));
        let a = check_target("GET", "http://Example.com:8080/x")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.host, a.port, a.https),
            (&b"Example.com"[..], &b"8080"[..], false)
        );
        let a = check_target("GET", "HTTPS://[::1]?q").unwrap().unwrap();
        assert_eq!((a.host, a.port, a.https), (&b"[::1]"[..], &b""[..], true));
        for bad in [
            "GET * ",
            "*",
            "x",
            "http://",
            "http:///x",
            "http://user:pw@host/",
            "http://a b/",
            "http://host:port/",
            "ftp://host/",
            "/a#b",
            "http://x#/admin",
            "/a\\..\\b",
        ] {
            assert_eq!(
                check_target("GET", bad).map_err(|r| r.status),
                Err(400),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_absolute_target_and_host_name_the_same_authority() {
        let target = |t| check_target("GET", t).unwrap().unwrap();
        let same = |t, h: &[u8]| check_host_matches(target(t), h).is_ok();
        assert!(same("http://example.com/", b"example.com"));
        assert!(same("http://example.com/", b"EXAMPLE.COM:80"));
        assert!(same("http://example.com:80/", b"example.com"));
        assert!(same("https://example.com/", b"example.com:443"));
        assert!(same("http://example.com:8080/", b"example.com:08080"));
        assert!(!same("http://example.com/", b"other.com"));
        assert!(!same("http://example.com/", b"example.com:8080"));
        assert!(!same("https://example.com/", b"example.com:80"));
        assert!(!same("http://example.com/", b""));
    }

    #[test]
    fn long_methods_are_501() {
        assert!(check_method(&"M".repeat(MAX_METHOD)).is_ok());
        let long = "M".repeat(MAX_METHOD + 1);
        assert_eq!(check_method(&long).map_err(|r| r.status), Err(501));
    }
}
