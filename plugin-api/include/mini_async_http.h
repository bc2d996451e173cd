#ifndef MINI_ASYNC_HTTP_H
#define MINI_ASYNC_HTTP_H

/* Generated from plugin-api/src/abi/ by cbindgen: do not edit. To regenerate after an ABI
 * change: UPDATE_HEADER=1 cargo test -p plugin-api --test header */

#include <stddef.h>
#include <stdint.h>

// The first field of every [`Declaration`]: `"MAHTTPLG"` read as a big-endian `u64`.
#define MAH_MAGIC 5566810141435644999

// The version of this ABI. The host refuses a plugin whose declaration carries another one.
#define MAH_ABI_VERSION 4

// The smallest [`Declaration::size`] the host accepts for this ABI version: up to and including
// [`Declaration::on_drop`], the last required hook.
#define MAH_DECLARATION_MIN_SIZE 80

// [`Declaration::panic`]: the plugin cannot panic (it is not Rust: C, say).
#define MAH_PANIC_NONE 0

// [`Declaration::panic`]: built with `panic = "unwind"` (Rust's default); the export macro catches
// every panic at the boundary.
#define MAH_PANIC_UNWIND 1

// [`Declaration::panic`]: built with `panic = "abort"`; refused by the host.
#define MAH_PANIC_ABORT 2

// A borrowed run of bytes: a pointer and a length.
//
// Who owns the bytes and for how long is said wherever a `RawBytes` appears. A null pointer with a
// length of zero means empty.
struct mah_RawBytes {
  // The first byte, or null when `len` is zero.
  const uint8_t *ptr;
  // The number of bytes.
  size_t len;
};

// What an `on_*` hook returns.
typedef uint32_t mah_Status;
// The hook did its work.
#define mah_Status_OK 0
// The hook failed and said why through the error sink it was given.
#define mah_Status_FAILED 1
// The plugin's code panicked; the panic was caught at the boundary.
#define mah_Status_PANICKED 2
// The hook had nothing to do: from `on_save`, the instance keeps no state (so the host
// swaps it without holding requests back). A host that predates it takes it as "no state"
// too, so it needs no new ABI version.
#define mah_Status_NOTHING 3

// What the host offers a plugin instance.
struct mah_HostApi {
  // Host data for the callbacks; the plugin passes it back untouched.
  const void *ctx;
  // Logs a UTF-8 `message` at `level` (1 error, 2 warn, 3 info, 4 debug, 5 trace), tagged by the
  // host with the plugin's name and generation. Safe to call from any thread.
  void (*callback_log)(const void *ctx, uint8_t level, struct mah_RawBytes message);
};

// A host-owned place to write bytes to (an error message, saved state).
struct mah_BytesSink {
  // Host data; the plugin passes it back untouched.
  void *ctx;
  // Appends `bytes` (owned by the plugin, borrowed for the call) to the sink. The host copies.
  void (*callback_write)(void *ctx, struct mah_RawBytes bytes);
};

// `on_init(host, settings, instance_out, error)`.
//
// - `host`: owned by the host, valid until `on_drop` of this instance has returned.
// - `settings`: the TOML text of the plugin's `[plugins.NAME]` table (may be empty); owned by the
//   host, valid during the call only.
// - `instance_out`: where the plugin writes its instance pointer on success. The instance is owned
//   by the plugin and freed by `on_drop`.
// - `error`: a host sink; on failure the plugin writes a UTF-8 message there and returns
//   [`Status::FAILED`].
typedef mah_Status (*mah_InitFn)(const struct mah_HostApi *host,
                                 struct mah_RawBytes settings,
                                 void **instance_out,
                                 const struct mah_BytesSink *error);

// One header field: a name and a raw value, borrowed from the request.
struct mah_Header {
  // The name, in the case the client sent it (a token).
  struct mah_RawBytes name;
  // The value without the whitespace around it; not necessarily UTF-8.
  struct mah_RawBytes value;
};

// A socket address in a C layout.
struct mah_RawPeer {
  // 0: none, 4: IPv4 (the first 4 bytes of `ip`), 6: IPv6.
  uint8_t family;
  // The port, in host byte order.
  uint16_t port;
  // The address, in network byte order.
  uint8_t ip[16];
};

