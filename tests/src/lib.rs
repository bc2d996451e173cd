//! The test harness: a raw HTTP/1.1 client ([`Client`]) that shows the bytes on the wire, and a
//! [`HostProcess`] that builds the host binary and the plugins once, starts the binary on an
//! ephemeral port in a fresh temporary folder, waits until it listens, and kills it on drop.
//!
//! The tests themselves are in `tests/it/`, one module per feature.

mod client;
mod host;

pub use client::{Client, Reply, get};
pub use host::{
    HostProcess, abort_build, artifact, build, chaos_rebuild, flip_variants, workspace_root,
};
