//! The [`Registry`]: which plugin generation serves which URL prefix.
//!
//! Reads are lock-free and happen on every request: the route table sits in an `ArcSwap`, and each
//! mount's current generation in an `ArcSwapOption`. A request takes an `Arc` of the generation it
//! is dispatched to, so a swap never pulls code out from under it. Writes (loading, reloading,
//! unloading, new routes) are rare, serialised by a mutex, and happen off the event loop.
//!
//! Routing: every plugin `NAME` found in the folder is mounted at `/NAME`, and `[[routes]]` mount
//! plugins at other prefixes. The longest prefix wins, matched on path-segment boundaries (`/hello`
//! serves `/hello` and `/hello/x`, not `/helloworld`). `OPTIONS *` is the host's: 200 with
//! `Allow`. No route: 404. A route whose plugin is not
//! loaded: 503.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use plugin_api::{Request, Response, ResponseBuilder, abi::ABI_VERSION};

mod health;

pub use health::HealthPaths;

use crate::plugin::handover::{self, Swapped};
use crate::plugin::reaper::Reaper;
use crate::plugin::{Generation, LoadError, PluginFile};
use crate::reply::Collected;
use crate::{BodyLimits, Bulkhead, Bulkheads, Call, Handler};

/// One mounted plugin, for `check` and status pages.
pub struct PluginInfo {
    /// The plugin's name (`/NAME`).
    pub name: String,
    /// Its counters.
    pub counts: PluginCounts,
    /// Its file in the plugins folder.
    pub file: Option<PathBuf>,
    /// The generation serving it, if one loaded.
    pub generation: Option<Arc<Generation>>,
    /// The prefixes it serves.
    pub routes: Vec<String>,
    /// Left unloaded because this file crashed server processes.
    pub quarantined: bool,
}

/// A plugin file that crashed server processes, which the supervisor tells every server process
/// not to load: the plugin's name and the first hex digits of the file's SHA-256. A rebuilt file
/// has another hash and loads again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// The plugin's name.
    pub plugin: String,
    /// A prefix of the file's SHA-256, hex.
    pub sha: String,
}

/// A route from `config.toml`: `prefix` is served by the plugin `plugin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `/` or a path without a trailing slash, such as `/api/kv`.
    pub prefix: String,
    /// The plugin's name.
    pub plugin: String,
}

/// The mounted plugins and their routes. Implements [`Handler`]: hand it to the server.
pub struct Registry {
    /// The plugins folder.
    dir: PathBuf,
    /// Where each load makes the private directory of its shadow copy (`shadow.rs`): the
    /// system's temporary directory.
    shadow_parent: PathBuf,
    /// Everything that changes on load, reload, unload or reconfiguration.
    inner: Mutex<Inner>,
    /// The routes, rebuilt after every change; read by every request.
    table: ArcSwap<RouteTable>,
    /// Log a line per request (`[log] access`).
    access_log: AtomicBool,
    /// Count requests per plugin (when an admin listener shows them).
    metrics: AtomicBool,
    /// One bulkhead per plugin name, shared with the server.
    bulkheads: Arc<Bulkheads>,
    /// Where generations no longer served are torn down, when their last request has ended.
    reaper: Reaper,
    /// Set once the server is going to stop: not ready any more (`health.rs`).
    stopping: AtomicBool,
}

struct Inner {
    /// Plugins by name: those with a file in the folder, and those only named by a route.
    mounts: BTreeMap<String, Mounted>,
    /// Each plugin's `[plugins.NAME]` table, as TOML text.
    settings: BTreeMap<String, String>,
    routes: Vec<RouteSpec>,
    /// The next generation number of every name ever loaded, so that a plugin removed and added
    /// again does not repeat a number in logs and metrics.
    next_numbers: BTreeMap<String, u64>,
    /// Files not to load (from the supervisor).
    quarantine: Vec<Quarantined>,
    /// The probe paths (`[health]`).
    health: HealthPaths,
}