// Where a plugin reads a request body that the host did not read whole before the call.
//
// Owned by the host, valid during `on_handle`. Reading from two threads at once is refused (the
// second read fails).
struct mah_BodySource {
  // Host data; the plugin passes it back untouched.
  void *ctx;
  // Reads up to `len` more bytes of the body into `buf` (the plugin's, `len` bytes long) and
  // returns how many, 0 at the end of the body, or -1 when the body cannot be read: the client
  // went away or sent it too slowly, the body is larger than the host accepts, or its framing
  // is broken. The host answers the client itself after a failure if the plugin does not. The
  // first read sends `100 Continue` to a client that asked for it.
  ptrdiff_t (*callback_read)(void *ctx, uint8_t *buf, size_t len);
};

// One HTTP request, borrowed from the server's buffers for the duration of a handler call.
//
// The body is complete and already decoded (a `chunked` body arrives de-chunked, its trailers
// dropped). Header names keep the case the client sent; look-ups ignore case. Build one in a
// test with [`Request::new`].
struct mah_Request {
  // The method token (UTF-8, a token by RFC 9110 §5.6.2).
  struct mah_RawBytes method;
  // The request target as sent.
  struct mah_RawBytes target;
  // The target's path, still percent-encoded.
  struct mah_RawBytes path;
  // The query, without its `?`; see `has_query`.
  struct mah_RawBytes query;
  // 1 when the target has a `?` (the query may still be empty), else 0.
  uint8_t has_query;
  // 0: HTTP/1.0, 1: HTTP/1.1.
  uint8_t version;
  // The route prefix that chose the plugin, or empty.
  struct mah_RawBytes mount;
  // The header fields in the order they arrived, `headers_len` of them.
  const struct mah_Header *headers;
  size_t headers_len;
  // The decoded body, or empty when it is read from `source`.
  struct mah_RawBytes body;
  // The client's address.
  struct mah_RawPeer peer;
  // Where the rest of the body is read from, when the host did not read it whole before the
  // call; null when `body` is all of it.
  const struct mah_BodySource *source;
};

// A response as the plugin hands it over: borrowed from the plugin for one callback.
struct mah_RawResponse {
  // The status code: a final one, 200 to 599. The host answers `500` (and logs why) for
  // anything else, informational statuses included (`100 Continue` is the host's to send).
  uint16_t status;
  // Bit 0 ([`RawResponse::CLOSE`]): close the connection after this response.
  uint32_t flags;
  // Header lines, each `name: value\r\n`, in order. The host checks these very bytes before
  // it sends them (a token name; a value of visible bytes, spaces and tabs, never CR, LF or
  // another control byte; no `Content-Length`, `Transfer-Encoding`, `Date` or `Connection`).
  struct mah_RawBytes headers;
  // The body, when `body_kind` is [`RawResponse::BODY_BYTES`]; empty otherwise.
  struct mah_RawBytes body;
  // What the body is: [`RawResponse::BODY_BYTES`], [`RawResponse::BODY_FILE`] or
  // [`RawResponse::BODY_STREAM`].
  uint32_t body_kind;
  // [`RawResponse::BODY_FILE`]: an open descriptor of a regular file, readable. Its ownership
  // passes to the host with the call, whatever the host does with the response: the host closes
  // it (after sending, or at once when it refuses the response). `-1` for other kinds.
  int32_t fd;
  // [`RawResponse::BODY_FILE`]: where the body starts in the file.
  uint64_t offset;
  // [`RawResponse::BODY_FILE`]: the body's length (the file must hold that many bytes from
  // `offset`; a file that turns out shorter ends the connection). [`RawResponse::BODY_STREAM`]:
  // the length the plugin promises to write, sent as `Content-Length`, or
  // [`RawResponse::UNKNOWN_LENGTH`] for a body sent `chunked` (or, to an HTTP/1.0 client, ended
  // by closing the connection).
  uint64_t length;
};
// The flag that asks for the connection to be closed after the response.
#define mah_RawResponse_CLOSE 1
// The body is the bytes of `body`.
#define mah_RawResponse_BODY_BYTES 0
// The body is `length` bytes of the file `fd` from `offset`, sent by the host with
// `sendfile(2)`.
#define mah_RawResponse_BODY_FILE 1
// The body is written by the plugin after `callback_respond`, with `callback_write`.
#define mah_RawResponse_BODY_STREAM 2
// A stream's `length` when the plugin does not know it.
#define mah_RawResponse_UNKNOWN_LENGTH UINT64_MAX

