//! Request bodies in `chunked` transfer coding (RFC 9112 §7.1), decoded in place.
//!
//! The decoder reads the raw bytes after the head and moves each chunk's data down over the framing
//! that preceded it, so the decoded body ends up contiguous right after the head, in the same
//! buffer, with no second allocation. It keeps its state between reads, so a body that arrives in
//! any number of pieces (down to one byte at a time) decodes the same. Content-Length bodies need no
//! decoding: `worker/framing.rs` waits until enough bytes are buffered, or `worker/upload.rs` reads
//! them as the handler asks.

use crate::http::lines::{Ext, Field};
use crate::http::parse::Reject;

/// Longest chunk-size line (size and extensions) and longest trailer field line accepted.
const MAX_LINE: usize = 4096;
/// Most bytes of trailer section accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// Progress through one chunked body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunked {
    state: State,
    /// Data bytes left in the current chunk.
    remaining: u64,
    /// Decoded body bytes so far in the current buffer (see [`Chunked::restart`]).
    decoded: usize,
    /// Decoded body bytes handed on before the last [`Chunked::restart`].
    before: u64,
    /// Bytes of the current size or trailer line, to bound it.
    line: usize,
    /// Bytes of trailer section so far.
    trailers: usize,
    /// Where the message ended in the raw bytes, once done.
    consumed: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// Whitespace after the size: an extension must follow (RFC 9112 §7.1, `BWS ";"`).
    SizeSpace,
    /// In the chunk extensions, checked and skipped (RFC 9112 §7.1.1).
    Extension(Ext),
    /// The LF after a size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer field line, or the empty line that ends the body.
    Trailer(Field),
    /// The LF after a trailer line.
    TrailerLf,
    /// The body is complete.
    Done,
}

