//! The contract between the mini-async-http host and its plugins.
//!
//! A plugin is a Rust crate built as a `cdylib` (`libNAME.so`). The host copies it out of its
//! plugins folder, loads it, and sends it every request under `/NAME`. This crate is all a plugin
//! depends on: the [`Request`] it reads, the [`Response`] it returns, the [`Plugin`] trait it
//! implements and the [`export_plugin!`] macro that makes it loadable. The embeddable server
//! (`mini_async_http`) re-exports the same types, so a handler moves between the two unchanged.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//! ```toml
//! [package]
//! name = "greeter"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! plugin-api = { path = "../plugin-api" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//! ```
//! #![forbid(unsafe_code)]
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! use plugin_api::{InitError, Plugin, Request, Response, ResponseBuilder};
//!
//! /// `[plugins.greeter]` in config.toml.
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Settings {
//!     #[serde(default = "default_greeting")]
//!     greeting: String,
//! }
//!
//! fn default_greeting() -> String {
//!     "Hello".into()
//! }
//!
//! pub struct Greeter {
//!     greeting: String,
//!     served: AtomicU64,
//! }
//!
//! impl Plugin for Greeter {
//!     type Config = Settings;
//!
//!     fn new(settings: Settings) -> Result<Self, InitError> {
//!         if settings.greeting.is_empty() {
//!             return Err("greeting must not be empty".into());
//!         }
//!         plugin_api::info!("greeting with {:?}", settings.greeting);
//!         Ok(Greeter { greeting: settings.greeting, served: AtomicU64::new(0) })
//!     }
//!
//!     fn handle(&self, request: &Request) -> Response {
//!         let n = self.served.fetch_add(1, Ordering::Relaxed);
//!         let who = request.query().unwrap_or("world");
//!         ResponseBuilder::empty_200()
//!             .content_type("text/plain")
//!             .header("x-served", n.to_string())
//!             .body(format!("{}, {who}!", self.greeting))
//!             .build()
//!             .unwrap_or_else(|_| ResponseBuilder::new(500).build().unwrap())
//!     }
//! }
//!
//! plugin_api::export_plugin!(Greeter);
//!
//! // A plugin's handler is plain Rust, so it is unit-tested without a server:
//! # fn main() {
//! use plugin_api::{Plugin as _, RequestParts};
//! let greeter = Greeter::new(Settings { greeting: "Hi".into() }).unwrap();
//! let request = Request::new(RequestParts { target: "/greeter?ann", ..Default::default() });
//! assert_eq!(greeter.handle(&request).body(), b"Hi, ann!");
//! # }
//! ```
//!
//! Build it with `cargo build --release`, copy `target/release/libgreeter.so` into the host's
//! plugins folder, and `curl localhost:7878/greeter?ann` answers `Hello, ann!`. Settings come from
//! `config.toml`:
//! ```toml
//! [plugins.greeter]
//! greeting = "Hi"
//! ```
//! A plugin without settings or state can export a plain function instead: see
//! [`export_handler!`].
//!
//! # Bodies that do not fit in memory
//! A response body need not be bytes: [`ResponseBuilder::file`] (or `file_range`, `file_path`)
//! hands the host an open file, which it sends straight to the socket with `sendfile(2)` and
//! closes; [`ResponseBuilder::stream`] takes a closure that writes the body through a
//! [`BodyWriter`] while it goes out (flush what the client must see now: an event of an event
//! stream), sent `chunked`, or with `Content-Length` by [`ResponseBuilder::stream_sized`]. A write
//! fails once the client has gone; return then. See `plugins/events` and `plugins/static-files`.
//!
//! A request body larger than the host buffers (`[limits] buffer_body_bytes`, per plugin in
//! `[limits.plugins.NAME]`) is not in [`Request::body`]: read it with [`Request::body_reader`] as
//! it arrives ([`Request::body_streams`] says which), or from a stream's producer with
//! [`BodyWriter::request_body`]. The reader works for small bodies too, so a plugin that always
//! uses it handles both. See `plugins/echo`.
//!
//! # What a plugin must not do
//! - **Panic across the boundary**: it can't; the macro catches every panic and the host answers
//!   `500`.
//! - **Outlive its unloading.** When a new version is loaded, the old one is dropped once its last
//!   request has finished, and its library is closed. A plugin must not leave threads running or
//!   thread-locals holding values past [`Plugin`]'s drop: stop threads in your `Drop` impl.
//!   (Closing is best effort: glibc keeps a library mapped while thread-local destructors it
//!   registered are pending. Nothing calls into a dropped plugin either way.)
//! - **Write `unsafe`.** Nothing here needs it; plugin crates can `#![forbid(unsafe_code)]`.
//!
//! # Compatibility
//! The host checks [`abi::MAGIC`], [`abi::ABI_VERSION`] and the declaration's size before anything
//! else and refuses a plugin built against another ABI version, naming both versions. Rebuild
//! plugins against the `plugin-api` the host was built with. Within one ABI version, optional
//! hooks may be appended to the declaration (the [ABI policy](abi#the-abi-policy)), so a plugin
//! built against an earlier `plugin-api` of that version still loads.
//!
//! Build plugins with Rust's default `panic = "unwind"`: a plugin built with `panic = "abort"` is
//! refused, because its first panic would abort the server instead of becoming a `500`.

#![warn(missing_docs)]

pub mod abi;
mod body;
mod date;
mod helpers;
mod log;
mod plugin;
mod request;
mod response;
mod router;
mod settings;

pub use body::{Body, BodyReader, BodyWriter, FileBody, Producer, StreamBody};
pub use date::{clf_time, http_date, parse_http_date, unix_seconds};
pub use helpers::percent_decode;
pub use log::Level;
pub use plugin::{InitError, NoConfig, Plugin};
pub use request::{Header, Request, RequestParts, Version, split_target};
pub use response::{Error, Response, ResponseBuilder, ResponseView, has_token, reason};
pub use router::{Params, Route, Router};

/// Items the macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::body::send;
    pub use crate::log::write as log;
    pub use crate::plugin::{declaration, panic_message};
    pub use crate::response::is_tchar;
    pub use crate::settings::{describe as describe_toml_error, line_of};
}
