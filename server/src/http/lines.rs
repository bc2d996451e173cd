//! The grammar of the lines inside a chunked body other than its sizes (RFC 9112 §7.1.1,
//! §7.1.2): chunk extensions, and trailer field lines, one byte at a time for `body.rs`'s decoder.

use plugin_api::__private::is_tchar;

/// Where a chunk line is in its extensions: `*( BWS ";" BWS name [ BWS "=" BWS value ] )`, a
/// name a token, a value a token or a quoted string (RFC 9112 §7.1.1, RFC 9110 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ext {
    /// After `;`: whitespace, then a name.
    BeforeName,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    AfterName,
    /// After `=`: whitespace, then a value.
    BeforeValue,
    Token,
    Quoted,
    /// After a backslash in a quoted string.
    Escaped,
    /// After a value: whitespace, then `;` or the line's end (no whitespace before it).
    AfterValue,
    /// Whitespace after a value: `;` must follow.
    Spaced,
}

impl Ext {
    /// The state after byte `b`: `Some(None)` when the line ends (`b` is its CR), `None` when `b`
    /// breaks the grammar.
    pub(crate) fn step(self, b: u8) -> Option<Option<Ext>> {
        let tchar = is_tchar(b);
        let ws = b == b' ' || b == b'\t';
        let next = match (self, b) {
            (Ext::BeforeName, _) if ws => Ext::BeforeName,
            (Ext::BeforeName | Ext::Name, _) if tchar => Ext::Name,
            (Ext::Name | Ext::Token | Ext::AfterValue, b'\r') => return Some(None),
            (Ext::Name | Ext::AfterName, _) if ws => Ext::AfterName,
            (Ext::Name | Ext::AfterName, b'=') => Ext::BeforeValue,
            (Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterValue | Ext::Spaced, b';') => {
                Ext::BeforeName
            }
            (Ext::BeforeValue, _) if ws => Ext::BeforeValue,
            (Ext::BeforeValue, b'"') => Ext::Quoted,
            (Ext::BeforeValue | Ext::Token, _) if tchar => Ext::Token,
            (Ext::Token | Ext::AfterValue | Ext::Spaced, _) if ws => Ext::Spaced,
            (Ext::Quoted, b'"') => Ext::AfterValue,
            (Ext::Quoted, b'\\') => Ext::Escaped,
            // qdtext, and what a backslash may quote: HTAB, SP, visible bytes, obs-text.
            (Ext::Quoted | Ext::Escaped, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                Ext::Quoted
            }
            _ => return None,
        };
        Some(Some(next))
    }
}

/// Where a trailer line is: `field-name ":" OWS field-value OWS`, the name a token right at the
/// line's start (no obs-fold, no whitespace before the colon: RFC 9112 §5.1, §5.2), the value
/// visible bytes, obs-text, spaces and tabs (RFC 9110 §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// A line's first byte: a name, or the CR of the empty line that ends the trailers.
    Start,
    Name,
    Value,
}

impl Field {
    /// The state after byte `b`: `Some(None)` when the line ends (`b` is its CR), `None` when `b`
    /// breaks the grammar.
    pub(crate) fn step(self, b: u8) -> Option<Option<Field>> {
        let next = match (self, b) {
            (Field::Start | Field::Value, b'\r') => return Some(None),
            (Field::Start | Field::Name, _) if is_tchar(b) => Field::Name,
            (Field::Name, b':') => Field::Value,
            (Field::Value, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => Field::Value,
            _ => return None,
        };
        Some(Some(next))
    }
}
