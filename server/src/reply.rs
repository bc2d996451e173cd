//! How an answer leaves a handler: the [`Reply`] a [`Call`] writes into (the worker's encoder in
//! `worker/reply.rs`, or [`Collected`] outside a server), and the C [`ResponseSink`] over a call
//! that plugins (and in-process handlers, through the same glue) answer through.
//!
//! A response is a status, header lines and a [`Content`]: bytes, a file the host sends with
//! `sendfile(2)`, or a stream the handler writes after the head, still inside its call.

use std::ffi::c_void;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use plugin_api::abi::{RawBytes, RawResponse, ResponseSink, Status};
use plugin_api::{Body, Response, ResponseView};

use crate::bulkhead::Call;

/// Where a handler's answer is written.
pub(crate) trait Reply {
    /// The response: its head, and what its body is. Called once per call.
    fn start(&mut self, view: ResponseView<'_>, content: Content);
    /// Appends to a streamed body; `false` once the body cannot go on.
    fn write(&mut self, bytes: &[u8]) -> bool;
    /// Sends what a streamed body holds so far; `false` once the body cannot go on.
    fn flush(&mut self) -> bool;
    /// A streamed body was cut short by its producer.
    fn abort(&mut self) {}
}

/// What a response's body is, as the host holds it.
pub(crate) enum Content {
    /// The view's `body`.
    Bytes,
    /// A run of a file.
    File(FileRun),
    /// Written after the head through [`Reply::write`]; the length when declared.
    Stream(Option<u64>),
}

/// `remaining` bytes of `file` from `offset`, still to send.
#[derive(Debug)]
pub(crate) struct FileRun {
    pub file: File,
    pub offset: u64,
    pub remaining: u64,
}

/// A [`Reply`] that keeps the answer in memory, for a handler called outside a server.
#[derive(Default)]
pub(crate) struct Collected {
    pub response: Option<Response>,
    body: Vec<u8>,
}

impl Reply for Collected {
    fn start(&mut self, view: ResponseView<'_>, content: Content) {
        self.body = match content {
            Content::Bytes => view.body.to_vec(),
            Content::File(run) => match read_run(run) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a response's file body");
                    return;
                }
            },
            Content::Stream(_) => Vec::new(),
        };
        self.response = Some(ResponseView { body: &[], ..view }.to_owned());
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        self.body.extend_from_slice(bytes);
        true
    }

    fn flush(&mut self) -> bool {
        true
    }
}

impl Collected {
    /// The answer, with the body it collected.
    pub fn finish(self) -> Option<Response> {
        let response = self.response?;
        let view = response.view();
        Some(
            ResponseView {
                body: &self.body,
                ..view
            }
            .to_owned(),
        )
    }
}

/// The bytes of a file run.
fn read_run(mut run: FileRun) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    run.file.seek(SeekFrom::Start(run.offset))?;
    run.file.take(run.remaining).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The C sink over `call`, valid while `call` is borrowed.
pub(crate) fn sink(call: &mut Call<'_>) -> ResponseSink {
    ResponseSink {
        ctx: (call as *mut Call<'_>).cast(),
        callback_respond,
        callback_write,
        callback_flush,
    }
}

/// Sends `response` through `call`, running a streamed body's producer: the path an in-process
/// handler's answer takes, the same glue a plugin's takes.
pub(crate) fn send(call: &mut Call<'_>, response: Response) {
    if let Body::Bytes(_) = response.content() {
        // Valid by construction and in memory: straight to the reply.
        call.respond(response.view());
        return;
    }
    let body = plugin_api::BodyReader::new(call.body(), call.source());
    let sink = sink(call);
    // SAFETY: `sink` points to `call`, which outlives this call and is not otherwise used during it.
    let status = unsafe { plugin_api::__private::send(response, &sink, body) };
    if status != Status::OK {
        call.abort();
    }
}

unsafe extern "C" fn callback_respond(ctx: *mut c_void, response: *const RawResponse) -> Status {
    // SAFETY: the plugin lends `response` for this call (ABI contract).
    let raw = unsafe { &*response };
    // The descriptor is ours from here on, whatever happens to the response.
    let file = (raw.body_kind == RawResponse::BODY_FILE && raw.fd >= 0).then(|| {
        // SAFETY: the ABI passes ownership of `fd` to the host with this call; nothing else closes
        // it. We trust the plugin that it is an open descriptor.
        File::from(unsafe { OwnedFd::from_raw_fd(raw.fd) })
    });
    // Never unwind into the plugin.
    let taken = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `Call` of `sink`, alive and not otherwise used during `on_handle`.
        let call = unsafe { &mut *ctx.cast::<Call<'_>>() };
        // SAFETY: the plugin lends these bytes for this call (ABI contract).
        let (head, body) = unsafe { (raw.headers.as_slice(), raw.body.as_slice()) };
        let close = raw.flags & RawResponse::CLOSE != 0;
        let content = match (raw.body_kind, file) {
            (RawResponse::BODY_BYTES, _) => Content::Bytes,
            (RawResponse::BODY_FILE, Some(file)) => Content::File(FileRun {
                file,
                offset: raw.offset,
                remaining: raw.length,
            }),
            (RawResponse::BODY_STREAM, _) => {
                Content::Stream((raw.length != RawResponse::UNKNOWN_LENGTH).then_some(raw.length))
            }
            (kind, _) => {
                call.invalid(plugin_api::Error::File(format!(
                    "body kind {kind} (or its descriptor) is not one the host knows"
                )));
                return false;
            }
        };
        let body = if matches!(content, Content::Bytes) {
            body
        } else {
            &[]
        };
        match ResponseView::check(raw.status, head, body, close) {
            Ok(view) => call.start(view, content),
            Err(e) => {
                call.invalid(e);
                false
            }
        }
    }));
    match taken {
        Ok(true) => Status::OK,
        _ => Status::FAILED,
    }
}

unsafe extern "C" fn callback_write(ctx: *mut c_void, bytes: RawBytes) -> Status {
    let written = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `callback_respond`; the plugin lends `bytes` for this call.
        let (call, bytes) = unsafe { (&mut *ctx.cast::<Call<'_>>(), bytes.as_slice()) };
        call.write(bytes)
    }));
    status(written)
}

unsafe extern "C" fn callback_flush(ctx: *mut c_void) -> Status {
    let flushed = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `callback_respond`.
        let call = unsafe { &mut *ctx.cast::<Call<'_>>() };
        call.flush()
    }));
    status(flushed)
}

fn status(done: std::thread::Result<bool>) -> Status {
    match done {
        Ok(true) => Status::OK,
        _ => Status::FAILED,
    }
}