impl Chunked {
    /// Decodes what `body` holds beyond the bytes already consumed.
    ///
    /// `body` starts right after the head. Its first [`decoded`](Self::decoded) bytes are decoded
    /// data; raw bytes start at `raw`. Returns the new `raw`: everything before it has been
    /// consumed. When [`is_done`](Self::is_done), the message ends at the returned offset and the
    /// body is `body[..decoded]`.
    ///
    /// # Errors
    /// 400 for malformed framing or a chunk size that overflows, 413 past `max_body`.
    pub fn decode(
        &mut self,
        body: &mut [u8],
        mut raw: usize,
        max_body: usize,
    ) -> Result<usize, Reject> {
        while raw < body.len() && self.state != State::Done {
            if self.state == State::Data {
                let n = (body.len() - raw).min(self.remaining as usize);
                body.copy_within(raw..raw + n, self.decoded);
                self.decoded += n;
                self.remaining -= n as u64;
                raw += n;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = body[raw];
            raw += 1;
            self.step(b, max_body)?;
        }
        Ok(raw)
    }

    /// Decoded body bytes so far.
    pub fn decoded(&self) -> usize {
        self.decoded
    }

    /// The decoded bytes were taken out of the buffer: decoding goes on from its start. (For a
    /// body read as it arrives, through a buffer smaller than the body; the limit still counts
    /// the whole body.)
    pub fn restart(&mut self) {
        self.before += self.decoded as u64;
        self.decoded = 0;
    }

    /// Records where the complete message ended (the offset `decode` returned).
    pub fn set_consumed(&mut self, raw: usize) {
        self.consumed = raw;
    }

    /// Raw bytes of the complete message after the head: where the next request starts.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Whether the whole body, trailers included, has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8, max_body: usize) -> Result<(), Reject> {
        const BAD: Reject = Reject::new(400, "malformed chunked body");
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(Reject::new(400, "chunk line too long"));
        }
        self.state = match (self.state, b) {
            (State::Size, _) if b.is_ascii_hexdigit() => {
                let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|n| n.checked_add(digit))
                    .ok_or(Reject::new(400, "chunk size overflows"))?;
                State::Size
            }
            (State::Size, _) if self.line == 1 => return Err(BAD),
            (State::Size | State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::Size | State::SizeSpace, b';') => State::Extension(Ext::BeforeName),
            (State::Size, b'\r') => State::SizeLf,
            (State::Extension(ext), _) => match ext.step(b) {
                Some(Some(ext)) => State::Extension(ext),
                Some(None) => State::SizeLf,
                None => return Err(BAD),
            },
            (State::SizeLf, b'\n') => {
                self.line = 0;
                let total = self.before + self.decoded as u64;
                if self.remaining > (max_body as u64).saturating_sub(total) {
                    return Err(Reject::new(413, "request body too large"));
                }
                if self.remaining == 0 {
                    State::Trailer(Field::Start)
                } else {
                    State::Data
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.line = 0;
                State::Size
            }
            (State::Trailer(field), _) => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(Reject::new(431, "trailer section too large"));
                }
                match field.step(b) {
                    Some(Some(field)) => State::Trailer(field),
                    Some(None) => State::TrailerLf,
                    None => return Err(Reject::new(400, "malformed trailer field")),
                }
            }
            (State::TrailerLf, b'\n') => {
                let empty = self.line == 2;
                self.line = 0;
                if empty {
                    State::Done
                } else {
                    State::Trailer(Field::Start)
                }
            }
            _ => return Err(BAD),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes, compacting between pieces the way the worker
    /// does. Returns the body and the bytes after the message.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
        max: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), Reject> {
        let mut buf = Vec::new();
        let mut dec = Chunked::default();
        let mut raw = 0;
        let mut fed = 0;
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            raw = dec.decode(&mut buf, raw, max)?;
            if dec.is_done() {
                break;
            }
            // Keep only decoded data and the unconsumed tail, as the worker does.
            buf.drain(dec.decoded()..raw);
            raw = dec.decoded();
        }
        assert!(dec.is_done(), "incomplete after all input");
        let mut rest = buf[raw..].to_vec();
        rest.extend_from_slice(&input[fed..]);
        buf.truncate(dec.decoded());
        Ok((buf, rest))
    }

    const MESSAGE: &[u8] = b"5\r\nHello\r\n7;ext=1;q=\"a b\"\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_in_every_split() {
        for step in 1..=MESSAGE.len() {
            let (body, rest) = decode_in_steps(MESSAGE, step, 1000).unwrap();
            assert_eq!(body, b"Hello, world", "step {step}");
            assert_eq!(rest, b"NEXT", "step {step}");
        }
    }

    #[test]
    fn accepts_hex_sizes_and_leading_zeros() {
        let input = b"000a\r\n0123456789\r\nA\r\nabcdefghij\r\n00\r\n\r\n";
        let (body, rest) = decode_in_steps(input, 3, 1000).unwrap();
        assert_eq!(body, b"0123456789abcdefghij");
        assert!(rest.is_empty());
    }

    #[test]
    fn refuses_bad_framing() {
        let bad: &[&[u8]] = &[
            b"x\r\n",
            b"\r\n",
            b";ext\r\n",
            b"5\nHello\r\n0\r\n\r\n",
            b"5\r\nHello0\r\n\r\n",
            b"5\r\nHelloXY0\r\n\r\n",
            b"5 5\r\nHello\r\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"5;a\nb\r\nHello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            // RFC 9112 §7.1: whitespace only as BWS before an extension.
            b"5 \r\nHello\r\n0\r\n\r\n",
            b"5\t\r\nHello\r\n0\r\n\r\n",
            b"5;a \r\nHello\r\n0\r\n\r\n",
            b"5;a=b \r\nHello\r\n0\r\n\r\n",
            b"5;a=\"b\" \r\nHello\r\n0\r\n\r\n",
            // §7.1.1: names and values are tokens (values may be quoted strings).
            b"5;\r\nHello\r\n0\r\n\r\n",
            b"5;=b\r\nHello\r\n0\r\n\r\n",
            b"5;a b\r\nHello\r\n0\r\n\r\n",
            b"5;a=\r\nHello\r\n0\r\n\r\n",
            b"5;a=b c\r\nHello\r\n0\r\n\r\n",
            b"5;a=\"b\r\nHello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nHello\r\n0\r\n\r\n",
            b"5;a\x7f\r\nHello\r\n0\r\n\r\n",
            b"5;a=\"\x01\"\r\nHello\r\n0\r\n\r\n",
            // §7.1.2 with §5: trailer lines are field lines.
            b"0\r\nX : 1\r\n\r\n",
            b"0\r\nX: 1\r\n folded\r\n\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
        ];
        for input in bad {
            let err = decode_in_steps(input, input.len(), usize::MAX).unwrap_err();
            assert_eq!(err.status, 400, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn accepts_extensions_as_the_grammar_has_them() {
        for line in [
            &b"5;a"[..],
            b"5 ;a",
            b"5\t; a=b",
            b"5;a = b;c",
            b"5;a=\"b c\\\" d\";e=f",
            b"5;a=\"\";b",
            b"5;a=\"b\" ;c",
            b"5;a ;b",
        ] {
            let mut input = line.to_vec();
            input.extend_from_slice(b"\r\nHello\r\n0\r\n\r\n");
            let (body, _) = decode_in_steps(&input, 1, 100)
                .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(line)));
            assert_eq!(body, b"Hello");
        }
    }

    #[test]
    fn accepts_trailer_fields() {
        let input = b"1\r\na\r\n0\r\nX-Sum: 12 \t\r\nY:\r\nZ: caf\xc3\xa9\r\n\r\n";
        let (body, rest) = decode_in_steps(input, 1, 100).unwrap();
        assert_eq!((body.as_slice(), rest.as_slice()), (&b"a"[..], &b""[..]));
    }

    #[test]
    fn enforces_the_body_limit() {
        assert_eq!(decode_in_steps(b"b\r\n", 1, 10).unwrap_err().status, 413);
        let two = b"6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n";
        assert_eq!(decode_in_steps(two, 4, 10).unwrap_err().status, 413);
        assert!(decode_in_steps(two, 4, 12).is_ok());
    }
}
