//! Entry points for the fuzz targets in `fuzz/` and for the property tests: thin wrappers that run
//! the parsers on arbitrary input and assert their invariants. Not part of the API.

use std::path::Path;

use crate::Limits;
use crate::config::Config;
use crate::http::body::Chunked;
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
    fn the_seed_corpus_holds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (target, run) in [
            ("parse_head", parse_head as fn(&[u8])),
            ("bodies", bodies),
            ("config", config),
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
