//! Bodies that are not bytes in memory: a response body that is a file ([`FileBody`], sent by the
//! host with `sendfile(2)`) or a stream the handler writes as it produces it ([`StreamBody`],
//! through a [`BodyWriter`]), and the [`BodyReader`] a request body is read with as it arrives.
//!
//! `send` is the glue that hands any [`Response`] to the host through a
//! [`ResponseSink`]: the export macro's `on_handle` uses it, and so does the host for its own
//! in-process handlers, so both go the same way.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::IntoRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::Response;
use crate::abi::{BodySource, RawBytes, RawResponse, ResponseSink, Status};

/// What a response's body is.
pub enum Body {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A run of a file, sent by the server straight from the file to the socket.
    File(FileBody),
    /// Written by the handler while the response goes out.
    Stream(StreamBody),
}

/// `len` bytes of an open file from `offset`: the body of
/// [`ResponseBuilder::file`](crate::ResponseBuilder::file) and its siblings.
pub struct FileBody {
    pub(crate) file: File,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// What produces a streamed body, called once with the writer.
pub type Producer = Box<dyn FnOnce(&mut BodyWriter<'_>) -> io::Result<()> + Send>;

/// A body the handler writes as it produces it: see
/// [`ResponseBuilder::stream`](crate::ResponseBuilder::stream).
pub struct StreamBody {
    pub(crate) len: Option<u64>,
    pub(crate) produce: Producer,
}

impl FileBody {
    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the body starts in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The body's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl StreamBody {
    /// The length the handler declared, if it did.
    pub fn declared_len(&self) -> Option<u64> {
        self.len
    }

    /// Runs the producer into `out`, for a handler tested without a server: collects the body.
    ///
    /// # Errors
    /// What the producer returned.
    pub fn collect(self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut sink = VecSink(out);
        let host = sink.sink();
        let mut writer = BodyWriter {
            sink: &host,
            failed: false,
            body: BodyReader::new(&[], None),
        };
        (self.produce)(&mut writer)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Bytes({:?})", String::from_utf8_lossy(b)),
            Body::File(file) => write!(f, "File({} bytes from {})", file.len, file.offset),
            Body::Stream(s) => write!(f, "Stream(length {:?})", s.len),
        }
    }
}

/// Writes a streamed response body; [`io::Write`]. Buffered by the server: call
/// [`flush`](io::Write::flush) when what was written must reach the client now (an event of an
/// event stream, say).
///
/// A write fails once the body cannot go on: the client went away or reads too slowly, the
/// response has no body (`HEAD`, `304`), or more was written than the declared length. Stop
/// producing then; every later write fails too.
pub struct BodyWriter<'a> {
    sink: &'a ResponseSink,
    failed: bool,
    body: BodyReader<'a>,
}

impl Write for BodyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: the host keeps the sink valid during `on_handle`, which this runs in, and copies
        // the bytes during the call (ABI contract).
        let status = unsafe { (self.sink.callback_write)(self.sink.ctx, RawBytes::new(buf)) };
        self.check(status)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // SAFETY: as in `write`.
        let status = unsafe { (self.sink.callback_flush)(self.sink.ctx) };
        self.check(status)
    }
}

impl<'a> BodyWriter<'a> {
    /// The body of the request being answered, to read while the response goes out (an echo, a
    /// transformation of an upload): what [`Request::body_reader`](crate::Request::body_reader)
    /// gives, which the producer cannot borrow.
    pub fn request_body(&mut self) -> &mut BodyReader<'a> {
        &mut self.body
    }

    fn check(&mut self, status: Status) -> io::Result<()> {
        if status == Status::OK && !self.failed {
            return Ok(());
        }
        self.failed = true;
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the response body cannot go on: the client went away or reads too slowly, or the \
             response has no body",
        ))
    }
}

/// Reads a request body as it arrives: [`Request::body_reader`](crate::Request::body_reader).
///
/// A read fails when the body cannot be read: the client went away or sends too slowly, the body
/// is larger than the server accepts, or its framing is broken. The server answers the client
/// itself if the handler does not.
pub struct BodyReader<'a> {
    pub(crate) buffered: &'a [u8],
    pub(crate) source: Option<&'a BodySource>,
}

