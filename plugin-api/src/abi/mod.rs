//! The C ABI that crosses between the host and a plugin.
//!
//! Rust has no stable ABI, so nothing here is a `String`, a `Vec`, a trait object or a Rust
//! closure: every type is `#[repr(C)]` and every function `extern "C"`. Plugin authors never touch
//! this module; [`export_plugin!`](crate::export_plugin) writes the glue. The host reads it in its
//! loader (`server/src/plugin/loader.rs`).
//!
//! # Naming
//! Hooks the plugin exports are named `on_*` (the host calls them); functions the host hands to the
//! plugin are named `callback_*` (the plugin calls them).
//!
//! # Ownership
//! Whatever one side allocates, the same side frees. Each pointer below says who owns it and until
//! when. A [`RawBytes`] with a null pointer and a length of zero means "empty".
//!
//! # The ABI policy
//! - [`Declaration::magic`] and [`Declaration::abi_version`] are its first fields and keep their
//!   offsets (0 and 8) in every version, so a host can always read them before anything else and
//!   refuse a plugin built against another version, naming both; from ABI 4 on,
//!   [`Declaration::size`] keeps offset 12.
//! - **Without a version bump**, hooks may be appended at the end of [`Declaration`], optional
//!   ones (an `Option` of a function pointer) only. A plugin built before one was added declares a
//!   smaller [`Declaration::size`], and the host treats every field at or past that size as absent
//!   (`None`); a plugin built after, run by an older host, has its new hooks ignored. Nothing else
//!   changes without a bump: no field is reordered, resized, retyped or removed, in any type here,
//!   and no meaning changes.
//! - **Everything else bumps [`ABI_VERSION`]:** a field added anywhere but the end of the
//!   declaration, a field added to any other type (they have no size field), a new required hook,
//!   a changed signature or constant, a changed rule a side relies on.
//! - Every type here is `#[repr(C)]`, and its size, alignment and field offsets are asserted at
//!   compile time (`layout.rs`), so a change that moves a field fails the build instead of
//!   shifting what an older plugin reads. `include/mini_async_http.h` is the same ABI for C,
//!   generated from this module (a test fails when it is stale).
//! - The host also reads [`Declaration::panic`] before it calls anything: a Rust plugin built
//!   with `panic = "abort"` is refused, since its first panic would abort the host.

use std::ffi::c_void;

mod layout;
mod request;

pub use request::{Header, RawPeer, Request};

/// The first field of every [`Declaration`]: `"MAHTTPLG"` read as a big-endian `u64`.
pub const MAGIC: u64 = 0x4D41_4854_5450_4C47;

/// The version of this ABI. The host refuses a plugin whose declaration carries another one.
pub const ABI_VERSION: u32 = 4;

/// The smallest [`Declaration::size`] the host accepts for this ABI version: up to and including
/// [`Declaration::on_drop`], the last required hook.
pub const DECLARATION_MIN_SIZE: u32 = 80;

/// [`Declaration::panic`]: the plugin cannot panic (it is not Rust: C, say).
pub const PANIC_NONE: u32 = 0;
/// [`Declaration::panic`]: built with `panic = "unwind"` (Rust's default); the export macro catches
/// every panic at the boundary.
pub const PANIC_UNWIND: u32 = 1;
/// [`Declaration::panic`]: built with `panic = "abort"`; refused by the host.
pub const PANIC_ABORT: u32 = 2;

/// The name of the one symbol a plugin exports: a `static` [`Declaration`].
pub const DECLARATION_SYMBOL: &str = "mini_async_http_plugin";

/// A borrowed run of bytes: a pointer and a length.
///
/// Who owns the bytes and for how long is said wherever a `RawBytes` appears. A null pointer with a
/// length of zero means empty.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawBytes {
    /// The first byte, or null when `len` is zero.
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

