//! [`Call`]: how a [`Handler`](crate::Handler) answers a request and puts it in a bulkhead, and the
//! [`Permit`] that holds its place. The bulkheads themselves are in `mod.rs`.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use plugin_api::{Response, ResponseView};

use super::{Bulkhead, Reserved};
use crate::reply::{self, Content, Reply};
use crate::running::Record;
use crate::shared::Shared;

/// A place in a bulkhead, held until dropped. Returned by [`Call::enter`].
pub struct Permit<'a> {
    held: Option<(&'a Arc<Bulkhead>, &'a Record)>,
}

/// One request on its way through a [`Handler`](crate::Handler): how it is answered, and the
/// bulkhead it runs in.
pub struct Call<'a> {
    reply: &'a mut dyn Reply,
    gate: Option<Gate<'a>>,
    declined: Option<Declined>,
    progress: Progress,
}

/// How far the answer to a call got.
enum Progress {
    Unanswered,
    /// The response went to the reply: its status, and the body bytes so far.
    Answered {
        status: u16,
        bytes: u64,
    },
    /// The handler gave a response the host cannot send.
    Invalid(plugin_api::Error),
}

/// What the server knows of the request, to admit it.
pub(crate) struct Gate<'a> {
    pub shared: &'a Shared,
    pub record: &'a Record,
    /// When the request was received, and now (clock milliseconds).
    pub received: u64,
    pub now: u64,
    pub default_timeout: Duration,
    pub fd: RawFd,
    /// A place reserved for this request while it waited.
    pub granted: Option<Reserved>,
    /// The request's body as read before the call, and where the rest comes from when it is
    /// read as it arrives: for a streamed answer that reads it.
    pub body: &'a [u8],
    pub source: Option<&'a plugin_api::abi::BodySource>,
}

/// Why a handler did not run.
pub(crate) enum Declined {
    /// Its bulkhead is full: park the connection there, until this deadline.
    Busy(Arc<Bulkhead>, u64),
    /// It waited past its deadline: `503`.
    Expired,
    /// Its client left while it waited: close.
    Gone,
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some((bulkhead, record)) = self.held {
            record.leave();
            // A call written off stops counting as lost before its place goes: in between, a
            // pause (`pause.rs`) would take the lost count for another call still running.
            if record.was_written_off() {
                bulkhead.count_lost(false);
            }
            bulkhead.exit();
        }
    }
}

impl<'a> Call<'a> {
    /// A call outside any server: `enter` always admits.
    pub(crate) fn ungated(reply: &'a mut dyn Reply) -> Call<'a> {
        Call {
            reply,
            gate: None,
            declined: None,
            progress: Progress::Unanswered,
        }
    }

    #[inline]
    pub(crate) fn gated(reply: &'a mut dyn Reply, gate: Gate<'a>) -> Call<'a> {
        Call {
            reply,
            gate: Some(gate),
            declined: None,
            progress: Progress::Unanswered,
        }
    }

    /// Answers the request with a body of bytes. Only the first answer counts, and none once the
    /// call ran past its deadline (the client was answered `504` already) or after
    /// [`enter`](Self::enter) said no.
    #[inline]
    pub fn respond(&mut self, response: ResponseView<'_>) {
        self.start(response, Content::Bytes);
    }

    /// Answers the request with `response`, whatever its body: bytes, a file (sent with
    /// `sendfile(2)`), or a stream, whose producer runs now, on this thread.
    pub fn send(&mut self, response: Response) {
        reply::send(self, response);
    }

