//! Logging from a plugin through the host, so that one subscriber sees every line, tagged with the
//! plugin's name and generation.
//!
//! The macros ([`info!`](crate::info) and friends) format like `format!` and hand the text to the
//! host callback the plugin was given at init. Outside a host (in a plugin's own unit tests) the
//! lines go to standard error.

use std::sync::RwLock;

use crate::abi::{HostApi, RawBytes};

/// The host's callbacks, installed by `on_init`. Each loaded copy of a plugin has its own.
static HOST: RwLock<Option<HostLog>> = RwLock::new(None);

#[derive(Clone, Copy)]
struct HostLog {
    ctx: usize,
    callback: unsafe extern "C" fn(ctx: *const std::ffi::c_void, level: u8, message: RawBytes),
}

/// A log level, as the ABI numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something an operator must act on.
    Error = 1,
    /// Degraded but working.
    Warn = 2,
    /// Lifecycle.
    Info = 3,
    /// Per request.
    Debug = 4,
    /// Finer than per request.
    Trace = 5,
}

pub(crate) fn install(host: &HostApi) {
    let log = HostLog {
        ctx: host.ctx as usize,
        callback: host.callback_log,
    };
    *HOST.write().unwrap_or_else(|e| e.into_inner()) = Some(log);
}

/// Forgets the host's callbacks: after `on_drop`, lines go to standard error.
pub(crate) fn uninstall() {
    *HOST.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Sends one line to the host. Used by the macros; call them instead.
#[doc(hidden)]
pub fn write(level: Level, message: &str) {
    let host = *HOST.read().unwrap_or_else(|e| e.into_inner());
    match host {
        // SAFETY: the host keeps `ctx` valid and the callback callable from any thread while the
        // plugin is loaded (ABI contract); the message is borrowed for the call only.
        Some(h) => unsafe {
            (h.callback)(
                h.ctx as *const _,
                level as u8,
                RawBytes::new(message.as_bytes()),
            )
        },
        None => eprintln!("[{level:?}] {message}"),
    }
}

pub(crate) fn error(message: &str) {
    write(Level::Error, message);
}

/// Logs at error level: `plugin_api::error!("disk full: {}", path)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__private::log($crate::Level::Error, &format!($($arg)+)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__private::log($crate::Level::Warn, &format!($($arg)+)) };
}

/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__private::log($crate::Level::Info, &format!($($arg)+)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__private::log($crate::Level::Debug, &format!($($arg)+)) };
}

/// Logs at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__private::log($crate::Level::Trace, &format!($($arg)+)) };
}