struct Mounted {
    mount: Arc<Mount>,
    /// The file in the folder, while there is one.
    file: Option<PathBuf>,
    /// The content last tried, and how that went: an unchanged file is not tried again, except
    /// by a scan (SIGHUP) after it failed.
    tried: Tried,
}

/// The file content a mount last tried, by its SHA-256, and how that went.
enum Tried {
    /// Nothing, or to be tried again whatever the content (its settings changed, its quarantine
    /// was lifted).
    Nothing,
    /// Loaded (or loading).
    Loaded(String),
    /// Refused: what it needed may have been missing (a folder, a file its init reads), so a
    /// scan tries the same bytes again.
    Failed(String),
}

impl Tried {
    fn sha256(&self) -> Option<&str> {
        match self {
            Tried::Nothing => None,
            Tried::Loaded(sha) | Tried::Failed(sha) => Some(sha),
        }
    }
}

/// One plugin name, and the generation serving it (none while it failed to load).
struct Mount {
    current: ArcSwapOption<Generation>,
    /// Counted while metrics are on (an admin listener is configured).
    stats: PluginStats,
    /// Set while its file is quarantined, so that its 503 says so.
    quarantined: AtomicBool,
    /// Its requests run in this bulkhead: at most its limit of workers at once.
    bulkhead: Arc<Bulkhead>,
}

impl Mount {
    fn new(bulkhead: Arc<Bulkhead>) -> Mount {
        Mount {
            current: ArcSwapOption::empty(),
            stats: PluginStats::default(),
            quarantined: AtomicBool::new(false),
            bulkhead,
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 10] = [
    100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000,
];

/// One plugin's counters, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginCounts {
    /// Requests answered.
    pub requests: u64,
    /// Responses by status class: 1xx to 5xx.
    pub by_class: [u64; 5],
    /// Handler panics and unsendable responses.
    pub failures: u64,
    /// Requests per latency bucket ([`LATENCY_BUCKETS_US`], then one for anything slower).
    pub latency: [u64; 11],
    /// Total latency, in microseconds.
    pub latency_sum_us: u64,
    /// Generations loaded.
    pub reloads_ok: u64,
    /// Loads refused.
    pub reloads_failed: u64,
}

/// One plugin's live counters.
#[derive(Default)]
struct PluginStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Responses by status class: 1xx to 5xx.
    pub by_class: [AtomicU64; 5],
    /// Requests whose handler panicked or answered something that could not be sent.
    pub failures: AtomicU64,
    /// Requests per latency bucket ([`LATENCY_BUCKETS_US`], then one for anything slower).
    pub latency: [AtomicU64; 11],
    /// Total latency, in microseconds.
    pub latency_sum_us: AtomicU64,
    /// Generations loaded, and loads refused, for this name.
    pub reloads_ok: AtomicU64,
    /// Loads refused.
    pub reloads_failed: AtomicU64,
}

impl PluginStats {
    fn snapshot(&self) -> PluginCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PluginCounts {
            requests: get(&self.requests),
            by_class: self.by_class.each_ref().map(get),
            failures: get(&self.failures),
            latency: self.latency.each_ref().map(get),
            latency_sum_us: get(&self.latency_sum_us),
            reloads_ok: get(&self.reloads_ok),
            reloads_failed: get(&self.reloads_failed),
        }
    }

    fn record(&self, status: u16, ok: bool, took: std::time::Duration) {
        let r = Ordering::Relaxed;
        self.requests.fetch_add(1, r);
        if let Some(class) = self.by_class.get(usize::from(status / 100).wrapping_sub(1)) {
            class.fetch_add(1, r);
        }
        if !ok {
            self.failures.fetch_add(1, r);
        }
        let us = took.as_micros() as u64;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(10);
        self.latency[bucket].fetch_add(1, r);
        self.latency_sum_us.fetch_add(us, r);
    }
}

#[derive(Default)]
struct RouteTable {
    /// Longest prefix first.
    routes: Vec<(String, Arc<Mount>, String)>,
    /// The host's probes, answered before any route (`health.rs`).
    health: HealthPaths,
}

