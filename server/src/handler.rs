//! [`Handler`]: what every request goes to. A closure `Fn(&Request) -> Response` is one, and so is
//! the host's plugin router (`plugin/registry.rs`).

use plugin_api::{Request, Response};

use crate::bulkhead::Call;
use crate::limits::BodyLimits;

/// Answers requests. Closures `Fn(&Request) -> Response` are handlers, and so is the host's plugin
/// router: one shape for both.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Called from many worker threads at once. A panic becomes a `500`.
    fn handle(&self, request: &Request<'_>) -> Response;

    /// What the server calls: answers through `call`, and may first put the request in a
    /// bulkhead with [`Call::enter`] (the plugin router puts each plugin's requests in its own).
    /// The default enters none and sends what [`handle`](Self::handle) returns, whatever its
    /// body (bytes, a file, a stream).
    fn serve(&self, request: &Request<'_>, call: &mut Call<'_>) {
        call.send(self.handle(request));
    }

    /// The body limits for a request to `path`, asked before its body is read: how large it may
    /// be, and up to what size it is read whole before the call. The default is the server's
    /// ([`Limits::body`](crate::Limits::body)); the plugin router answers with the plugin's own.
    fn body_limits(&self, path: &str, default: BodyLimits) -> BodyLimits {
        let _ = path;
        default
    }

    /// Whether responses to requests for `path` may be compressed (`[compression]`), asked only
    /// of a response that could be. The default is yes; the plugin router answers with the
    /// plugin's `[limits.plugins.NAME] compress`.
    fn compress(&self, path: &str) -> bool {
        let _ = path;
        true
    }
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: &Request<'_>) -> Response {
        self(request)
    }
}
