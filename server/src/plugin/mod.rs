//! Plugins: loading `.so` files into generations, mounting them at URL prefixes, and routing
//! requests to them.
//!
//! - `declaration.rs`: reading a plugin's declaration by the ABI policy (size, panic strategy).
//! - `loader.rs`: one file → one [`Generation`] (shadow copy, `dlopen`, checks, init).
//! - `registry.rs`: the [`Registry`] of mounted plugins and their routes; it is the
//!   [`Handler`](crate::Handler) the host serves with.
//! - `shadow.rs`: the private, short-lived copy a plugin file is loaded from.
//! - `reaper.rs`: where generations no longer served are torn down, off the registry's lock and
//!   off the requests' path.
//! - `watch.rs`: the folder watcher that reports changed plugin files and configuration.
//!
//! The C ABI itself is in `plugin-api` (`plugin_api::abi`).

mod declaration;
mod handover;
mod loader;
mod pinned;
mod reaper;
mod registry;
mod shadow;
mod watch;

pub use loader::{Generation, PluginFile};
pub use pinned::{count as pinned_images, epoch as pinned_epoch};
pub use registry::{
    HealthPaths, LATENCY_BUCKETS_US, PluginCounts, PluginInfo, Quarantined, Registry, RouteSpec,
    plugin_name,
};
pub use shadow::sweep as sweep_shadow_copies;
pub use watch::{Change, WatchSpec, Watcher, watch};

/// Why a plugin file was refused. The registry logs it with the plugin's name and file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The state could not be handed over to the new generation (`handover.rs`).
    #[error("{0}")]
    HandOver(String),
    /// Another file in the folder already provides this plugin name.
    #[error("{0} already provides this plugin")]
    Duplicate(String),
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(String),
    /// The file is not an ELF shared library.
    #[error("not a shared library (no 64-bit little-endian ELF shared object header)")]
    NotALibrary,
    /// The file is an ELF library whose segments are not all there: still being written?
    #[error("truncated shared library ({0} bytes): still being written?")]
    Truncated(usize),
    /// The shadow copy could not be written.
    #[error("cannot write the shadow copy {0}")]
    Shadow(String),
    /// `dlopen` refused the file.
    #[error("dlopen failed: {0}")]
    Dlopen(String),
    /// The library does not export the declaration symbol.
    #[error(
        "no `mini_async_http_plugin` symbol: the library was not built with plugin_api::export_plugin!"
    )]
    NoDeclaration,
    /// The declaration symbol does not start with the magic number.
    #[error("bad magic {0:#018x}: `mini_async_http_plugin` is not a plugin declaration")]
    BadMagic(u64),
    /// The plugin was built against another ABI version.
    #[error(
        "plugin ABI version {plugin}, but this host speaks ABI version {host}: rebuild the plugin \
         against this host's plugin-api"
    )]
    AbiMismatch {
        /// The version the plugin declares.
        plugin: u32,
        /// The version this host speaks.
        host: u32,
    },
    /// The declaration is smaller than this ABI version's required part.
    #[error(
        "the plugin's declaration is {size} bytes, but ABI version {} needs at least {min}: \
         rebuild the plugin against this host's plugin-api",
        plugin_api::abi::ABI_VERSION
    )]
    DeclarationTooSmall {
        /// The size the plugin declares.
        size: u32,
        /// The least this host reads.
        min: u32,
    },
    /// A required hook (`on_init`, `on_handle`, `on_drop`) is null.
    #[error("the plugin's declaration leaves a required hook (on_init, on_handle, on_drop) null")]
    MissingHook,
    /// The plugin was built with `panic = "abort"`: its first panic would abort the host.
    #[error(
        "the plugin was built with panic = \"abort\", but this host needs panic = \"unwind\" \
         (its first panic would abort the server): remove panic = \"abort\" from the plugin's \
         Cargo profile"
    )]
    PanicAbort,
    /// The declaration names a panic strategy this host does not know.
    #[error("unknown panic strategy {0} (this host knows 0 none, 1 unwind, 2 abort)")]
    UnknownPanic(u32),
    /// The declared name is not the one the file name gives.
    #[error("the plugin declares the name {declared:?}, which its file name does not match")]
    NameMismatch {
        /// The name in the declaration.
        declared: String,
    },
    /// `on_init` failed; the plugin's message.
    #[error("init failed: {0}")]
    Init(String),
    /// This very file crashed server processes: it stays unloaded until it changes or SIGHUP.
    #[error("quarantined: this file crashed its server process; a new file or SIGHUP lifts it")]
    Quarantined,
}
