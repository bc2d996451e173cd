//! Small helpers plugin authors reach for: query strings, percent-decoding, cookies, and JSON
//! bodies (with the `json` feature).
//!
//! ```
//! use plugin_api::{Header, Request, RequestParts};
//!
//! let headers = [Header::new("Cookie", b"theme=dark; session=abc")];
//! let request = Request::new(RequestParts {
//!     target: "/files/a%20b.txt?name=J%C3%BCrgen&tag=x+y&tag=z",
//!     headers: &headers,
//!     ..RequestParts::default()
//! });
//! assert_eq!(request.decoded_path().as_deref(), Some("/files/a b.txt"));
//! assert_eq!(request.query_param("name").as_deref(), Some("Jürgen"));
//! let tags: Vec<_> = request.query_pairs().filter(|(k, _)| k == "tag").map(|(_, v)| v).collect();
//! assert_eq!(tags, ["x y", "z"]);
//! assert_eq!(request.cookie("session"), Some("abc"));
//! ```

use std::borrow::Cow;

use crate::Request;

impl<'a> Request<'a> {
    /// The path with percent-escapes decoded (`/a%20b` → `/a b`); `None` if the result is not
    /// UTF-8. `+` stays `+` in a path.
    ///
    /// ```
    /// # use plugin_api::{Request, RequestParts};
    /// let request = Request::new(RequestParts { target: "/a%20b+c", ..Default::default() });
    /// assert_eq!(request.decoded_path().as_deref(), Some("/a b+c"));
    /// ```
    pub fn decoded_path(&self) -> Option<Cow<'a, str>> {
        percent_decode(self.path(), false)
    }

    /// The query string's `key=value` pairs, decoded (`+` is a space), in order; a key without `=`
    /// has an empty value. Pairs that do not decode to UTF-8 are skipped.
    ///
    /// ```
    /// # use plugin_api::{Request, RequestParts};
    /// let request = Request::new(RequestParts { target: "/?a=1&b&c=x+y", ..Default::default() });
    /// let pairs: Vec<(String, String)> =
    ///     request.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    /// assert_eq!(pairs, [("a".into(), "1".into()), ("b".into(), "".into()), ("c".into(), "x y".into())]);
    /// ```
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + 'a {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                Some((percent_decode(k, true)?, percent_decode(v, true)?))
            })
    }

    /// The first value of query parameter `name`, decoded.
    ///
    /// ```
    /// # use plugin_api::{Request, RequestParts};
    /// let request = Request::new(RequestParts { target: "/search?q=caf%C3%A9", ..Default::default() });
    /// assert_eq!(request.query_param("q").as_deref(), Some("café"));
    /// assert_eq!(request.query_param("page"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The cookies of every `Cookie` header, as `(name, value)` (RFC 6265 §4.2), undecoded.
    pub fn cookies(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.header_all("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| {
                let (name, value) = c.trim().split_once('=')?;
                Some((name.trim(), value.trim().trim_matches('"')))
            })
    }

    /// The value of cookie `name`.
    ///
    /// ```
    /// # use plugin_api::{Header, Request, RequestParts};
    /// let headers = [Header::new("Cookie", b"a=1; session=\"xyz\"")];
    /// let request = Request::new(RequestParts { headers: &headers, ..Default::default() });
    /// assert_eq!(request.cookie("session"), Some("xyz"));
    /// assert_eq!(request.cookies().count(), 2);
    /// ```
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.cookies().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The body parsed as JSON (with the `json` feature).
    ///
    /// ```
    /// # use plugin_api::{Request, RequestParts};
    /// #[derive(serde::Deserialize)]
    /// struct Order { item: String, count: u32 }
    ///
    /// let request = Request::new(RequestParts {
    ///     body: br#"{"item": "tea", "count": 2}"#,
    ///     ..Default::default()
    /// });
    /// let order: Order = request.json().unwrap();
    /// assert_eq!((order.item.as_str(), order.count), ("tea", 2));
    /// ```
    ///
    /// # Errors
    /// The body is not JSON of type `T`; the error says where.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.body())
    }
}

#[cfg(feature = "json")]
impl crate::ResponseBuilder {
    /// Sets a JSON body and `Content-Type: application/json` (with the `json` feature).
    ///
    /// ```
    /// let response = plugin_api::ResponseBuilder::empty_200()
    ///     .json(&serde_json::json!({"ok": true}))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(response.body(), br#"{"ok":true}"#);
    /// assert_eq!(response.header("content-type"), Some(&b"application/json"[..]));
    /// ```
    pub fn json(self, value: &impl serde::Serialize) -> crate::ResponseBuilder {
        match serde_json::to_vec(value) {
            Ok(body) => self.content_type("application/json").body(body),
            // Serialising plain data does not fail; a failing `Serialize` impl gets a 500.
            Err(_) => self.status(500).body("cannot serialise the response\n"),
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set); `None` if the bytes are not
/// UTF-8. A `%` not followed by two hex digits is kept as it is.
pub fn percent_decode(s: &str, plus: bool) -> Option<Cow<'_, str>> {
    if !(s.contains('%') || plus && s.contains('+')) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_stray_percents() {
        assert_eq!(percent_decode("a%20b", false).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("100%", false).as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4", false).as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%2e%2E", false).as_deref(), Some(".."));
        assert_eq!(percent_decode("%ff", false), None);
        assert!(matches!(
            percent_decode("plain", true),
            Some(Cow::Borrowed(_))
        ));
    }
}
