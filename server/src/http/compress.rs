//! Compressing response bodies: gzip (flate2) and brotli, chosen by the request's
//! `Accept-Encoding` (RFC 9110 §12.5.3), for bodies of bytes of a compressible type above a size.
//!
//! Only a whole body of bytes is compressed (not a file sent with `sendfile`, not a stream), of a
//! `2xx` other than `204` and `206` (never a range), with no `Content-Encoding` or
//! `Content-Range` of its own. A response that could be compressed says `Vary: Accept-Encoding`
//! whether this client got it compressed or not, so that a cache keeps the variants apart; a
//! strong `ETag` becomes weak on the compressed variant (its bytes differ). A `HEAD` is answered
//! with the headers its `GET` gets, compressed length included.
//!
//! The check that rules a small response out is its first: one comparison of its length.

use std::io::Write as _;

use plugin_api::Header;

/// `[compression]`: on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// Compress at all.
    pub enabled: bool,
    /// Bodies shorter than this go as they are.
    pub min_bytes: usize,
}

impl Default for Compression {
    fn default() -> Compression {
        Compression {
            enabled: true,
            min_bytes: 1024,
        }
    }
}

/// A content coding this server produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// Whether a response of this status and these header lines (`name: value\r\n` each) may be
/// compressed: a compressible type, no coding or range of its own.
pub fn eligible(status: u16, head: &[u8]) -> bool {
    if !(200..300).contains(&status) || status == 204 || status == 206 {
        return false;
    }
    let mut compressible = false;
    for (name, value) in lines(head) {
        if name.eq_ignore_ascii_case(b"content-encoding")
            || name.eq_ignore_ascii_case(b"content-range")
        {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            compressible = compressible_type(value);
        }
    }
    compressible
}

/// Text, JSON, JavaScript, XML, SVG and the like; not images, video, archives (compressed
/// already).
fn compressible_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    let essence = String::from_utf8_lossy(essence).trim().to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/wasm"
                | "application/x-ndjson"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
        )
}

/// The coding the client prefers among those we produce, from its `Accept-Encoding` lines:
/// brotli over gzip when both are as welcome; `None` when it accepts neither (or sent none).
pub fn chosen(headers: &[Header<'_>]) -> Option<Coding> {
    let mut best: Option<(u16, Coding)> = None;
    let mut star: Option<u16> = None;
    let mut named = [false; 2];
    for h in headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("accept-encoding"))
    {
        for item in h.value().split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = String::from_utf8_lossy(parts.next().unwrap_or_default())
                .trim()
                .to_ascii_lowercase();
            let q = parts
                .filter_map(|p| {
                    let p = String::from_utf8_lossy(p);
                    let (k, v) = p.trim().split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
                })
                .next()
                .unwrap_or(1000);
            let coding = match coding.as_str() {
                "br" => Coding::Brotli,
                "gzip" | "x-gzip" => Coding::Gzip,
                "*" => {
                    star = Some(q);
                    continue;
                }
                _ => continue,
            };
            named[coding as usize] = true;
            best = prefer(best, q, coding);
        }
    }
    // `*` stands for the codings not named.
    if let Some(q) = star {
        for (i, coding) in [Coding::Brotli, Coding::Gzip].into_iter().enumerate() {
            if !named[i] {
                best = prefer(best, q, coding);
            }
        }
    }
    best.filter(|&(q, _)| q > 0).map(|(_, c)| c)
}

fn prefer(best: Option<(u16, Coding)>, q: u16, coding: Coding) -> Option<(u16, Coding)> {
    match best {
        Some((bq, bc)) if bq > q || (bq == q && bc == Coding::Brotli) => Some((bq, bc)),
        _ => Some((q, coding)),
    }
}

/// A q-value in thousandths (`0.8` is 800); a malformed one counts as 0 (not acceptable).
fn qvalue(v: &str) -> u16 {
    match v.parse::<f32>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 1000.0).round() as u16,
        _ => 0,
    }
}

