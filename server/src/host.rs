//! The host: `config.toml` → a [`Registry`] of plugins → an [`AIOServer`] that serves it.
//!
//! Reloads follow the seed's control path: whoever wants one (a signal, the folder watcher) sends
//! `Reload` through the server's control channel; the event loop, which must not load libraries,
//! forwards it to the host's loader thread, which rescans the plugins folder. A new generation is
//! swapped in only once it has loaded and initialised.

use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use crate::config::Config;
use crate::plugin::Registry;
use crate::{AIOServer, ServerHandle};

/// A configured server and its plugins.
pub struct Host {
    server: AIOServer,
    registry: Arc<Registry>,
}

impl Host {
    /// Loads every plugin in the configured folder and prepares the server (not yet listening).
    ///
    /// # Errors
    /// The shadow directory or the loader thread cannot be created.
    pub fn new(config: &Config) -> io::Result<Host> {
        let registry = Arc::new(Registry::new(
            &config.plugins_dir,
            config.plugin_settings.clone(),
            config.routes.clone(),
        )?);
        if !config.plugins_dir.is_dir() {
            tracing::warn!(
                dir = %config.plugins_dir.display(),
                "the plugins folder does not exist: no plugins loaded"
            );
        }
        registry.scan();
        let (reloads, requests) = mpsc::channel::<u64>();
        let loader = Arc::clone(&registry);
        thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                for _tag in requests {
                    loader.scan();
                }
            })?;
        let handler = Arc::clone(&registry);
        let server = AIOServer::with_handler(config.workers, &config.listen, handler)
            .with_limits(config.limits.clone())
            .on_reload(move |tag| {
                // Never blocks: the loader thread drains the channel.
                let _ = reloads.send(tag);
            });
        Ok(Host { server, registry })
    }

    /// A handle to wait for readiness, reload and shut down.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until shutdown.
    ///
    /// # Errors
    /// As [`AIOServer::start`].
    pub fn run(&self) -> io::Result<()> {
        self.server.start()
    }
}
