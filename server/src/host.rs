//! The host: `config.toml` → a [`Registry`] of plugins → an [`AIOServer`] that serves it, and hot
//! reload of both the plugins and the configuration.
//!
//! Reloads follow the seed's control path. A change (from the folder watcher, or `SIGHUP`) is put
//! in a job queue, and `Reload` goes through the server's control channel to wake the event loop;
//! the loop, which must not load libraries, forwards it to the host's loader thread, which runs
//! the queued jobs. A new generation replaces the old one only once it has loaded and initialised;
//! a configuration replaces the old one only once it parsed.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::admin::Snapshot;
use crate::config::{Config, Overrides};
use crate::plugin::{Change, Quarantined, Registry, WatchSpec, watch};
use crate::{AIOServer, ServerHandle};

/// A configured server and its plugins.
pub struct Host {
    server: AIOServer,
    reloader: Arc<Reloader>,
}

/// Controls a running host from any thread: reload, shut down.
#[derive(Clone)]
pub struct HostHandle {
    server: ServerHandle,
    reloader: Arc<Reloader>,
}

/// What the loader thread works from.
struct Reloader {
    registry: Arc<Registry>,
    /// The configuration file to re-read, if the host has one.
    config_path: Option<PathBuf>,
    /// Flags that override the file, re-applied on every reload.
    overrides: Overrides,
    /// The configuration in force.
    config: Mutex<Config>,
    /// Changes waiting for the loader thread.
    jobs: Mutex<VecDeque<Job>>,
    server: ServerHandle,
}

enum Job {
    Change(Change),
    /// `SIGHUP`: re-read the configuration and rescan the plugins folder.
    Everything,
    /// The supervisor's new list of files not to load.
    Quarantine(Vec<Quarantined>),
}

impl Host {
    /// Loads every plugin in the configured folder, but the `quarantined` files, and prepares the
    /// server (not yet listening). `config_path` is the file to watch and re-read; `overrides` are
    /// re-applied to it.
    ///
    /// # Errors
    /// The shadow directory or the loader thread cannot be created.
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        overrides: Overrides,
        quarantined: Vec<Quarantined>,
    ) -> io::Result<Host> {
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
        registry.set_access_log(config.access_log);
        registry.set_health(config.health.clone());
        registry.set_metrics(config.admin_listen.is_some());
        registry.set_quarantine(quarantined);
        registry
            .bulkheads()
            .set_policies(config.plugin_limits.clone());
        registry.scan();
        let (wake, woken) = mpsc::channel::<u64>();
        let handler = Arc::clone(&registry);
        let server = AIOServer::with_handler(config.workers, &config.listen, handler)
            .with_limits(config.limits.clone())
            .with_bulkheads(Arc::clone(registry.bulkheads()))
            .on_reload(move |tag| {
                // Never blocks: the loader thread drains the channel.
                let _ = wake.send(tag);
            });
        let reloader = Arc::new(Reloader {
            registry,
            config_path,
            overrides,
            config: Mutex::new(config),
            jobs: Mutex::new(VecDeque::new()),
            server: server.handle(),
        });
        let loader = Arc::clone(&reloader);
        thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                for _tag in woken {
                    loader.run_jobs();
                }
            })?;
        Ok(Host { server, reloader })
    }

    /// Serves on `listener`, a socket that already listens (the supervisor's), instead of binding
    /// `listen`.
    pub fn with_listener(mut self, listener: std::net::TcpListener) -> Host {
        self.server = self.server.with_listener(listener);
        self
    }

    /// A handle to reload and shut down from another thread.
    pub fn handle(&self) -> HostHandle {
        HostHandle {
            server: self.server.handle(),
            reloader: Arc::clone(&self.reloader),
        }
    }

    /// The plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.reloader.registry
    }

    /// Serves until shutdown, watching the plugins folder and the configuration file once the
    /// server listens.
    ///
    /// # Errors
    /// As [`AIOServer::start`].
    pub fn run(&self) -> io::Result<()> {
        let reloader = &self.reloader;
        let spec = WatchSpec {
            plugins_dir: reloader.registry.dir().to_owned(),
            config: reloader.config_path.clone(),
            quiet: reloader.lock_config().reload_debounce,
            known: reloader.registry.known_files(),
        };
        // Watch before listening, so that no change made once the server answers is missed.
        let jobs = Arc::clone(reloader);
        let watcher = match watch(spec, move |change| jobs.submit(Job::Change(change))) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("cannot watch for changes, hot reload is off: {e}");
                None
            }
        };
        // Changes seen before the server ran are queued: run them once it does.
        let flush = Arc::clone(reloader);
        thread::Builder::new()
            .name("reload-flush".into())
            .spawn(move || {
                if flush.server.ready().is_ok() {
                    let _ = flush.server.reload(0);
                }
            })?;
        let result = self.server.start();
        drop(watcher);
        result
    }
}

