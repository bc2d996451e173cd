//! [`Handler`]: what every request goes to. A closure `Fn(&Request) -> Response` is one, and so is
//! the host's plugin router (`plugin/registry.rs`).

use plugin_api::{Request, Response, ResponseView};

use crate::bulkhead::Call;

/// Answers requests. Closures `Fn(&Request) -> Response` are handlers, and so is the host's plugin
/// router: one shape for both.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Called from many worker threads at once. A panic becomes a `500`.
    fn handle(&self, request: &Request<'_>) -> Response;

    /// Answers one request by calling `respond` once with a borrowed response; the server encodes
    /// it straight into its output buffer. The default calls [`handle`](Self::handle); the plugin
    /// router overrides it so that a plugin's response is never copied into an owned one.
    fn handle_into(&self, request: &Request<'_>, respond: &mut dyn FnMut(ResponseView<'_>)) {
        respond(self.handle(request).view());
    }

    /// What the server calls: answers through `call`, and may first put the request in a
    /// bulkhead with [`Call::enter`] (the plugin router puts each plugin's requests in its own).
    /// The default enters none and calls [`handle_into`](Self::handle_into).
    fn serve(&self, request: &Request<'_>, call: &mut Call<'_>) {
        self.handle_into(request, &mut |view| call.respond(view));
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
