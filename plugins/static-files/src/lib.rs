//! Serves the files of one folder, mounted at `/static_files` (or wherever `[[routes]]` puts it):
//!
//! ```toml
//! [plugins.static_files]
//! root = "/srv/www"        # required
//! index = "index.html"     # served for a folder (default index.html); no listings
//! ```
//!
//! - Every file is sent by the host straight from the file to the socket (`sendfile(2)`), ranges
//!   too: memory does not grow with the file's size.
//! - `Content-Type` by extension; `ETag` and `Last-Modified`, with `304` for `If-None-Match` and
//!   `If-Modified-Since` (RFC 9110 §13); `HEAD`; one byte range (`Range: bytes=…`, `206`, `416`;
//!   several ranges get the whole file, as RFC 9110 §14.2 allows).
//! - Nothing outside the root is ever served: a `..` segment (also percent-encoded), a backslash or
//!   a NUL is refused with `400`, and a path that resolves through a symlink to outside the root is
//!   refused with `403`.
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

use plugin_api::{InitError, Plugin, Request, Response, ResponseBuilder};

/// `[plugins.static_files]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The folder to serve.
    pub root: PathBuf,
    /// The file served for a folder.
    #[serde(default = "default_index")]
    pub index: String,
}

fn default_index() -> String {
    "index.html".into()
}

/// The plugin.
pub struct StaticFiles {
    /// The root, canonical: every file served must be under it once resolved.
    root: PathBuf,
    index: String,
}

impl Plugin for StaticFiles {
    type Config = Settings;

    fn new(settings: Settings) -> Result<Self, InitError> {
        let root = settings
            .root
            .canonicalize()
            .map_err(|e| format!("root {}: {e}", settings.root.display()))?;
        if !root.is_dir() {
            return Err(format!("root {} is not a folder", root.display()).into());
        }
        if settings.index.contains(['/', '\\']) || settings.index.starts_with('.') {
            return Err("index must be a plain file name".into());
        }
        Ok(StaticFiles {
            root,
            index: settings.index,
        })
    }

    fn handle(&self, request: &Request) -> Response {
        match self.serve(request) {
            Ok(response) | Err(response) => response,
        }
    }
}

plugin_api::export_plugin!(StaticFiles);

impl StaticFiles {
    fn serve(&self, request: &Request) -> Result<Response, Response> {
        if !matches!(request.method(), "GET" | "HEAD") {
            return Err(ResponseBuilder::new(405)
                .header("allow", "GET, HEAD")
                .build()
                .map_err(|_| status(500))?);
        }
        let sub = request.subpath();
        let decoded = plugin_api::percent_decode(sub, false).ok_or_else(|| status(400))?;
        if decoded.contains(['\\', '\0']) || decoded.split('/').any(|seg| seg == "..") {
            return Err(status(400));
        }
        let mut path = self.root.clone();
        path.extend(
            decoded
                .split('/')
                .filter(|seg| !seg.is_empty() && *seg != "."),
        );
        let mut real = path.canonicalize().map_err(|_| status(404))?;
        if !real.starts_with(&self.root) {
            return Err(status(403));
        }
        if real.is_dir() {
            if !sub.ends_with('/') {
                let location = format!("{}{}/", request.mount(), sub.trim_end_matches('/'));
                return Err(ResponseBuilder::new(301)
                    .header("location", location)
                    .build()
                    .map_err(|_| status(400))?);
            }
            real = real
                .join(&self.index)
                .canonicalize()
                .map_err(|_| status(404))?;
            if !real.starts_with(&self.root) {
                return Err(status(403));
            }
        }
        self.send(request, &real)
    }

