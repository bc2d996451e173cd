//! The [`Plugin`] trait and the glue that [`export_plugin!`](crate::export_plugin) expands to.
//!
//! The glue is where the C ABI of [`abi`](crate::abi) meets safe Rust: it deserialises the
//! settings, catches every panic before it could cross the boundary, and passes the response back
//! through the host's sink. Plugin authors only implement the trait.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::DeserializeOwned;

use crate::abi::{
    ABI_VERSION, BytesSink, Declaration, HostApi, MAGIC, RawBytes, ResponseSink, Status,
};
use crate::{Request, Response, log};

/// An error a plugin returns from [`Plugin::new`], [`Plugin::save`] or [`Plugin::restore`];
/// anything that converts into it works with `?`, and so does a `String` or `&str` via `.into()`.
pub type InitError = Box<dyn std::error::Error + Send + Sync>;

/// A request handler that lives in a plugin.
///
/// One instance serves every worker thread at once, hence `Send + Sync`: keep shared state in
/// atomics or a `Mutex`. Export the type with [`export_plugin!`](crate::export_plugin).
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The plugin's settings: its `[plugins.NAME]` table in `config.toml`, deserialised with serde.
    /// Use [`NoConfig`] for a plugin without settings.
    type Config: DeserializeOwned;

    /// Creates the instance. Called once per loaded generation, before any request.
    ///
    /// # Errors
    /// Whatever makes the plugin unusable; the host logs it and does not mount this generation.
    fn new(config: Self::Config) -> Result<Self, InitError>;

    /// Answers one request.
    ///
    /// A panic here is caught at the boundary; the client gets `500 Internal Server Error`.
    fn handle(&self, request: &Request) -> Response;

    /// The state to hand to the next generation when the plugin is reloaded: `Ok(None)` (the
    /// default) when the plugin keeps none, `Ok(Some(bytes))` when it does, even if that state
    /// is empty now.
    ///
    /// The hand-over is exact for a plugin that keeps state: while it is reloaded, the host holds
    /// the plugin's new requests back (for a few milliseconds at most) until its requests in
    /// flight have finished, then calls `save` on the old instance, [`restore`](Self::restore)
    /// on the new one, and swaps. (It calls `save` once before that too, while requests run, to
    /// learn whether there is state at all; that result is dropped.) So nothing an answered request changed is lost, and nothing is
    /// handed out twice. A plugin that keeps no state is swapped at once, its requests in flight
    /// finishing on the old code.
    ///
    /// # Errors
    /// The state cannot be saved: the host logs it, keeps this generation serving and drops the
    /// new one (the next change of the file, or SIGHUP, tries again).
    fn save(&self) -> Result<Option<Vec<u8>>, InitError> {
        Ok(None)
    }

    /// Takes the state that the previous generation's [`save`](Self::save) returned (not called
    /// when it returned `None`, or empty bytes). Runs after [`new`](Self::new), before the first
    /// request.
    ///
    /// # Errors
    /// State this generation cannot read: the host logs it, drops this generation and keeps the
    /// previous one serving with its state.
    fn restore(&self, state: &[u8]) -> Result<(), InitError> {
        let _ = state;
        Ok(())
    }
}

/// The settings of a plugin that takes none: an empty (or absent) table. Any key is refused.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Builds the declaration for plugin type `P`. Used by [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub const fn declaration<P: Plugin>(
    name: &'static str,
    version: &'static str,
    panic: u32,
) -> Declaration {
    Declaration {
        magic: MAGIC,
        abi_version: ABI_VERSION,
        size: std::mem::size_of::<Declaration>() as u32,
        panic,
        name: RawBytes::new(name.as_bytes()),
        version: RawBytes::new(version.as_bytes()),
        on_init: on_init::<P>,
        on_handle: on_handle::<P>,
        on_drop: on_drop::<P>,
        on_save: Some(on_save::<P>),
        on_restore: Some(on_restore::<P>),
    }
}

unsafe extern "C" fn on_init<P: Plugin>(
    host: *const HostApi,
    settings: RawBytes,
    instance_out: *mut *mut c_void,
    error: *const BytesSink,
) -> Status {
    let result = catch_unwind(|| {
        // SAFETY: the host keeps `host` valid until this instance is dropped (ABI contract).
        if let Some(host) = unsafe { host.as_ref() } {
            log::install(host);
        }
        // SAFETY: the host lends `settings` for this call (ABI contract).
        let text = unsafe { settings.as_slice() };
        let text = std::str::from_utf8(text).map_err(|e| format!("settings are not UTF-8: {e}"))?;
        let config: P::Config = toml::from_str(text)
            .map_err(|e| format!("bad settings: {}", crate::settings::describe(text, &e).1))?;
        P::new(config).map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(plugin)) => {
            let instance = Box::into_raw(Box::new(plugin));
            // SAFETY: the host passes a valid place for the instance pointer (ABI contract).
            unsafe { instance_out.write(instance.cast()) };
            Status::OK
        }
        Ok(Err(message)) => {
            // SAFETY: the host passes a valid sink (ABI contract).
            unsafe { write_sink(error, message.as_bytes()) };
            Status::FAILED
        }
        Err(panic) => {
            let message = format!("panicked in new: {}", panic_message(&*panic));
            // SAFETY: as above.
            unsafe { write_sink(error, message.as_bytes()) };
            Status::PANICKED
        }
    }
}