impl Registry {
    /// An empty registry for the plugins in `dir`, with per-plugin settings and extra routes.
    ///
    /// # Errors
    /// The reaper's thread cannot be started.
    pub fn new(
        dir: &Path,
        settings: BTreeMap<String, String>,
        routes: Vec<RouteSpec>,
    ) -> std::io::Result<Registry> {
        let registry = Registry {
            dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()),
            shadow_parent: std::env::temp_dir(),
            inner: Mutex::new(Inner {
                mounts: BTreeMap::new(),
                settings,
                routes,
                next_numbers: BTreeMap::new(),
                quarantine: Vec::new(),
                health: HealthPaths::default(),
            }),
            table: ArcSwap::from_pointee(RouteTable::default()),
            access_log: AtomicBool::new(false),
            metrics: AtomicBool::new(false),
            bulkheads: Arc::new(Bulkheads::new()),
            reaper: Reaper::spawn()?,
            stopping: AtomicBool::new(false),
        };
        registry.rebuild(&mut registry.lock());
        Ok(registry)
    }

    /// The bulkheads of its plugins, one per name: give them to the server
    /// ([`AIOServer::with_bulkheads`](crate::AIOServer::with_bulkheads)).
    pub fn bulkheads(&self) -> &Arc<Bulkheads> {
        &self.bulkheads
    }

    /// Turns the per-plugin counters on or off.
    pub fn set_metrics(&self, on: bool) {
        self.metrics.store(on, Ordering::Relaxed);
    }

    /// Turns the access log on or off.
    pub fn set_access_log(&self, on: bool) {
        self.access_log.store(on, Ordering::Relaxed);
    }

    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every `*.so` at the top of the folder that is new or changed, or whose last load
    /// failed (what it needed may be there now: SIGHUP runs this), and unmounts plugins whose file
    /// is gone. Returns the refusals, by file.
    pub fn scan(&self) -> Vec<(PathBuf, LoadError)> {
        let mut refused = Vec::new();
        let mut present = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if plugin_name(&path).is_some() && path.is_file() {
                        present.push(path);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot read the plugins folder: {e}")
            }
        }
        present.sort();
        for path in &present {
            let tried = PluginFile::read(path)
                .inspect_err(
                    |e| tracing::warn!(file = %path.display(), "cannot load a plugin: {e}"),
                )
                .and_then(|file| self.try_file(file, true));
            if let Err(e) = tried {
                refused.push((path.clone(), e));
            }
        }
        let mut inner = self.lock();
        let gone: Vec<String> = inner
            .mounts
            .iter()
            .filter(|(_, m)| m.file.as_ref().is_some_and(|f| !present.contains(f)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.unmount(&mut inner, &name);
        }
        refused
    }

    /// Loads (or reloads) one plugin file. An unchanged file is left alone. On failure the
    /// generation that was serving keeps serving.
    ///
    /// # Errors
    /// Why the file was refused (also logged).
    pub fn load(&self, path: &Path) -> Result<(), LoadError> {
        let file = PluginFile::read(path).inspect_err(|e| {
            tracing::warn!(file = %path.display(), "cannot load a plugin: {e}");
        })?;
        self.load_file(file)
    }

    /// Like [`load`](Self::load), for a file already read.
    ///
    /// # Errors
    /// Why the file was refused (also logged).
    pub fn load_file(&self, file: PluginFile) -> Result<(), LoadError> {
        self.try_file(file, false)
    }

    /// [`load_file`](Self::load_file); `retry`: try the file again if its last load failed, even
    /// when it has not changed.
    fn try_file(&self, file: PluginFile, retry: bool) -> Result<(), LoadError> {
        let path = file.path.as_path();
        let Some(name) = plugin_name(path) else {
            return Err(LoadError::Read(
                "not a plugin file name (libNAME.so)".into(),
            ));
        };
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        // Plugin code (its constructors, `on_init`) runs without the lock, so that a slow init does
        // not stall readers of the registry (the admin pages). Loads are serialised anyway: only
        // the loader thread (and start-up, before it exists) loads.
        let (settings, number, mount) = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let settings = inner.settings.get(name).cloned().unwrap_or_default();
            let number = inner.next_numbers.get(name).copied().unwrap_or(1);
            let entry = inner
                .mounts
                .entry(name.to_owned())
                .or_insert_with(|| Mounted {
                    mount: Arc::new(Mount::new(self.bulkheads.get(name))),
                    file: None,
                    tried: Tried::Nothing,
                });
            if let Some(other) = entry.file.as_deref()
                && other != path
                && other.is_file()
            {
                // `hello.so` beside `libhello.so`: one name, two files. The first one stays.
                let e = LoadError::Duplicate(other.display().to_string());
                tracing::warn!("plugin {name}: ignored {file_name}: {e}");
                return Err(e);
            }
            let new_file = entry.file.as_deref() != Some(path);
            entry.file = Some(path.to_owned());
            let again = retry && matches!(entry.tried, Tried::Failed(_));
            if entry.tried.sha256() == Some(&file.sha256) && !again {
                if new_file {
                    self.rebuild(inner);
                }
                return Ok(());
            }
            entry.tried = Tried::Loaded(file.sha256.clone());
            let quarantined = inner
                .quarantine
                .iter()
                .any(|q| q.plugin == name && file.sha256.starts_with(&q.sha));
            let was_quarantined = entry.mount.quarantined.swap(quarantined, Ordering::Relaxed);
            if was_quarantined && !quarantined {
                tracing::info!(
                    "plugin {name}: {file_name} is a new file: the quarantine of the old one does \
                     not apply"
                );
            }
            if quarantined {
                // The supervisor logged it once; each process that skips it says so at debug.
                tracing::debug!("plugin {name}: {file_name} is quarantined: not loaded");
                entry.tried = Tried::Failed(file.sha256.clone());
                return Err(LoadError::Quarantined);
            }
            (settings, number, Arc::clone(&entry.mount))
        };
        let old = mount.current.load_full();
        // Plugin code runs here too (save, restore), without the lock.
        let swapped = Generation::load(&file, name, number, &settings, &self.shadow_parent)
            .and_then(|generation| {
                let facts = (
                    generation.sha256[..8].to_owned(),
                    generation.version.clone(),
                    generation.load_time.as_secs_f64() * 1000.0,
                );
                handover::swap(&mount.current, &mount.bulkhead, old.as_ref(), generation)
                    .map(|swapped| (swapped, facts))
                    .map_err(|refused| LoadError::HandOver(refused.to_string()))
            });
        let mut inner = self.lock();
        // The route table is rebuilt before the log line, so that whoever reads the line (an
        // operator, a test) finds the change in force.
        let result = match swapped {
            Ok((swapped, (sha, version, ms))) => {
                mount.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                inner.next_numbers.insert(name.to_owned(), number + 1);
                self.rebuild(&mut inner);
                let state = match swapped {
                    Swapped::First | Swapped::Stateless => String::new(),
                    Swapped::Exact { bytes, held, tries } => format!(
                        "; state handed over ({bytes} bytes, requests held {:.2} ms{})",
                        held.as_secs_f64() * 1000.0,
                        if tries > 1 {
                            format!(", try {tries}")
                        } else {
                            String::new()
                        }
                    ),
                };
                tracing::info!(
                    "plugin {name}: generation {number} loaded from {file_name} (sha {sha}…, version {version}, ABI {ABI_VERSION}) in {ms:.1} ms{state}",
                );
                Ok(())
            }
            Err(e) => {
                mount.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = inner.mounts.get_mut(name) {
                    m.tried = Tried::Failed(file.sha256.clone());
                }
                self.rebuild(&mut inner);
                match &old {
                    Some(g) => tracing::error!(
                        "plugin {name}: reload from {file_name} failed: {e}; generation {} keeps serving",
                        g.number
                    ),
                    None => {
                        tracing::error!("plugin {name}: refused {file_name}: {e}")
                    }
                }
                Err(e)
            }
        };
        drop(inner);
        if let (Ok(()), Some(old)) = (&result, old) {
            // Torn down by the reaper once its last request has ended, not here or in a worker.
            self.reaper.retire(old);
        }
        result
    }

    /// Replaces the list of quarantined files: a generation loaded from one of them is unloaded at
    /// once (its requests in flight finish), and a plugin no longer listed is loaded again by the
    /// next [`scan`](Self::scan).
    pub fn set_quarantine(&self, mut list: Vec<Quarantined>) {
        // An empty prefix would match every build of the plugin.
        list.retain(|q| !q.sha.is_empty());
        let mut dropped = Vec::new();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            for (name, m) in inner.mounts.iter_mut() {
                let current = m.mount.current.load_full();
                let hit = |sha: &str| {
                    list.iter()
                        .any(|q| q.plugin == *name && sha.starts_with(&q.sha))
                };
                if let Some(g) = current.filter(|g| hit(&g.sha256)) {
                    m.mount.quarantined.store(true, Ordering::Relaxed);
                    dropped.extend(m.mount.current.swap(None));
                    tracing::info!(
                        "plugin {name}: generation {} unloaded: quarantined",
                        g.number
                    );
                } else if m.mount.quarantined.load(Ordering::Relaxed)
                    && !m.tried.sha256().is_some_and(hit)
                {
                    m.mount.quarantined.store(false, Ordering::Relaxed);
                    m.tried = Tried::Nothing;
                }
            }
            inner.quarantine = list;
        }
        for g in dropped {
            self.reaper.retire(g);
        }
    }

    /// Unmounts the plugin of a file that was removed from the folder.
    pub fn remove(&self, path: &Path) {
        let mut inner = self.lock();
        let name = inner
            .mounts
            .iter()
            .find(|(_, m)| m.file.as_deref() == Some(path))
            .map(|(name, _)| name.clone());
        if let Some(name) = name {
            self.unmount(&mut inner, &name);
        }
    }

    /// The files mounted now, with the hash of their content as last tried.
    pub fn known_files(&self) -> std::collections::HashMap<PathBuf, String> {
        self.lock()
            .mounts
            .values()
            .filter_map(|m| Some((m.file.clone()?, m.tried.sha256()?.to_owned())))
            .collect()
    }

    /// Replaces the per-plugin settings and the routes; plugins whose settings changed are
    /// reloaded with the new ones (the old generation keeps serving if that fails), now when
    /// `load`, else by the next [`scan`](Self::scan).
    pub fn reconfigure(
        &self,
        settings: BTreeMap<String, String>,
        routes: Vec<RouteSpec>,
        load: bool,
    ) {
        let changed: Vec<PathBuf> = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let old = std::mem::replace(&mut inner.settings, settings);
            let mut changed = Vec::new();
            for (name, m) in inner.mounts.iter_mut() {
                if old.get(name) != inner.settings.get(name) {
                    m.tried = Tried::Nothing;
                    changed.extend(m.file.clone());
                }
            }
            inner.routes = routes;
            self.rebuild(inner);
            changed
        };
        if load {
            for path in changed {
                let _ = self.load(&path);
            }
        }
    }

    /// What is mounted: one entry per plugin name, loaded or not, by name.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let table = self.table.load();
        self.lock()
            .mounts
            .iter()
            .map(|(name, m)| PluginInfo {
                name: name.clone(),
                counts: m.mount.stats.snapshot(),
                file: m.file.clone(),
                generation: m.mount.current.load_full(),
                quarantined: m.mount.quarantined.load(Ordering::Relaxed),
                routes: table
                    .routes
                    .iter()
                    .filter(|(_, _, plugin)| plugin == name)
                    .map(|(prefix, _, _)| prefix.clone())
                    .collect(),
            })
            .collect()
    }

    /// Configured routes whose plugin has no file in the folder (they answer 503).
    pub fn dangling_routes(&self) -> Vec<RouteSpec> {
        let inner = self.lock();
        inner
            .routes
            .iter()
            .filter(|r| !inner.mounts.contains_key(&r.plugin))
            .cloned()
            .collect()
    }

    /// Unmounts `name`: its file is gone. Requests in flight finish on its generation.
    fn unmount(&self, inner: &mut Inner, name: &str) {
        let Some(m) = inner.mounts.remove(name) else {
            return;
        };
        let dropped = m.mount.current.swap(None);
        self.rebuild(inner);
        match dropped {
            Some(g) => {
                tracing::info!(
                    "plugin {name}: unmounted (generation {} is dropped when its last request ends)",
                    g.number
                );
                self.reaper.retire(g);
            }
            None => tracing::info!("plugin {name}: unmounted"),
        }
    }

    /// Rebuilds the route table from the mounts and the configured routes.
    fn rebuild(&self, inner: &mut Inner) {
        let mut routes = Vec::new();
        for (name, m) in &inner.mounts {
            if m.file.is_some() {
                routes.push((format!("/{name}"), Arc::clone(&m.mount), name.clone()));
            }
        }
        for spec in &inner.routes {
            let mount = match inner.mounts.get(&spec.plugin) {
                Some(m) => Arc::clone(&m.mount),
                // Named by a route but not (yet) in the folder: 503 until it is.
                None => Arc::new(Mount::new(self.bulkheads.get(&spec.plugin))),
            };
            routes.retain(|(prefix, _, _)| *prefix != spec.prefix);
            routes.push((spec.prefix.clone(), mount, spec.plugin.clone()));
        }
        routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self.table.store(Arc::new(RouteTable {
            routes,
            health: inner.health.clone(),
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Handler for Registry {
    /// Outside a server (no bulkheads): a reload's hand-over cannot hold these calls back, so
    /// state a plugin changes in them during a reload may be missed.
    fn handle(&self, request: &Request<'_>) -> Response {
        let mut collected = Collected::default();
        self.serve(request, &mut Call::ungated(&mut collected));
        collected
            .finish()
            .unwrap_or_else(crate::worker::internal_error)
    }

    fn serve(&self, request: &Request<'_>, call: &mut Call<'_>) {
        if !self.access_log.load(Ordering::Relaxed) {
            self.dispatch(request, call, &mut None);
            return;
        }
        let started = Instant::now();
        let mut served = None;
        let Some((status, bytes)) = self.dispatch(request, call, &mut served) else {
            // Not run now (it waits for a place): logged when it runs.
            return;
        };
        let status = if call.timed_out() { 504 } else { status };
        access_line(request, (status, bytes), started.elapsed(), served);
    }

    fn body_limits(&self, path: &str, default: BodyLimits) -> BodyLimits {
        self.at_bulkhead(path, |b| b.map_or(default, |b| b.body_limits(default)))
    }

    fn compress(&self, path: &str) -> bool {
        self.at_bulkhead(path, |b| b.is_none_or(Bulkhead::compresses))
    }
}

impl Registry {
    /// `f` of the bulkhead (the host-side policy) of the plugin mounted at `path`, if one is.
    fn at_bulkhead<R>(&self, path: &str, f: impl FnOnce(Option<&Bulkhead>) -> R) -> R {
        let table = self.table.load();
        let found = table.routes.iter().find(|(p, _, _)| matches(p, path));
        f(found.map(|(_, mount, _)| &*mount.bulkhead))
    }

    /// Routes a request and answers it, in its plugin's bulkhead; `served` learns which
    /// generation answered. Returns the status and body size sent, `None` if it did not run.
    fn dispatch(
        &self,
        request: &Request<'_>,
        call: &mut Call<'_>,
        served: &mut Option<(String, u64)>,
    ) -> Option<(u16, u64)> {
        if request.target() == "*" {
            // RFC 9110 §9.3.7: `OPTIONS *` asks about the server, not a resource: the host answers.
            // (The parser refuses `*` with any other method.)
            call.respond(server_options().view());
            return call.answered();
        }
        let table = self.table.load();
        if let Some(answer) = self.probe(&table, request) {
            call.respond(answer.view());
            return call.answered();
        }
        let path = request.path();
        let Some((prefix, mount, name)) = table.routes.iter().find(|(p, _, _)| matches(p, path))
        else {
            call.respond(Response::text(404, "no plugin is mounted at this path\n").view());
            return call.answered();
        };
        // The place first, then the generation: a hand-over (`handover.rs`) pauses the bulkhead
        // and waits for the places taken, so a call that has one runs on the generation it finds
        // here, whose state has not been saved yet.
        let _permit = call.enter(&mount.bulkhead)?;
        // A guard, not a clone: it keeps the generation alive for the call without touching the
        // reference count that every worker shares.
        let current = mount.current.load();
        let Some(generation) = current.as_ref() else {
            tracing::debug!(plugin = %name, path, "plugin unavailable");
            if mount.quarantined.load(Ordering::Relaxed) {
                let body = format!(
                    "plugin {name} is quarantined: it crashed its server process; a new build of \
                     its file or SIGHUP lifts it\n"
                );
                call.respond(Response::text(503, body).view());
            } else {
                let body = "the plugin for this path is not available\n";
                call.respond(Response::text(503, body).view());
            }
            return call.answered();
        };
        if self.access_log.load(Ordering::Relaxed) {
            *served = Some((name.clone(), generation.number));
        }
        let prefix = if prefix == "/" { "" } else { prefix };
        let request = request.with_mount(prefix);
        if !self.metrics.load(Ordering::Relaxed) {
            generation.handle(&request, call);
            return call.answered();
        }
        let started = Instant::now();
        let ok = generation.handle(&request, call);
        let answer = call.answered();
        mount
            .stats
            .record(answer.map_or(0, |a| a.0), ok, started.elapsed());
        answer
    }
}

/// One access-log line: Common Log Format, then the duration in seconds, the plugin and its
/// generation (`-` when no plugin answered).
fn access_line(
    request: &Request<'_>,
    (status, bytes): (u16, u64),
    took: std::time::Duration,
    served: Option<(String, u64)>,
) {
    let peer = request.peer().map_or("-".into(), |p| p.ip().to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (plugin, generation) = served.map_or(("-".into(), "-".into()), |(n, g)| (n, g.to_string()));
    tracing::info!(
        target: "access",
        "{peer} - - [{}] \"{} {} {}\" {status} {bytes} {:.6} {plugin} {generation}",
        plugin_api::clf_time(now),
        request.method(),
        request.target(),
        request.version(),
        took.as_secs_f64(),
    );
}

/// The plugin name a file stands for: `libNAME.so` or `NAME.so` → `NAME`; `None` for other files.
pub fn plugin_name(path: &Path) -> Option<&str> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".so")?;
    let name = stem.strip_prefix("lib").unwrap_or(stem);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some(name)
}

/// Whether route `prefix` serves `path`, on path-segment boundaries.
fn matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The answer to `OPTIONS *`: the methods the host passes to its plugins.
fn server_options() -> Response {
    ResponseBuilder::new(200)
        .header("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        .build()
        .expect("a constant response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_file_names() {
        assert_eq!(plugin_name(Path::new("/x/libhello.so")), Some("hello"));
        assert_eq!(plugin_name(Path::new("kv_store.so")), Some("kv_store"));
        assert_eq!(plugin_name(Path::new("libhello.so.1")), None);
        assert_eq!(plugin_name(Path::new("hello.txt")), None);
        assert_eq!(plugin_name(Path::new("lib.so")), None);
        assert_eq!(plugin_name(Path::new("lib a.so")), None);
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(matches("/hello", "/hello"));
        assert!(matches("/hello", "/hello/"));
        assert!(matches("/hello", "/hello/x/y"));
        assert!(!matches("/hello", "/helloworld"));
        assert!(!matches("/hello", "/"));
        assert!(matches("/", "/anything"));
        assert!(matches("/api/kv", "/api/kv/key"));
    }
}