    fn send(&self, request: &Request, path: &Path) -> Result<Response, Response> {
        // Opened first, so that the length and validators describe the file that is sent.
        let file = fs::File::open(path).map_err(|_| status(404))?;
        let meta = file.metadata().map_err(|_| status(404))?;
        if !meta.is_file() {
            return Err(status(404));
        }
        let len = meta.len();
        let modified = meta.modified().ok().map(plugin_api::unix_seconds);
        let etag = format!("\"{:x}-{len:x}\"", modified.unwrap_or(0));
        let last_modified =
            modified.map(|s| String::from_utf8_lossy(&plugin_api::http_date(s)).into_owned());
        let validators = |builder: ResponseBuilder| {
            let builder = builder
                .header("etag", &etag)
                .header("accept-ranges", "bytes");
            match &last_modified {
                Some(lm) => builder.header("last-modified", lm),
                None => builder,
            }
        };
        if not_modified(request, &etag, modified) {
            return validators(ResponseBuilder::new(304))
                .build()
                .map_err(|_| status(500));
        }
        let range = match request.header("range") {
            Some(r) if request.header("if-range").is_none_or(|v| v == etag) => parse_range(r, len),
            _ => Range::Whole,
        };
        let (code, start, end) = match range {
            Range::Whole => (200, 0, len),
            Range::Part(a, b) => (206, a, b + 1),
            Range::Unsatisfiable => {
                return ResponseBuilder::new(416)
                    .header("content-range", format!("bytes */{len}"))
                    .build()
                    .map_err(|_| status(500));
            }
        };
        let mut builder = validators(ResponseBuilder::new(code)).content_type(content_type(path));
        if code == 206 {
            builder = builder.header("content-range", format!("bytes {start}-{}/{len}", end - 1));
        }
        // The host sends the bytes straight from the file (sendfile), never through a buffer.
        builder
            .file_range(file, start, end - start)
            .build()
            .map_err(|_| status(500))
    }
}

/// RFC 9110 §13.1.2 and §13.1.3: `If-None-Match` wins over `If-Modified-Since`.
fn not_modified(request: &Request, etag: &str, modified: Option<u64>) -> bool {
    if let Some(inm) = request.header("if-none-match") {
        let weakless = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return inm.trim() == "*" || inm.split(',').any(|t| weakless(t) == etag);
    }
    match (
        request
            .header("if-modified-since")
            .and_then(plugin_api::parse_http_date),
        modified,
    ) {
        (Some(since), Some(m)) => m <= plugin_api::unix_seconds(since),
        _ => false,
    }
}

enum Range {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One range of `bytes=` (RFC 9110 §14.1.2); anything else is served whole.
fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim(), last.trim()) {
        ("", "") => Range::Whole,
        ("", suffix) => match number(suffix) {
            Some(0) => Range::Unsatisfiable,
            Some(n) if len > 0 => Range::Part(len.saturating_sub(n), len - 1),
            Some(_) => Range::Unsatisfiable,
            None => Range::Whole,
        },
        (a, b) => match (
            number(a),
            if b.is_empty() {
                Some(u64::MAX)
            } else {
                number(b)
            },
        ) {
            (Some(a), _) if a >= len => Range::Unsatisfiable,
            (Some(a), Some(b)) if a <= b => Range::Part(a, b.min(len - 1)),
            _ => Range::Whole,
        },
    }
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

fn status(code: u16) -> Response {
    let text = match code {
        400 => "bad path\n",
        403 => "forbidden\n",
        404 => "not found\n",
        _ => "error\n",
    };
    ResponseBuilder::new(code)
        .content_type("text/plain; charset=utf-8")
        .body(text)
        .build()
        .unwrap_or_else(|_| {
            ResponseBuilder::new(500)
                .build()
                .expect("a bare 500 is valid")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Option<(u64, u64)> {
        match parse_range(v, len) {
            Range::Part(a, b) => Some((a, b)),
            Range::Whole => None,
            Range::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        }
    }

    #[test]
    fn parses_single_ranges() {
        assert_eq!(range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(range("bytes=10-", 10), Some((u64::MAX, u64::MAX)));
        assert_eq!(range("bytes=4-2", 10), None);
        assert_eq!(range("bytes=0-1,3-4", 10), None);
        assert_eq!(range("items=0-1", 10), None);
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/b.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }
}