impl<'a> BodyReader<'a> {
    /// A reader of `buffered`, then of `source`. For the host.
    #[doc(hidden)]
    pub fn new(buffered: &'a [u8], source: Option<&'a BodySource>) -> BodyReader<'a> {
        BodyReader { buffered, source }
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.buffered.is_empty() {
            let n = self.buffered.len().min(buf.len());
            buf[..n].copy_from_slice(&self.buffered[..n]);
            self.buffered = &self.buffered[n..];
            return Ok(n);
        }
        let Some(source) = self.source else {
            return Ok(0);
        };
        // SAFETY: the host keeps the source valid during `on_handle`; `buf` is ours, writable for
        // its length (ABI contract).
        let n = unsafe { (source.callback_read)(source.ctx, buf.as_mut_ptr(), buf.len()) };
        usize::try_from(n).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the request body cannot be read: the client went away, sends too slowly, or sent \
                 more than the server accepts",
            )
        })
    }
}

/// Hands `response` to the host through `sink` and, for a streamed body, runs its producer, which
/// may read the request's `body`.
///
/// Returns [`Status::OK`] when the response went (or the host refused it and answers for it), and
/// [`Status::FAILED`] or [`Status::PANICKED`] when a stream's producer failed or panicked: the
/// host must then end the connection, since the body is cut short.
///
/// # Safety
/// `sink` must point to a valid [`ResponseSink`] for the duration of the call.
#[doc(hidden)]
pub unsafe fn send(
    response: Response,
    sink: *const ResponseSink,
    request_body: BodyReader<'_>,
) -> Status {
    let (status, close, head, body) = response.into_parts();
    let mut raw = RawResponse {
        status,
        flags: if close { RawResponse::CLOSE } else { 0 },
        headers: RawBytes::new(&head),
        body: RawBytes::EMPTY,
        body_kind: RawResponse::BODY_BYTES,
        fd: -1,
        offset: 0,
        length: 0,
    };
    let mut stream = None;
    // The bytes stay here until the host has copied them.
    let mut bytes = Vec::new();
    match body {
        Body::Bytes(b) => bytes = b,
        Body::File(file) => {
            raw.body_kind = RawResponse::BODY_FILE;
            raw.offset = file.offset;
            raw.length = file.len;
            // Ownership passes to the host, which closes it.
            raw.fd = file.file.into_raw_fd();
        }
        Body::Stream(s) => {
            raw.body_kind = RawResponse::BODY_STREAM;
            raw.length = s.len.unwrap_or(RawResponse::UNKNOWN_LENGTH);
            stream = Some(s.produce);
        }
    }
    raw.body = RawBytes::new(&bytes);
    // SAFETY: the caller promises a valid sink; `raw` and the bytes it points to (`head`, `bytes`)
    // live until the call returns, and the host copies what it needs.
    let sink = unsafe { &*sink };
    // SAFETY: as above.
    let taken = unsafe { (sink.callback_respond)(sink.ctx, &raw) };
    drop(bytes);
    let Some(produce) = stream else {
        return Status::OK;
    };
    if taken != Status::OK {
        // Refused: the host answers for it; the producer never runs.
        return Status::OK;
    }
    let mut writer = BodyWriter {
        sink,
        failed: false,
        body: request_body,
    };
    match catch_unwind(AssertUnwindSafe(|| produce(&mut writer))) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(e)) => {
            if !writer.failed {
                crate::log::write(crate::Level::Warn, &format!("response stream failed: {e}"));
            }
            Status::FAILED
        }
        Err(panic) => {
            let message = crate::plugin::panic_message(&*panic);
            crate::log::write(
                crate::Level::Error,
                &format!("response stream panicked: {message}"),
            );
            Status::PANICKED
        }
    }
}

/// A sink that collects a streamed body in memory ([`StreamBody::collect`]).
struct VecSink<'a>(&'a mut Vec<u8>);

impl VecSink<'_> {
    fn sink(&mut self) -> ResponseSink {
        ResponseSink {
            ctx: (self.0 as *mut Vec<u8>).cast(),
            callback_respond: refuse,
            callback_write: append,
            callback_flush: flushed,
        }
    }
}

unsafe extern "C" fn refuse(_: *mut std::ffi::c_void, _: *const RawResponse) -> Status {
    Status::FAILED
}

unsafe extern "C" fn append(ctx: *mut std::ffi::c_void, bytes: RawBytes) -> Status {
    // SAFETY: `ctx` is the `Vec<u8>` of `VecSink`, alive while the sink is; the bytes are lent for
    // the call.
    let (out, bytes) = unsafe { (&mut *ctx.cast::<Vec<u8>>(), bytes.as_slice()) };
    out.extend_from_slice(bytes);
    Status::OK
}

unsafe extern "C" fn flushed(_: *mut std::ffi::c_void) -> Status {
    Status::OK
}