// A host-owned place to put the response to one request.
//
// The plugin calls `callback_respond` once. When the response's body is a stream
// ([`RawResponse::BODY_STREAM`]), it then writes the body with `callback_write` (and, when it
// wants what it wrote so far to reach the client now, `callback_flush`) before `on_handle`
// returns; the host ends the body when `on_handle` returns. Every callback must be called from the
// thread that runs `on_handle`, during the call.
struct mah_ResponseSink {
  // Host data; the plugin passes it back untouched.
  void *ctx;
  // Hands the response to the host, which copies what it needs before returning.
  // [`Status::OK`] when the host took it; [`Status::FAILED`] when it refused it (an invalid
  // response, logged by the host, which answers `500` instead) or took an answer already.
  mah_Status (*callback_respond)(void *ctx, const struct mah_RawResponse *response);
  // Appends `bytes` (the plugin's, borrowed for the call) to a streamed body. Blocks while the
  // client's socket is full, bounded by the host's write deadline. [`Status::FAILED`] when the
  // body cannot go on: the client went away or is too slow, the response has no body (`HEAD`,
  // `304`), more was written than the declared length, or the response is not a stream. The
  // plugin should stop producing then; later writes fail too.
  mah_Status (*callback_write)(void *ctx, struct mah_RawBytes bytes);
  // Sends what was written so far to the client before returning (blocking as
  // `callback_write` does). Same results.
  mah_Status (*callback_flush)(void *ctx);
};

// `on_handle(instance, request, response)`.
//
// - `request`: owned by the host, valid during the call only (every pointer inside it too).
// - `response`: a host sink; the plugin calls its `callback_respond` exactly once before it returns
//   [`Status::OK`]. The bytes it passes are the plugin's and need to live only during that call.
typedef mah_Status (*mah_HandleFn)(const void *instance,
                                   const struct mah_Request *request,
                                   const struct mah_ResponseSink *response);

// `on_drop(instance)`: frees the instance. The host never uses it again afterwards.
typedef void (*mah_DropFn)(void *instance);

// The plugin's one exported symbol, named [`DECLARATION_SYMBOL`].
//
// It lives in the plugin's image; the host reads it in place and never writes it. Strings in it
// are UTF-8 with `'static` lifetime inside the image.
struct mah_Declaration {
  // Always [`MAGIC`]. Keeps offset 0 in every ABI version.
  uint64_t magic;
  // The [`ABI_VERSION`] the plugin was built against. Keeps offset 8 in every ABI version.
  uint32_t abi_version;
  // The size of this declaration as the plugin was built, in bytes (`sizeof` it). Keeps
  // offset 12. Fields at or past it are absent (see the ABI policy above); less than
  // [`DECLARATION_MIN_SIZE`] is refused.
  uint32_t size;
  // How the plugin was built to handle a panic: [`PANIC_NONE`], [`PANIC_UNWIND`] or
  // [`PANIC_ABORT`] (refused).
  uint32_t panic;
  // The plugin's name: its crate name, which is also the stem of its file (`libNAME.so`).
  struct mah_RawBytes name;
  // The plugin's own version (its `Cargo.toml` version).
  struct mah_RawBytes version;
  // Creates the plugin instance from its settings. Required (never null).
  mah_InitFn on_init;
  // Answers one request. Called from many worker threads at once. Required (never null).
  mah_HandleFn on_handle;
  // Destroys the instance made by `on_init`. Called once, after the last `on_handle` returned.
  // Required (never null).
  mah_DropFn on_drop;
  // `on_save(instance, state)` ([`SaveFn`]): hands the instance's state to its next
  // generation. Optional (null: no state; absent when `size` ends before it).
  mah_Status (*on_save)(const void *instance, const struct mah_BytesSink *state);
  // `on_restore(instance, state, error)` ([`RestoreFn`]): takes the state the previous
  // generation saved; called after `on_init`, before `on_handle`. Optional (null: none is
  // taken; absent when `size` ends before it).
  mah_Status (*on_restore)(const void *instance,
                           struct mah_RawBytes state,
                           const struct mah_BytesSink *error);
};