    /// Where a body read as it arrives comes from, if the request has one.
    pub(crate) fn source(&self) -> Option<&'a plugin_api::abi::BodySource> {
        self.gate.as_ref().and_then(|g| g.source)
    }

    /// The request's body as read before the call.
    pub(crate) fn body(&self) -> &'a [u8] {
        self.gate.as_ref().map_or(&[], |g| g.body)
    }

    /// The status answered and the body bytes sent so far, once answered.
    pub fn answered(&self) -> Option<(u16, u64)> {
        match self.progress {
            Progress::Answered { status, bytes } => Some((status, bytes)),
            Progress::Unanswered | Progress::Invalid(_) => None,
        }
    }

    /// Whether an answer may still go out.
    #[inline]
    fn open(&self) -> bool {
        self.declined.is_none() && !self.timed_out()
    }

    /// The response's head and what its body is; `false` when it was not taken (answered
    /// already, timed out, or declined).
    #[inline]
    pub(crate) fn start(&mut self, view: ResponseView<'_>, content: Content) -> bool {
        if !matches!(self.progress, Progress::Unanswered) || !self.open() {
            return false;
        }
        let bytes = match &content {
            Content::Bytes => view.body.len() as u64,
            Content::File(run) => run.remaining,
            Content::Stream(_) => 0,
        };
        self.progress = Progress::Answered {
            status: view.status,
            bytes,
        };
        self.reply.start(view, content);
        true
    }

    /// Appends to a streamed body; `false` once it cannot go on.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        if self.timed_out() {
            return false;
        }
        let Progress::Answered { bytes: sent, .. } = &mut self.progress else {
            return false;
        };
        if !self.reply.write(bytes) {
            return false;
        }
        *sent += bytes.len() as u64;
        true
    }

    /// Sends what a streamed body holds so far; `false` once it cannot go on.
    pub(crate) fn flush(&mut self) -> bool {
        matches!(self.progress, Progress::Answered { .. })
            && !self.timed_out()
            && self.reply.flush()
    }

    /// The handler's response could not be sent as given.
    pub(crate) fn invalid(&mut self, error: plugin_api::Error) {
        if matches!(self.progress, Progress::Unanswered) {
            self.progress = Progress::Invalid(error);
        }
    }

    /// Why the handler's response was refused, if it was.
    pub(crate) fn take_invalid(&mut self) -> Option<plugin_api::Error> {
        match std::mem::replace(&mut self.progress, Progress::Unanswered) {
            Progress::Invalid(e) => Some(e),
            other => {
                self.progress = other;
                None
            }
        }
    }

    /// A streamed body was cut short (its producer failed or panicked): the connection must end
    /// without the body's proper end.
    pub(crate) fn abort(&mut self) {
        self.reply.abort();
    }

    /// Whether the call ran past its deadline: the client was answered without it.
    #[inline]
    pub fn timed_out(&self) -> bool {
        self.gate.as_ref().is_some_and(|g| !g.record.is_running())
    }

    /// Takes a place in `bulkhead` for the rest of the call. `None`: the request must not run
    /// now; return without answering, and the server parks it, answers it `503`, or drops it
    /// because its client left.
    #[inline]
    pub fn enter<'b>(&mut self, bulkhead: &'b Arc<Bulkhead>) -> Option<Permit<'b>>
    where
        'a: 'b,
    {
        let Some(gate) = self.gate.as_mut() else {
            return Some(Permit { held: None });
        };
        if !matches!(self.progress, Progress::Unanswered) || self.declined.is_some() {
            // Answered already, or told no: there is nothing left to limit.
            return Some(Permit { held: None });
        }
        let deadline = bulkhead.deadline(gate.received, gate.default_timeout);
        // A place reserved in another bulkhead (the routes changed while it waited) is given
        // back when `granted` drops.
        let granted = match gate.granted.take() {
            Some(mut place) if place.0.as_ref().is_some_and(|b| Arc::ptr_eq(b, bulkhead)) => {
                place.take().is_some()
            }
            _ => false,
        };
        if granted {
            let declined = if gate.now > deadline {
                Some(Declined::Expired)
            } else if peer_gone(gate.fd) {
                Some(Declined::Gone)
            } else {
                None
            };
            if let Some(declined) = declined {
                bulkhead.exit();
                self.declined = Some(declined);
                return None;
            }
        } else if gate.now > deadline {
            self.declined = Some(Declined::Expired);
            return None;
        } else if !bulkhead.try_enter(gate.shared, gate.now) {
            self.declined = Some(Declined::Busy(Arc::clone(bulkhead), deadline));
            return None;
        }
        let record: &'b Record = gate.record;
        record.enter(
            bulkhead.id,
            deadline,
            deadline.saturating_sub(gate.received),
        );
        Some(Permit {
            held: Some((bulkhead, record)),
        })
    }

    /// Server: why the handler did not run, if it did not (a reserved place it did not use is
    /// given back as the call drops).
    #[inline]
    pub(crate) fn finish(self) -> Option<Declined> {
        self.declined
    }
}

/// Whether the peer closed or reset the connection, without taking any byte it sent. A client
/// that closed its sending side while its request waited counts as gone, as nginx takes it (its
/// 499): an HTTP client that half-closes and still waits for an answer is rare, and the request
/// it abandoned would hold a place for nothing.
fn peer_gone(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is the connection's socket, open for the whole call (its `Conn` is borrowed by
    // the worker that runs it); the buffer is one valid byte; MSG_PEEK leaves the data queued.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => !matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}