/// Compresses `body`.
pub fn compress(coding: Coding, body: &[u8]) -> Vec<u8> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 3),
                flate2::Compression::new(1),
            );
            let _ = e.write_all(body);
            e.finish().unwrap_or_default()
        }
        Coding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 3);
            // A window no larger than the body: the encoder's tables are sized by it, and
            // making (and zeroing) a 1 MiB window for a 20 KiB body cost more than compressing.
            let lgwin = (usize::BITS - body.len().max(1).leading_zeros()).clamp(10, 22) as i32;
            let params = brotli::enc::BrotliEncoderParams {
                quality: 3,
                lgwin,
                ..Default::default()
            };
            let _ = brotli::BrotliCompress(&mut &body[..], &mut out, &params);
            out
        }
    }
}

/// The header lines of the response as sent: `head` with `Content-Encoding` when `coding` is
/// set, a strong `ETag` made weak then, and `Vary: Accept-Encoding` added to (or as) a `Vary`.
pub fn head(head: &[u8], coding: Option<Coding>) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 48);
    let mut varied = false;
    for (name, value) in lines(head) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        if coding.is_some() && name.eq_ignore_ascii_case(b"etag") && value.starts_with(b"\"") {
            out.extend_from_slice(b"W/");
        }
        out.extend_from_slice(value);
        if name.eq_ignore_ascii_case(b"vary") {
            varied = true;
            let listed = value.split(|&b| b == b',').any(|v| {
                v.trim_ascii().eq_ignore_ascii_case(b"accept-encoding") || v.trim_ascii() == b"*"
            });
            if !listed {
                out.extend_from_slice(b", accept-encoding");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    if !varied {
        out.extend_from_slice(b"vary: accept-encoding\r\n");
    }
    if let Some(c) = coding {
        out.extend_from_slice(b"content-encoding: ");
        out.extend_from_slice(c.token().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The header lines of a checked response head: `(name, value)`, value without its whitespace.
fn lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use plugin_api::{Request, RequestParts};

    use super::*;

    fn accept(value: &str) -> Option<Coding> {
        let headers = [Header::new("Accept-Encoding", value.as_bytes())];
        let request = Request::new(RequestParts {
            headers: &headers,
            ..RequestParts::default()
        });
        chosen(request.headers())
    }

    #[test]
    fn the_coding_follows_accept_encoding() {
        assert_eq!(accept("gzip, deflate, br"), Some(Coding::Brotli));
        assert_eq!(accept("gzip"), Some(Coding::Gzip));
        assert_eq!(accept("br;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(accept("br;q=0, gzip;q=0"), None);
        assert_eq!(accept("identity"), None);
        assert_eq!(accept("*"), Some(Coding::Brotli));
        assert_eq!(accept("br;q=0, *"), Some(Coding::Gzip));
        assert_eq!(accept("gzip;q=bad"), None);
        assert_eq!(chosen(&[]), None);
    }

    #[test]
    fn only_compressible_types_without_a_coding_or_range() {
        assert!(eligible(200, b"content-type: application/json\r\n"));
        assert!(eligible(200, b"Content-Type: text/html; charset=utf-8\r\n"));
        assert!(eligible(201, b"content-type: application/problem+json\r\n"));
        assert!(!eligible(200, b"content-type: image/png\r\n"));
        assert!(!eligible(200, b""));
        assert!(!eligible(206, b"content-type: text/plain\r\n"));
        assert!(!eligible(404, b"content-type: text/plain\r\n"));
        assert!(!eligible(
            200,
            b"content-type: text/plain\r\ncontent-encoding: gzip\r\n"
        ));
        assert!(!eligible(
            200,
            b"content-type: text/plain\r\ncontent-range: bytes 0-1/2\r\n"
        ));
    }

    #[test]
    fn both_codings_round_trip_and_the_head_says_so() {
        let body = br#"{"items":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(100);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&compress(Coding::Gzip, &body)[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let mut back = Vec::new();
        brotli::BrotliDecompress(&mut &compress(Coding::Brotli, &body)[..], &mut back).unwrap();
        assert_eq!(back, body);
        assert!(compress(Coding::Brotli, &body).len() < body.len() / 10);

        let h = head(
            b"content-type: text/plain\r\netag: \"abc\"\r\n",
            Some(Coding::Gzip),
        );
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "content-type: text/plain\r\netag: W/\"abc\"\r\nvary: accept-encoding\r\n\
             content-encoding: gzip\r\n"
        );
        let h = head(b"vary: origin\r\netag: \"abc\"\r\n", None);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "vary: origin, accept-encoding\r\netag: \"abc\"\r\n"
        );
    }
}