impl RawBytes {
    /// The empty run: a null pointer and a length of zero.
    pub const EMPTY: RawBytes = RawBytes {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows a slice. The result is valid for as long as the slice is.
    pub const fn new(bytes: &[u8]) -> RawBytes {
        RawBytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    /// `ptr` must point to `len` initialised bytes that stay valid and unchanged for `'a`, or `len`
    /// must be zero.
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the caller promises `len` valid bytes at `ptr` for `'a`; null was excluded above.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// What an `on_*` hook returns.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// The hook did its work.
    pub const OK: Status = Status(0);
    /// The hook failed and said why through the error sink it was given.
    pub const FAILED: Status = Status(1);
    /// The plugin's code panicked; the panic was caught at the boundary.
    pub const PANICKED: Status = Status(2);
    /// The hook had nothing to do: from `on_save`, the instance keeps no state (so the host
    /// swaps it without holding requests back). A host that predates it takes it as "no state"
    /// too, so it needs no new ABI version.
    pub const NOTHING: Status = Status(3);
}

/// The plugin's one exported symbol, named [`DECLARATION_SYMBOL`].
///
/// It lives in the plugin's image; the host reads it in place and never writes it. Strings in it
/// are UTF-8 with `'static` lifetime inside the image.
#[repr(C)]
pub struct Declaration {
    /// Always [`MAGIC`]. Keeps offset 0 in every ABI version.
    pub magic: u64,
    /// The [`ABI_VERSION`] the plugin was built against. Keeps offset 8 in every ABI version.
    pub abi_version: u32,
    /// The size of this declaration as the plugin was built, in bytes (`sizeof` it). Keeps
    /// offset 12. Fields at or past it are absent (see the ABI policy above); less than
    /// [`DECLARATION_MIN_SIZE`] is refused.
    pub size: u32,
    /// How the plugin was built to handle a panic: [`PANIC_NONE`], [`PANIC_UNWIND`] or
    /// [`PANIC_ABORT`] (refused).
    pub panic: u32,
    /// The plugin's name: its crate name, which is also the stem of its file (`libNAME.so`).
    pub name: RawBytes,
    /// The plugin's own version (its `Cargo.toml` version).
    pub version: RawBytes,
    /// Creates the plugin instance from its settings. Required (never null).
    pub on_init: InitFn,
    /// Answers one request. Called from many worker threads at once. Required (never null).
    pub on_handle: HandleFn,
    /// Destroys the instance made by `on_init`. Called once, after the last `on_handle` returned.
    /// Required (never null).
    pub on_drop: DropFn,
    /// `on_save(instance, state)` ([`SaveFn`]): hands the instance's state to its next
    /// generation. Optional (null: no state; absent when `size` ends before it).
    pub on_save:
        Option<unsafe extern "C" fn(instance: *const c_void, state: *const BytesSink) -> Status>,
    /// `on_restore(instance, state, error)` ([`RestoreFn`]): takes the state the previous
    /// generation saved; called after `on_init`, before `on_handle`. Optional (null: none is
    /// taken; absent when `size` ends before it).
    pub on_restore: Option<
        unsafe extern "C" fn(
            instance: *const c_void,
            state: RawBytes,
            error: *const BytesSink,
        ) -> Status,
    >,
}

// SAFETY: a declaration is immutable, and its pointers refer to `'static` data in the plugin image
// (string literals) or to functions; sharing those between threads is sound.
unsafe impl Sync for Declaration {}

/// `on_init(host, settings, instance_out, error)`.
///
/// - `host`: owned by the host, valid until `on_drop` of this instance has returned.
/// - `settings`: the TOML text of the plugin's `[plugins.NAME]` table (may be empty); owned by the
///   host, valid during the call only.
/// - `instance_out`: where the plugin writes its instance pointer on success. The instance is owned
///   by the plugin and freed by `on_drop`.
/// - `error`: a host sink; on failure the plugin writes a UTF-8 message there and returns
///   [`Status::FAILED`].
pub type InitFn = unsafe extern "C" fn(
    host: *const HostApi,
    settings: RawBytes,
    instance_out: *mut *mut c_void,
    error: *const BytesSink,
) -> Status;

/// `on_handle(instance, request, response)`.
///
/// - `request`: owned by the host, valid during the call only (every pointer inside it too).
/// - `response`: a host sink; the plugin calls its `callback_respond` exactly once before it returns
///   [`Status::OK`]. The bytes it passes are the plugin's and need to live only during that call.
pub type HandleFn = for<'a> unsafe extern "C" fn(
    instance: *const c_void,
    request: *const Request<'a>,
    response: *const ResponseSink,
) -> Status;

/// `on_drop(instance)`: frees the instance. The host never uses it again afterwards.
pub type DropFn = unsafe extern "C" fn(instance: *mut c_void);

/// `on_save(instance, state)`: writes the instance's state into the host sink (any number of
/// calls, concatenated) and returns [`Status::OK`]; returns [`Status::NOTHING`] when the
/// instance keeps no state, and any other status when saving failed (the reload is then refused
/// and this instance keeps serving).
///
/// For an instance with state (`OK`) the host makes the hand-over exact: the state it hands over
/// comes from a call made once no request of this instance is running, with new ones held back
/// until the next instance has restored it and replaced this one. (A first call, made while
/// requests run, only tells the host whether the instance keeps state: its bytes are dropped.)
pub type SaveFn = unsafe extern "C" fn(instance: *const c_void, state: *const BytesSink) -> Status;

/// `on_restore(instance, state, error)`: `state` is owned by the host and valid during the call.
/// Any status but [`Status::OK`] refuses the state, and with it the reload: the previous
/// instance keeps serving.
pub type RestoreFn = unsafe extern "C" fn(
    instance: *const c_void,
    state: RawBytes,
    error: *const BytesSink,
) -> Status;

/// A host-owned place to write bytes to (an error message, saved state).
#[repr(C)]
pub struct BytesSink {
    /// Host data; the plugin passes it back untouched.
    pub ctx: *mut c_void,
    /// Appends `bytes` (owned by the plugin, borrowed for the call) to the sink. The host copies.
    pub callback_write: unsafe extern "C" fn(ctx: *mut c_void, bytes: RawBytes),
}

/// A host-owned place to put the response to one request.
///
/// The plugin calls `callback_respond` once. When the response's body is a stream
/// ([`RawResponse::BODY_STREAM`]), it then writes the body with `callback_write` (and, when it
/// wants what it wrote so far to reach the client now, `callback_flush`) before `on_handle`
/// returns; the host ends the body when `on_handle` returns. Every callback must be called from the
/// thread that runs `on_handle`, during the call.
#[repr(C)]
pub struct ResponseSink {
    /// Host data; the plugin passes it back untouched.
    pub ctx: *mut c_void,
    /// Hands the response to the host, which copies what it needs before returning.
    /// [`Status::OK`] when the host took it; [`Status::FAILED`] when it refused it (an invalid
    /// response, logged by the host, which answers `500` instead) or took an answer already.
    pub callback_respond:
        unsafe extern "C" fn(ctx: *mut c_void, response: *const RawResponse) -> Status,
    /// Appends `bytes` (the plugin's, borrowed for the call) to a streamed body. Blocks while the
    /// client's socket is full, bounded by the host's write deadline. [`Status::FAILED`] when the
    /// body cannot go on: the client went away or is too slow, the response has no body (`HEAD`,
    /// `304`), more was written than the declared length, or the response is not a stream. The
    /// plugin should stop producing then; later writes fail too.
    pub callback_write: unsafe extern "C" fn(ctx: *mut c_void, bytes: RawBytes) -> Status,
    /// Sends what was written so far to the client before returning (blocking as
    /// `callback_write` does). Same results.
    pub callback_flush: unsafe extern "C" fn(ctx: *mut c_void) -> Status,
}

/// A response as the plugin hands it over: borrowed from the plugin for one callback.
#[repr(C)]
pub struct RawResponse {
    /// The status code: a final one, 200 to 599. The host answers `500` (and logs why) for
    /// anything else, informational statuses included (`100 Continue` is the host's to send).
    pub status: u16,
    /// Bit 0 ([`RawResponse::CLOSE`]): close the connection after this response.
    pub flags: u32,
    /// Header lines, each `name: value\r\n`, in order. The host checks these very bytes before
    /// it sends them (a token name; a value of visible bytes, spaces and tabs, never CR, LF or
    /// another control byte; no `Content-Length`, `Transfer-Encoding`, `Date` or `Connection`).
    pub headers: RawBytes,
    /// The body, when `body_kind` is [`RawResponse::BODY_BYTES`]; empty otherwise.
    pub body: RawBytes,
    /// What the body is: [`RawResponse::BODY_BYTES`], [`RawResponse::BODY_FILE`] or
    /// [`RawResponse::BODY_STREAM`].
    pub body_kind: u32,
    /// [`RawResponse::BODY_FILE`]: an open descriptor of a regular file, readable. Its ownership
    /// passes to the host with the call, whatever the host does with the response: the host closes
    /// it (after sending, or at once when it refuses the response). `-1` for other kinds.
    pub fd: i32,
    /// [`RawResponse::BODY_FILE`]: where the body starts in the file.
    pub offset: u64,
    /// [`RawResponse::BODY_FILE`]: the body's length (the file must hold that many bytes from
    /// `offset`; a file that turns out shorter ends the connection). [`RawResponse::BODY_STREAM`]:
    /// the length the plugin promises to write, sent as `Content-Length`, or
    /// [`RawResponse::UNKNOWN_LENGTH`] for a body sent `chunked` (or, to an HTTP/1.0 client, ended
    /// by closing the connection).
    pub length: u64,
}

impl RawResponse {
    /// The flag that asks for the connection to be closed after the response.
    pub const CLOSE: u32 = 1;
    /// The body is the bytes of `body`.
    pub const BODY_BYTES: u32 = 0;
    /// The body is `length` bytes of the file `fd` from `offset`, sent by the host with
    /// `sendfile(2)`.
    pub const BODY_FILE: u32 = 1;
    /// The body is written by the plugin after `callback_respond`, with `callback_write`.
    pub const BODY_STREAM: u32 = 2;
    /// A stream's `length` when the plugin does not know it.
    pub const UNKNOWN_LENGTH: u64 = u64::MAX;
}

/// Where a plugin reads a request body that the host did not read whole before the call.
///
/// Owned by the host, valid during `on_handle`. Reading from two threads at once is refused (the
/// second read fails).
#[repr(C)]
#[derive(Debug)]
pub struct BodySource {
    /// Host data; the plugin passes it back untouched.
    pub ctx: *mut c_void,
    /// Reads up to `len` more bytes of the body into `buf` (the plugin's, `len` bytes long) and
    /// returns how many, 0 at the end of the body, or -1 when the body cannot be read: the client
    /// went away or sent it too slowly, the body is larger than the host accepts, or its framing
    /// is broken. The host answers the client itself after a failure if the plugin does not. The
    /// first read sends `100 Continue` to a client that asked for it.
    pub callback_read: unsafe extern "C" fn(ctx: *mut c_void, buf: *mut u8, len: usize) -> isize,
}

/// What the host offers a plugin instance.
#[repr(C)]
pub struct HostApi {
    /// Host data for the callbacks; the plugin passes it back untouched.
    pub ctx: *const c_void,
    /// Logs a UTF-8 `message` at `level` (1 error, 2 warn, 3 info, 4 debug, 5 trace), tagged by the
    /// host with the plugin's name and generation. Safe to call from any thread.
    pub callback_log: unsafe extern "C" fn(ctx: *const c_void, level: u8, message: RawBytes),
}

// SAFETY: the host promises (ABI contract) that `ctx` stays valid and `callback_log` is callable from
// any thread until the instance is dropped.
unsafe impl Send for HostApi {}
// SAFETY: as above; the plugin only reads the struct.
unsafe impl Sync for HostApi {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_spells_its_name() {
        assert_eq!(MAGIC.to_be_bytes(), *b"MAHTTPLG");
    }
}
