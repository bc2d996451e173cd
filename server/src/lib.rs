//! mini-async-http: a small, fast HTTP/1.1 server whose handlers can live in plugins.
//!
//! # A tour
//! - [`AIOServer`] (`server.rs`) is the embeddable server of the seed README: give it a handler
//!   closure and call `start`. [`ServerHandle`] waits for it and shuts it down.
//! - `event_loop.rs` is its one mio event loop: accept, readiness, timers, the control channel
//!   (`control.rs`, a `UnixDatagram` pair), connection tokens (`tokens.rs`). It computes nothing.
//! - `pool.rs` queues ready connections for the worker threads; `worker/` is a worker: a turn on
//!   a connection (`mod.rs`), finding its requests (`framing.rs`, over `http/parse.rs` and
//!   `http/body.rs`), calling the handler (`dispatch.rs`, [`Handler`] in `handler.rs`), encoding
//!   its answer (`reply.rs`: bytes, a file sent with `sendfile`, or a stream), reading a body as
//!   it arrives (`upload.rs`), and its socket I/O (`io.rs`); `http/encode.rs` writes the heads.
//!   `reply.rs` (top level) is how an answer leaves a [`Call`], and the C sink plugins answer
//!   through.
//! - `conn/` is one connection: the states it is in (`Reading` and `Writing`) and the
//!   atomic state that says which thread owns it (`slot.rs`). `shared.rs` is what the loop, the
//!   workers and the watchdog share.
//! - `watchdog.rs` answers `504` for handlers past their deadline and `workers.rs` replaces their
//!   threads (`running.rs` is what each worker runs now); [`Bulkheads`] (`bulkhead/`) bound how
//!   many workers one kind of request (the host: one plugin) holds, through [`Call::enter`].
//! - [`Limits`] (`limits.rs`) bounds what a client can make the server hold.
//! - [`Request`], [`Response`] and [`ResponseBuilder`] come from `plugin-api`, so an in-process
//!   handler and a plugin's handler are written the same way.
//!
//! The host binary adds the plugins on top: `host.rs` is one server process (configuration,
//! [`plugin::Registry`], the server, hot reload); `supervisor/` is the parent process that binds
//! the socket, runs and restarts server processes, quarantines crashing plugins and serves
//! `admin/`; `crash/` records what each thread runs, for the supervisor to name the culprit.
//!
//! # Portability
//! Unix only: the control channel is a `UnixDatagram` pair, as in the seed.

#![warn(missing_docs)]

mod bulkhead;
mod clock;
mod conn;
mod control;
mod event_loop;
mod handler;
mod http;
mod limits;
mod pool;
mod reply;
mod running;
mod server;
mod shared;
mod tokens;
mod watchdog;
mod worker;
mod workers;

pub use bulkhead::{
    BORROW_MS, Bulkhead, BulkheadPolicy, BulkheadStats, Bulkheads, Call, PROVEN, Permit,
};
pub use control::ControlMsg;
pub use handler::Handler;
pub use limits::{BodyLimits, Limits};
pub use plugin_api::{Header, Request, RequestParts, Response, ResponseBuilder, Version};
pub use server::{AIOServer, ServerHandle, ServerStats};

/// The server, under the seed's module name: `mini_async_http::aioserver::AIOServer`.
pub mod aioserver {
    pub use crate::handler::Handler;
    pub use crate::server::{AIOServer, ServerHandle};
}

/// Responses, under the seed's module name: `mini_async_http::response::ResponseBuilder`.
pub mod response {
    pub use plugin_api::{Error, Response, ResponseBuilder};
}

/// Requests: `mini_async_http::request::Request`.
pub mod request {
    pub use plugin_api::{Header, Request, RequestParts, Version};
}

pub mod admin;
pub mod config;
pub mod crash;
pub mod dev;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod plugin;
pub mod scaffold;
pub mod supervisor;