#endif  /* MINI_ASYNC_HTTP_H */

#ifndef MINI_ASYNC_HTTP_DECLARATION_H
#define MINI_ASYNC_HTTP_DECLARATION_H

// The name of the one symbol a plugin exports: a `const struct mah_Declaration`.
#define MAH_DECLARATION_SYMBOL "mini_async_http_plugin"

// That symbol, declared with C linkage (in C++ a `const` object would otherwise not be exported).
// A plugin defines it: `const struct mah_Declaration mini_async_http_plugin = { ... };`
#ifdef __cplusplus
extern "C" {
#endif
extern const struct mah_Declaration mini_async_http_plugin;
#ifdef __cplusplus
}
#endif

// The layout the host was built with (plugin-api/src/abi/layout.rs asserts the same figures on
// the Rust side): a compiler that lays these types out otherwise fails here, not at run time.
#if defined(__cplusplus)
#define MAH_LAYOUT(cond, what) static_assert(cond, "mini_async_http.h layout: " what)
#define MAH_ALIGNOF(t) alignof(t)
#else
#define MAH_LAYOUT(cond, what) _Static_assert(cond, "mini_async_http.h layout: " what)
#define MAH_ALIGNOF(t) _Alignof(t)
#endif
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
MAH_LAYOUT(sizeof(struct mah_RawBytes) == 16 && MAH_ALIGNOF(struct mah_RawBytes) == 8, "RawBytes");
MAH_LAYOUT(offsetof(struct mah_RawBytes, ptr) == 0, "RawBytes.ptr");
MAH_LAYOUT(offsetof(struct mah_RawBytes, len) == 8, "RawBytes.len");
MAH_LAYOUT(sizeof(struct mah_Declaration) == 96 && MAH_ALIGNOF(struct mah_Declaration) == 8, "Declaration");
MAH_LAYOUT(offsetof(struct mah_Declaration, magic) == 0, "Declaration.magic");
MAH_LAYOUT(offsetof(struct mah_Declaration, abi_version) == 8, "Declaration.abi_version");
MAH_LAYOUT(offsetof(struct mah_Declaration, size) == 12, "Declaration.size");
MAH_LAYOUT(offsetof(struct mah_Declaration, panic) == 16, "Declaration.panic");
MAH_LAYOUT(offsetof(struct mah_Declaration, name) == 24, "Declaration.name");
MAH_LAYOUT(offsetof(struct mah_Declaration, version) == 40, "Declaration.version");
MAH_LAYOUT(offsetof(struct mah_Declaration, on_init) == 56, "Declaration.on_init");
MAH_LAYOUT(offsetof(struct mah_Declaration, on_handle) == 64, "Declaration.on_handle");
MAH_LAYOUT(offsetof(struct mah_Declaration, on_drop) == 72, "Declaration.on_drop");
MAH_LAYOUT(offsetof(struct mah_Declaration, on_save) == 80, "Declaration.on_save");
MAH_LAYOUT(offsetof(struct mah_Declaration, on_restore) == 88, "Declaration.on_restore");
MAH_LAYOUT(sizeof(struct mah_BytesSink) == 16 && MAH_ALIGNOF(struct mah_BytesSink) == 8, "BytesSink");
MAH_LAYOUT(offsetof(struct mah_BytesSink, ctx) == 0, "BytesSink.ctx");
MAH_LAYOUT(offsetof(struct mah_BytesSink, callback_write) == 8, "BytesSink.callback_write");
MAH_LAYOUT(sizeof(struct mah_ResponseSink) == 32 && MAH_ALIGNOF(struct mah_ResponseSink) == 8, "ResponseSink");
MAH_LAYOUT(offsetof(struct mah_ResponseSink, ctx) == 0, "ResponseSink.ctx");
MAH_LAYOUT(offsetof(struct mah_ResponseSink, callback_respond) == 8, "ResponseSink.callback_respond");
MAH_LAYOUT(offsetof(struct mah_ResponseSink, callback_write) == 16, "ResponseSink.callback_write");
MAH_LAYOUT(offsetof(struct mah_ResponseSink, callback_flush) == 24, "ResponseSink.callback_flush");
MAH_LAYOUT(sizeof(struct mah_RawResponse) == 64 && MAH_ALIGNOF(struct mah_RawResponse) == 8, "RawResponse");
MAH_LAYOUT(offsetof(struct mah_RawResponse, status) == 0, "RawResponse.status");
MAH_LAYOUT(offsetof(struct mah_RawResponse, flags) == 4, "RawResponse.flags");
MAH_LAYOUT(offsetof(struct mah_RawResponse, headers) == 8, "RawResponse.headers");
MAH_LAYOUT(offsetof(struct mah_RawResponse, body) == 24, "RawResponse.body");
MAH_LAYOUT(offsetof(struct mah_RawResponse, body_kind) == 40, "RawResponse.body_kind");
MAH_LAYOUT(offsetof(struct mah_RawResponse, fd) == 44, "RawResponse.fd");
MAH_LAYOUT(offsetof(struct mah_RawResponse, offset) == 48, "RawResponse.offset");
MAH_LAYOUT(offsetof(struct mah_RawResponse, length) == 56, "RawResponse.length");
MAH_LAYOUT(sizeof(struct mah_BodySource) == 16 && MAH_ALIGNOF(struct mah_BodySource) == 8, "BodySource");
MAH_LAYOUT(offsetof(struct mah_BodySource, ctx) == 0, "BodySource.ctx");
MAH_LAYOUT(offsetof(struct mah_BodySource, callback_read) == 8, "BodySource.callback_read");
MAH_LAYOUT(sizeof(struct mah_HostApi) == 16 && MAH_ALIGNOF(struct mah_HostApi) == 8, "HostApi");
MAH_LAYOUT(offsetof(struct mah_HostApi, ctx) == 0, "HostApi.ctx");
MAH_LAYOUT(offsetof(struct mah_HostApi, callback_log) == 8, "HostApi.callback_log");
MAH_LAYOUT(sizeof(struct mah_Request) == 152 && MAH_ALIGNOF(struct mah_Request) == 8, "Request");
MAH_LAYOUT(offsetof(struct mah_Request, method) == 0, "Request.method");
MAH_LAYOUT(offsetof(struct mah_Request, target) == 16, "Request.target");
MAH_LAYOUT(offsetof(struct mah_Request, path) == 32, "Request.path");
MAH_LAYOUT(offsetof(struct mah_Request, query) == 48, "Request.query");
MAH_LAYOUT(offsetof(struct mah_Request, has_query) == 64, "Request.has_query");
MAH_LAYOUT(offsetof(struct mah_Request, version) == 65, "Request.version");
MAH_LAYOUT(offsetof(struct mah_Request, mount) == 72, "Request.mount");
MAH_LAYOUT(offsetof(struct mah_Request, headers) == 88, "Request.headers");
MAH_LAYOUT(offsetof(struct mah_Request, headers_len) == 96, "Request.headers_len");
MAH_LAYOUT(offsetof(struct mah_Request, body) == 104, "Request.body");
MAH_LAYOUT(offsetof(struct mah_Request, peer) == 120, "Request.peer");
MAH_LAYOUT(offsetof(struct mah_Request, source) == 144, "Request.source");
MAH_LAYOUT(sizeof(struct mah_Header) == 32 && MAH_ALIGNOF(struct mah_Header) == 8, "Header");
MAH_LAYOUT(offsetof(struct mah_Header, name) == 0, "Header.name");
MAH_LAYOUT(offsetof(struct mah_Header, value) == 16, "Header.value");
MAH_LAYOUT(sizeof(struct mah_RawPeer) == 20 && MAH_ALIGNOF(struct mah_RawPeer) == 2, "RawPeer");
MAH_LAYOUT(offsetof(struct mah_RawPeer, family) == 0, "RawPeer.family");
MAH_LAYOUT(offsetof(struct mah_RawPeer, port) == 2, "RawPeer.port");
MAH_LAYOUT(offsetof(struct mah_RawPeer, ip) == 4, "RawPeer.ip");
MAH_LAYOUT(sizeof(mah_Status) == 4, "Status");
#endif
#undef MAH_LAYOUT
#undef MAH_ALIGNOF

#endif  /* MINI_ASYNC_HTTP_DECLARATION_H */
