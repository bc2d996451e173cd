//! Entry points for the fuzz targets in `fuzz/` and for the property tests: thin wrappers that run
//! the parsers on arbitrary input and assert their invariants. Not part of the API.

use std::path::Path;

use plugin_api::ResponseView;

use crate::Limits;
use crate::config::Config;
use crate::http::body::Chunked;
use crate::http::encode::{Persist, bodyless, encode};
use crate::http::parse::{Framing, parse_head as parse};

/// Parses `data` as a request head with the default limits and with tight ones. A head that parses
/// parses again, identically, from exactly its own bytes.
pub fn parse_head(data: &[u8]) {
    let tight = Limits {
        max_head_bytes: 300,
        max_target_bytes: 40,
        max_headers: 4,
        max_body_bytes: 10,
        ..Limits::default()
    };
    for limits in [Limits::default(), tight] {
        let mut headers = Vec::new();
        if let Ok(Some(head)) = parse(data, &limits, &mut headers) {
            assert!(head.len <= data.len());
            let (method, target, framing, keep_alive, n) = (
                head.method,
                head.target,
                head.framing,
                head.keep_alive,
                headers.len(),
            );
            let mut again = Vec::new();
            let head = parse(&data[..head.len], &limits, &mut again)
                .expect("a head that parsed parses again")
                .expect("complete");
            assert_eq!(
                (head.method, head.target, head.framing),
                (method, target, framing)
            );
            assert_eq!((head.keep_alive, again.len()), (keep_alive, n));
            if let Framing::Length(len) = framing {
                assert!(len > 0, "an empty body is Framing::Empty");
            }
        }
    }
}

/// Decodes `data[1..]` as a chunked body, whole and in pieces whose sizes come from `data[0]`; the
/// results must agree. (Content-Length bodies need no decoding; `worker/framing.rs` slices them.)
pub fn bodies(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len().max(1));
    let split = decode(input, usize::from(seed % 17) + 1);
    assert_eq!(whole, split, "splitting changed the outcome");
}

/// `Ok((body, consumed))`, `Err(status)`, or `Ok` with `None` when the input ends early.
fn decode(input: &[u8], step: usize) -> Result<Option<(Vec<u8>, usize)>, u16> {
    const MAX: usize = 1 << 20;
    let mut buf = Vec::new();
    let mut chunked = Chunked::default();
    let mut fed = 0;
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        let raw = chunked
            .decode(&mut buf, chunked.decoded(), MAX)
            .map_err(|r| r.status)?;
        if chunked.is_done() {
            // `raw` counts bytes of the compacted buffer: map it back to the input.
            let consumed = fed - (buf.len() - raw);
            buf.truncate(chunked.decoded());
            return Ok(Some((buf, consumed)));
        }
        buf.drain(chunked.decoded()..raw);
    }
    Ok(None)
}

/// Checks `data` as a raw response from a plugin (status from the first two bytes, close from the
/// third, header lines the rest) as the host does; a response that passes is encoded as the host
/// sends it and parsed back by a lenient client parser (httparse, which takes a bare LF as a line
/// end): it must come back as exactly the fields checked, and its body where its framing says.
pub fn responses(data: &[u8]) {
    let [s0, s1, flags, head @ ..] = data else {
        return;
    };
    let (status, close) = (u16::from_be_bytes([*s0, *s1]), flags & 1 == 1);
    const BODY: &[u8] = b"body";
    let Ok(view) = ResponseView::check(status, head, BODY, close) else {
        return;
    };
    let persist = if close {
        Persist::Close
    } else {
        Persist::KeepAlive11
    };
    let mut wire = Vec::new();
    encode(
        &mut wire,
        view,
        false,
        persist,
        b"Tue, 01 Dec 2026 00:00:00 GMT",
    );
    // What was checked: the plugin's lines, each split at its first colon, OWS trimmed.
    let checked: Vec<(&[u8], &[u8])> = head
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = line.strip_suffix(b"\r").expect("checked lines end in CRLF");
            let colon = line.iter().position(|&b| b == b':').expect("a colon");
            (&line[..colon], ows(&line[colon + 1..]))
        })
        .collect();
    // Room for every line: a header beyond the ones checked would be an injection, not a limit.
    let mut headers = vec![httparse::EMPTY_HEADER; checked.len() + 4];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = parsed.parse(&wire) else {
        panic!(
            "the host's own encoding does not parse: {:?}",
            String::from_utf8_lossy(&wire)
        );
    };
    assert_eq!(parsed.code, Some(status));
    let mut got: Vec<(&[u8], &[u8])> = parsed
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), ows(h.value)))
        .collect();
    let mut own = vec![(&b"date"[..], &b"Tue, 01 Dec 2026 00:00:00 GMT"[..])];
    if !bodyless(status) {
        own.push((b"content-length", b"4"));
    }
    if close {
        own.push((b"connection", b"close"));
    }
    assert!(got.len() >= own.len(), "{got:?}");
    let plugin = got.split_off(own.len());
    assert_eq!(got, own, "the host's own headers");
    assert_eq!(plugin, checked, "the plugin's headers, as checked");
    let body: &[u8] = if bodyless(status) { b"" } else { BODY };
    assert_eq!(&wire[len..], body, "the body is where the framing says");
}

/// A header value without the optional whitespace around it.
fn ows(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ' && b != b'\t');
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t');
    start.zip(end).map_or(&[], |(s, e)| &value[s..=e])
}

/// Parses `data` as a configuration file: it is refused with a line, or accepted; never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, Path::new("fuzz.toml")) {
        assert!(!e.message.is_empty());
        if let Some(line) = e.line {
            assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_injections_that_trimming_let_through_are_refused() {
        // These passed the old check, which trimmed CR, LF, VT and FF off a value before looking
        // at it; sent, they split the response for a client that takes a bare LF as a line end.
        for head in [
            &b"x: \nInjected: yes\r\n"[..],
            b"x: a\n\r\n",
            b"x:\x0b1\r\n",
        ] {
            let mut data = vec![0, 200, 0];
            data.extend_from_slice(head);
            responses(&data);
            assert!(ResponseView::check(200, head, b"", false).is_err());
        }
    }

    #[test]
    fn the_seed_corpus_holds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (target, run) in [
            ("parse_head", parse_head as fn(&[u8])),
            ("bodies", bodies),
            ("config", config),
            ("responses", responses),
        ] {
            let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
                continue;
            };
            for entry in entries.flatten() {
                run(&std::fs::read(entry.path()).unwrap());
            }
        }
    }
}