impl HostHandle {
    /// Blocks until the server listens; returns its address.
    ///
    /// # Errors
    /// As [`ServerHandle::ready`].
    pub fn ready(&self) -> io::Result<std::net::SocketAddr> {
        self.server.ready()
    }

    /// Re-reads the configuration and rescans the plugins folder (what `SIGHUP` does).
    pub fn reload_everything(&self) {
        self.reloader.submit(Job::Everything);
    }

    /// Starts a graceful shutdown.
    pub fn begin_shutdown(&self) {
        self.reloader.registry.set_stopping();
        self.server.begin_shutdown();
    }

    /// A shutdown is coming (the supervisor got SIGTERM and waits `[limits] drain_delay_ms`):
    /// the service port's readiness probe answers `503` from now on, while everything serves.
    pub fn stop_soon(&self) {
        self.reloader.registry.set_stopping();
    }

    /// Replaces the list of files not to load (see [`Registry::set_quarantine`]); the loader
    /// thread applies it, in turn with the loads.
    pub fn set_quarantine(&self, files: Vec<Quarantined>) {
        self.reloader.submit(Job::Quarantine(files));
    }

    /// How this process is doing: its counters, plugins and the plugin code running now.
    pub fn snapshot(&self) -> Snapshot {
        let drain = {
            let config = self.reloader.lock_config();
            (config.limits.drain_timeout, config.limits.drain_delay)
        };
        Snapshot::of(
            &self.reloader.registry,
            self.server.stats().unwrap_or_default(),
            drain,
        )
    }
}

impl Reloader {
    /// Queues a job and wakes the event loop, which hands it to the loader thread.
    fn submit(&self, job: Job) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(job);
        if let Err(e) = self.server.reload(0) {
            tracing::debug!("reload not sent: {e}");
        }
    }

    fn lock_config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run_jobs(&self) {
        loop {
            let job = self
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match job {
                None => return,
                Some(Job::Change(Change::Plugin(file))) => {
                    let _ = self.registry.load_file(file);
                }
                Some(Job::Change(Change::PluginRemoved(path))) => self.registry.remove(&path),
                Some(Job::Change(Change::Config)) => self.reload_config(Load::Now),
                Some(Job::Everything) => {
                    // The scan loads what the new settings changed, once, with the rest.
                    self.reload_config(Load::ByScan);
                    self.registry.scan();
                }
                Some(Job::Quarantine(files)) => self.registry.set_quarantine(files),
            }
        }
    }

    /// Applies a new configuration, or keeps the old one if the new one is refused.
    fn reload_config(&self, load: Load) {
        let Some(path) = &self.config_path else {
            return;
        };
        let mut new = match Config::load(path, true) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(
                    "config reload failed: {e}; the previous configuration keeps serving"
                );
                return;
            }
        };
        self.overrides.apply(&mut new);
        let mut config = self.lock_config();
        let at_start = (
            (&new.listen, new.workers, &new.plugins_dir, new.processes),
            new.reuse_port,
            (&new.admin_listen, &new.log_level, new.reload_debounce),
            (new.quarantine_after, new.quarantine_window),
        );
        let running = (
            (
                &config.listen,
                config.workers,
                &config.plugins_dir,
                config.processes,
            ),
            config.reuse_port,
            (
                &config.admin_listen,
                &config.log_level,
                config.reload_debounce,
            ),
            (config.quarantine_after, config.quarantine_window),
        );
        if at_start != running {
            tracing::warn!(
                "listen, reuse_port, processes, workers, plugins_dir, [admin], [quarantine], \
                 log.level and reload_debounce_ms take effect at the next restart"
            );
            new.processes = config.processes;
            new.quarantine_after = config.quarantine_after;
            new.quarantine_window = config.quarantine_window;
            new.listen.clone_from(&config.listen);
            new.reuse_port = config.reuse_port;
            new.workers = config.workers;
            new.plugins_dir.clone_from(&config.plugins_dir);
            new.admin_listen.clone_from(&config.admin_listen);
            new.log_level.clone_from(&config.log_level);
            new.reload_debounce = config.reload_debounce;
        }
        if new.limits != config.limits
            && let Err(e) = self.server.set_limits(new.limits.clone())
        {
            tracing::warn!("limits not applied: {e}");
        }
        if new.plugin_limits != config.plugin_limits {
            self.registry
                .bulkheads()
                .set_policies(new.plugin_limits.clone());
        }
        self.registry.set_access_log(new.access_log);
        self.registry.set_health(new.health.clone());
        self.registry.reconfigure(
            new.plugin_settings.clone(),
            new.routes.clone(),
            load == Load::Now,
        );
        tracing::info!(file = %path.display(), "configuration reloaded");
        *config = new;
    }
}

/// When plugins whose settings changed are loaded again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// By the configuration reload itself.
    Now,
    /// By the scan that follows it (SIGHUP), which loads every plugin once.
    ByScan,
}