unsafe extern "C" fn on_handle<P: Plugin>(
    instance: *const c_void,
    request: *const Request<'_>,
    sink: *const ResponseSink,
) -> Status {
    // SAFETY: the host lends `request` for this call (ABI contract).
    let request = unsafe { &*request };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` came from `on_init::<P>` and lives until `on_drop` (ABI contract).
        let plugin = unsafe { &*instance.cast::<P>() };
        plugin.handle(request)
    }));
    match result {
        // SAFETY: the host passes a valid sink for the call (ABI contract).
        Ok(response) => unsafe { crate::body::send(response, sink, request.body_reader()) },
        Err(panic) => {
            log::error(&format!("handler panicked: {}", panic_message(&*panic)));
            Status::PANICKED
        }
    }
}

unsafe extern "C" fn on_drop<P: Plugin>(instance: *mut c_void) {
    // Dropping user state may panic; it must not unwind into the host.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` came from `Box::into_raw` in `on_init::<P>`, and the host calls
        // `on_drop` once, after the last `on_handle`.
        drop(unsafe { Box::from_raw(instance.cast::<P>()) });
    }));
    // Whatever still runs in this library (a thread-local destructor) no longer logs to the host.
    log::uninstall();
}

unsafe extern "C" fn on_save<P: Plugin>(
    instance: *const c_void,
    state: *const BytesSink,
) -> Status {
    // SAFETY: as in `on_handle`.
    let plugin = unsafe { &*instance.cast::<P>() };
    match catch_unwind(AssertUnwindSafe(|| plugin.save())) {
        Ok(Ok(Some(bytes))) => {
            // SAFETY: the host passes a valid sink (ABI contract).
            unsafe { write_sink(state, &bytes) };
            Status::OK
        }
        Ok(Ok(None)) => Status::NOTHING,
        Ok(Err(e)) => {
            // `on_save` has no error sink: the reason goes to the host's log.
            crate::error!("saving the state failed: {e}");
            Status::FAILED
        }
        Err(_) => Status::PANICKED,
    }
}

unsafe extern "C" fn on_restore<P: Plugin>(
    instance: *const c_void,
    state: RawBytes,
    error: *const BytesSink,
) -> Status {
    // SAFETY: as in `on_handle`; the host lends `state` for this call.
    let (plugin, state) = unsafe { (&*instance.cast::<P>(), state.as_slice()) };
    match catch_unwind(AssertUnwindSafe(|| plugin.restore(state))) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(e)) => {
            // SAFETY: the host passes a valid sink (ABI contract).
            unsafe { write_sink(error, e.to_string().as_bytes()) };
            Status::FAILED
        }
        Err(_) => Status::PANICKED,
    }
}

/// Writes `bytes` into a host sink.
///
/// # Safety
/// `sink` must be null or point to a valid [`BytesSink`].
unsafe fn write_sink(sink: *const BytesSink, bytes: &[u8]) {
    // SAFETY: the caller promises `sink` is null or valid.
    if let Some(sink) = unsafe { sink.as_ref() } {
        // SAFETY: the host's callback copies the bytes during the call (ABI contract).
        unsafe { (sink.callback_write)(sink.ctx, RawBytes::new(bytes)) };
    }
}

/// The message of a caught panic, for a log line.
#[doc(hidden)]
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Exports a type that implements [`Plugin`] as this crate's plugin.
///
/// Put it once in the plugin crate's `lib.rs`, whose `Cargo.toml` says
/// `crate-type = ["cdylib", "rlib"]`. The plugin's name is its crate name, which is also the stem of
/// the library file (`libhello.so` → `hello`), and its version is the crate version.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static mini_async_http_plugin: $crate::abi::Declaration =
            $crate::__private::declaration::<$plugin>(
                env!("CARGO_CRATE_NAME"),
                env!("CARGO_PKG_VERSION"),
                // Expanded in the plugin's crate, so this is how the plugin itself was built.
                if cfg!(panic = "unwind") {
                    $crate::abi::PANIC_UNWIND
                } else {
                    $crate::abi::PANIC_ABORT
                },
            );
    };
}

/// Exports a plain function `fn(&Request) -> Response` as this crate's plugin, for a handler with
/// no settings and no state.
///
/// ```
/// use plugin_api::{Request, Response, ResponseBuilder};
///
/// fn hello(_request: &Request) -> Response {
///     ResponseBuilder::empty_200().body("Hello").build().unwrap()
/// }
///
/// plugin_api::export_handler!(hello);
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        #[doc(hidden)]
        pub struct __ExportedHandler;

        impl $crate::Plugin for __ExportedHandler {
            type Config = $crate::NoConfig;

            fn new(_: $crate::NoConfig) -> ::std::result::Result<Self, $crate::InitError> {
                Ok(__ExportedHandler)
            }

            fn handle(&self, request: &$crate::Request) -> $crate::Response {
                $handler(request)
            }
        }

        $crate::export_plugin!(__ExportedHandler);
    };
}
