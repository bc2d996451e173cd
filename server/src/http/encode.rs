//! Response encoding: status line, the server's framing headers, the handler's headers, the body.
//!
//! Everything is appended to the worker's output buffer, so the responses to all requests found in
//! one read leave in one `write`. The `Date` header is formatted at most once a second per worker
//! ([`DateCache`]).

use std::time::{SystemTime, UNIX_EPOCH};

use plugin_api::{ResponseView, Version, reason};

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// HTTP/1.1 default: nothing to say.
    KeepAlive11,
    /// HTTP/1.0 keep-alive: say `keep-alive` (RFC 9112 §9.3 and Appendix C.2.2).
    KeepAlive10,
    /// The connection closes after this response: say `close`.
    Close,
}

/// Appends `response` to `out`.
///
/// For `HEAD` (`head_only`), the headers are those of the `GET` response, `Content-Length`
/// included, and no body is sent (RFC 9110 §9.3.2). Status 1xx, 204 and 304 carry neither a body
/// nor a `Content-Length` (RFC 9110 §8.6, §15.3.5, §15.4.5).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    response: ResponseView<'_>,
    head_only: bool,
    persist: Persist,
    date: &[u8],
) {
    let status = response.status;
    status_line(out, status);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    let bodyless = matches!(status, 100..=199 | 204 | 304);
    if !bodyless {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, response.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    match persist {
        Persist::KeepAlive11 => {}
        Persist::KeepAlive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(response.head);
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodyless {
        out.extend_from_slice(response.body);
    }
}

/// Appends a short plain-text error response that closes the connection.
pub(crate) fn encode_error(out: &mut Vec<u8>, status: u16, why: &str, date: &[u8]) {
    status_line(out, status);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    push_decimal(out, why.len() as u64 + 1);
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(why.as_bytes());
    out.push(b'\n');
}

/// Appends the `503` for a server too busy to queue the request, with `Retry-After` (RFC 9110
/// §10.2.3, §15.6.4).
pub(crate) fn encode_busy(out: &mut Vec<u8>, date: &[u8]) {
    const WHY: &str = "server busy, retry shortly\n";
    status_line(out, 503);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(
        b"\r\nretry-after: 1\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
    );
    push_decimal(out, WHY.len() as u64);
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(WHY.as_bytes());
}

/// The interim `100 Continue` (RFC 9110 §15.2.1).
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How the response persists, from the request's version and the decision to close.
pub(crate) fn persist(version: Version, close: bool) -> Persist {
    match (close, version) {
        (true, _) => Persist::Close,
        (false, Version::Http10) => Persist::KeepAlive10,
        (false, Version::Http11) => Persist::KeepAlive11,
    }
}

fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The `Date` header value, reformatted only when the second changes.
pub(crate) struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    pub fn new() -> DateCache {
        DateCache {
            second: u64::MAX,
            text: [0; 29],
        }
    }

    /// The time of the last [`refresh`](Self::refresh), in IMF-fixdate form (RFC 9110 §5.6.7).
    pub fn get(&self) -> &[u8] {
        &self.text
    }

    /// The current time in IMF-fixdate form (RFC 9110 §5.6.7).
    pub fn now(&mut self) -> &[u8] {
        self.refresh();
        &self.text
    }

    /// Reads the clock and reformats if the second changed.
    pub fn refresh(&mut self) {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text = imf_fixdate(second);
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch.
fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], day as u64);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year as u64;
    two_digits(&mut out[12..14], y / 100);
    two_digits(&mut out[14..16], y % 100);
    two_digits(&mut out[17..19], rem / 3600);
    two_digits(&mut out[20..22], rem / 60 % 60);
    two_digits(&mut out[23..25], rem % 60);
    out
}

/// `10/Oct/2000:13:55:36 +0000`, the time of Common Log Format lines, for seconds since the epoch.
pub(crate) fn clf_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Year, month (1–12), day (1–31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use plugin_api::ResponseBuilder;

    use super::*;

    #[test]
    fn formats_clf_time() {
        assert_eq!(clf_time(971_186_136), "10/Oct/2000:13:55:36 +0000");
    }

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            &imf_fixdate(1_795_478_399),
            b"Mon, 23 Nov 2026 23:59:59 GMT"
        );
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_a_response() {
        let r = ResponseBuilder::empty_200()
            .body("Hello")
            .content_type("text/plain")
            .build()
            .unwrap();
        let mut out = Vec::new();
        encode(&mut out, r.view(), false, Persist::KeepAlive11, b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nHello"
        );
        out.clear();
        encode(&mut out, r.view(), true, Persist::Close, b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length: 5\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\n"
        );
    }

    #[test]
    fn bodyless_statuses_have_no_length() {
        let r = ResponseBuilder::new(204).body("ignored").build().unwrap();
        let mut out = Vec::new();
        encode(&mut out, r.view(), false, Persist::KeepAlive10, b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 204 No Content\r\ndate: D\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn error_responses_close() {
        let mut out = Vec::new();
        encode_error(&mut out, 400, "bad", b"D");
        assert_eq!(
            text(&out),
            "HTTP/1.1 400 Bad Request\r\ndate: D\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbad\n"
        );
        let mut n = Vec::new();
        push_decimal(&mut n, 0);
        push_decimal(&mut n, u64::MAX);
        assert_eq!(text(&n), "018446744073709551615");
    }
}
