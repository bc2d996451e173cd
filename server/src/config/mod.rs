//! `config.toml`: the host's configuration, read with serde and toml.
//!
//! Every field has a default, so an empty or missing file works. Unknown keys and bad values are
//! refused with the file, the line and the key. Command-line flags override the file (`main.rs`).
//!
//! ```toml
//! listen = "127.0.0.1:7878"   # address to serve on
//! processes = 1               # server processes under the supervisor, or "auto" (one per CPU)
//! workers = 2                 # worker threads in each server process
//! plugins_dir = "plugins"     # folder of *.so plugins
//! reuse_port = false          # SO_REUSEPORT: several hosts may listen on one port
//! proxy_protocol = false      # connections come from balancers that send a PROXY header first
//! forwarded_for = false       # take the client from X-Forwarded-For of a trusted proxy
//! trusted_proxies = ["127.0.0.0/8", "::1"]   # who may do either (the default: loopback)
//!
//! [quarantine]                # a plugin file that crashes its process this often stays unloaded
//! crashes = 3                 # 0: never quarantine
//! window_ms = 60000
//!
//! [limits]                    # see `Limits`; times in milliseconds
//! max_body_bytes = 8388608
//! header_timeout_ms = 15000
//! handler_timeout_ms = 30000  # past it the client gets 504 and the worker is replaced
//!
//! [limits.plugins.reports]    # the host's limits for one plugin (not the plugin's settings)
//! handler_timeout_ms = 120000
//! max_concurrency = 4         # workers it may hold at once (default: workers - 1)
//! queue_timeout_ms = 1000     # wait for a place, then 503
//! compress = false            # never compress its responses
//!
//! [log]
//! level = "info"              # when RUST_LOG is not set
//! access = true               # one line per request
//!
//! [admin]                     # off by default: /metrics, /status, and a status page
//! listen = "127.0.0.1:9090"   # loopback only, unless allow_remote = true
//!
//! [compression]               # gzip or brotli for text, JSON, JS, SVG … (on by default)
//! enabled = true
//! min_bytes = 1024            # smaller bodies go as they are
//!
//! [health]                    # probes on the service port, answered by the host (off by default)
//! alive = "/healthz"          # 200 while the process serves
//! ready = "/readyz"           # 200 when every plugin is loaded and no drain is coming, else 503
//!
//! [[routes]]                  # more mounts; every plugin NAME is also at /NAME
//! prefix = "/api/kv"
//! plugin = "kv"
//!
//! [plugins.greeter]           # handed to the plugin's init
//! greeting = "Hi"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plugin_api::__private::line_of;
use serde::Deserialize;
use toml::Spanned;

use crate::http::proxy::Trusted;
use crate::plugin::{HealthPaths, RouteSpec};
use crate::{BulkheadPolicy, Limits};

mod limits;

use limits::RawLimits;

/// The host's configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The address to listen on.
    pub listen: String,
    /// Server processes the supervisor runs.
    pub processes: usize,
    /// Worker threads in each server process.
    pub workers: usize,
    /// The plugins folder.
    pub plugins_dir: PathBuf,
    /// Bounds and timeouts.
    pub limits: Limits,
    /// Each plugin's limits (`[limits.plugins.NAME]`): the host's policy for it, apart from the
    /// plugin's own settings.
    pub plugin_limits: BTreeMap<String, BulkheadPolicy>,
    /// Extra routes.
    pub routes: Vec<RouteSpec>,
    /// Each plugin's `[plugins.NAME]` table, as TOML text for its init.
    pub plugin_settings: BTreeMap<String, String>,
    /// How long a changed file must be quiet before it is reloaded, when its writer keeps it open;
    /// a file closed by its writer or renamed into place is reloaded at once.
    pub reload_debounce: Duration,
    /// The log level when `RUST_LOG` is not set: error, warn, info, debug or trace.
    pub log_level: String,
    /// The admin listener's address (`[admin] listen`), if it is on.
    pub admin_listen: Option<String>,
    /// The probes on the service port (`[health]`).
    pub health: HealthPaths,
    /// Listen with `SO_REUSEPORT` (`reuse_port`), so that several hosts share the port.
    pub reuse_port: bool,
    /// Log one line per request (target `access`, Common Log Format plus duration, plugin and
    /// generation).
    pub access_log: bool,
    /// Crashes within `quarantine_window` that quarantine a plugin file; 0 turns it off.
    pub quarantine_after: u32,
    /// See `quarantine_after`.
    pub quarantine_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7878".into(),
            processes: 1,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            plugins_dir: PathBuf::from("plugins"),
            limits: Limits::default(),
            plugin_limits: BTreeMap::new(),
            routes: Vec::new(),
            plugin_settings: BTreeMap::new(),
            reload_debounce: Duration::from_millis(150),
            log_level: "info".into(),
            admin_listen: None,
            health: HealthPaths::default(),
            reuse_port: false,
            access_log: false,
            quarantine_after: 3,
            quarantine_window: Duration::from_secs(60),
        }
    }
}

/// Command-line values that override the file, kept to be re-applied when the file is reloaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--plugins`
    pub plugins_dir: Option<PathBuf>,
    /// `--workers`
    pub workers: Option<usize>,
    /// `--processes`
    pub processes: Option<usize>,
}

impl Overrides {
    /// Puts the overrides into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = &self.listen {
            config.listen.clone_from(listen);
        }
        if let Some(dir) = &self.plugins_dir {
            config.plugins_dir.clone_from(dir);
        }
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        if let Some(processes) = self.processes {
            config.processes = processes;
        }
    }
}

/// A configuration file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The line (from 1), when the problem has one.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `path`. A missing file gives the defaults unless `required`.
    ///
    /// # Errors
    /// The file cannot be read (or is missing and required), or [`Config::parse`] refuses it.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(e) => Err(ConfigError {
                file: path.to_owned(),
                line: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Parses and checks the text of a configuration file named `file`.
    ///
    /// # Errors
    /// TOML syntax, unknown keys, values of the wrong type or out of range; each with its line.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            file: file.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, message) = plugin_api::__private::describe_toml_error(text, &e);
            ConfigError {
                file: file.to_owned(),
                line,
                message,
            }
        })?;
        let mut config = Config::default();
        if let Some(listen) = raw.listen {
            let resolves = listen
                .get_ref()
                .to_socket_addrs()
                .is_ok_and(|mut a| a.next().is_some());
            if !resolves {
                return Err(at(
                    Some(listen.span()),
                    format!(
                        "listen: {:?} is not an address (expected HOST:PORT)",
                        listen.get_ref()
                    ),
                ));
            }
            config.listen = listen.into_inner();
        }
        if let Some(workers) = raw.workers {
            config.workers = in_range(&workers, 1, 1024, "workers")
                .map_err(|m| at(Some(workers.span()), m))? as usize;
        }
        if let Some(processes) = raw.processes {
            let text = match processes.get_ref() {
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            config.processes = parse_processes(&text).map_err(|m| at(Some(processes.span()), m))?;
        }
        if let Some(q) = raw.quarantine {
            if let Some(n) = q.crashes {
                config.quarantine_after = in_range(&n, 0, 1000, "quarantine.crashes")
                    .map_err(|m| at(Some(n.span()), m))?
                    as u32;
            }
            if let Some(ms) = q.window_ms {
                config.quarantine_window = Duration::from_millis(
                    in_range(&ms, 1, 1 << 40, "quarantine.window_ms")
                        .map_err(|m| at(Some(ms.span()), m))?,
                );
            }
        }
        if let Some(dir) = raw.plugins_dir {
            config.plugins_dir = PathBuf::from(dir.into_inner());
        }
        if let Some(ms) = raw.reload_debounce_ms {
            config.reload_debounce = Duration::from_millis(
                in_range(&ms, 0, 60_000, "reload_debounce_ms")
                    .map_err(|m| at(Some(ms.span()), m))?,
            );
        }
        if let Some(log) = raw.log {
            if let Some(level) = log.level {
                let known = ["error", "warn", "info", "debug", "trace"];
                if !known.contains(&level.get_ref().as_str()) {
                    return Err(at(
                        Some(level.span()),
                        format!(
                            "log.level: {:?} is not one of {}",
                            level.get_ref(),
                            known.join(", ")
                        ),
                    ));
                }
                config.log_level = level.into_inner();
            }
            config.access_log = log.access.unwrap_or(false);
        }
        if let Some(admin) = raw.admin {
            let addrs: Vec<std::net::SocketAddr> = admin
                .listen
                .get_ref()
                .to_socket_addrs()
                .map(Iterator::collect)
                .unwrap_or_default();
            if addrs.is_empty() {
                return Err(at(
                    Some(admin.listen.span()),
                    format!(
                        "admin.listen: {:?} is not an address (expected HOST:PORT)",
                        admin.listen.get_ref()
                    ),
                ));
            }
            if !admin.allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
                return Err(at(
                    Some(admin.listen.span()),
                    format!(
                        "admin.listen: {:?} is not a loopback address; the admin pages show internals, \
                         so set admin.allow_remote = true to expose them",
                        admin.listen.get_ref()
                    ),
                ));
            }
            config.admin_listen = Some(admin.listen.into_inner());
        }
        config.reuse_port = raw.reuse_port.unwrap_or(false);
        if let Some(health) = raw.health {
            let path = |p: Option<Spanned<String>>, key: &str| match p {
                Some(p)
                    if !p.get_ref().starts_with('/') || p.get_ref().contains(['?', '#', ' ']) =>
                {
                    Err(at(
                        Some(p.span()),
                        format!(
                            "health.{key}: {:?} must be a path starting with '/'",
                            p.get_ref()
                        ),
                    ))
                }
                p => Ok(p.map(Spanned::into_inner)),
            };
            config.health = HealthPaths {
                alive: path(health.alive, "alive")?,
                ready: path(health.ready, "ready")?,
            };
        }
        if let Some(limits) = raw.limits {
            (config.limits, config.plugin_limits) = limits
                .apply(Limits::default())
                .map_err(|(span, m)| at(span, m))?;
        }
        if let Some(c) = raw.compression {
            let compression = &mut config.limits.compression;
            compression.enabled = c.enabled.unwrap_or(true);
            if let Some(n) = c.min_bytes {
                compression.min_bytes = usize::try_from(*n.get_ref())
                    .ok()
                    .filter(|&n| n <= 1 << 30)
                    .ok_or_else(|| {
                        at(
                            Some(n.span()),
                            format!(
                                "compression.min_bytes: {} is not 0 to 1073741824",
                                n.get_ref()
                            ),
                        )
                    })?;
            }
        }
        config.limits.proxy.protocol = raw.proxy_protocol.unwrap_or(false);
        config.limits.proxy.forwarded_for = raw.forwarded_for.unwrap_or(false);
        if let Some(trusted) = raw.trusted_proxies {
            config.limits.proxy.trusted = Trusted::parse(trusted.get_ref())
                .map_err(|e| at(Some(trusted.span()), format!("trusted_proxies: {e}")))?;
        }
        for route in raw.routes {
            let prefix = route.prefix.get_ref();
            let valid = prefix.starts_with('/') && !prefix.contains(['?', '#', ' ']);
            if !valid {
                return Err(at(
                    Some(route.prefix.span()),
                    format!("routes.prefix: {prefix:?} must be a path starting with '/'"),
                ));
            }
            let plugin = route.plugin.get_ref();
            if crate::plugin::plugin_name(Path::new(&format!("lib{plugin}.so"))) != Some(plugin) {
                return Err(at(
                    Some(route.plugin.span()),
                    format!("routes.plugin: {plugin:?} is not a plugin name"),
                ));
            }
            let trimmed = prefix.trim_end_matches('/');
            config.routes.push(RouteSpec {
                prefix: if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.into()
                },
                plugin: plugin.clone(),
            });
        }
        for (name, table) in raw.plugins {
            let text =
                toml::to_string(&table).map_err(|e| at(None, format!("plugins.{name}: {e}")))?;
            config.plugin_settings.insert(name, text);
        }
        Ok(config)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    processes: Option<Spanned<toml::Value>>,
    workers: Option<Spanned<i64>>,
    plugins_dir: Option<Spanned<String>>,
    reload_debounce_ms: Option<Spanned<i64>>,
    reuse_port: Option<bool>,
    proxy_protocol: Option<bool>,
    forwarded_for: Option<bool>,
    trusted_proxies: Option<Spanned<Vec<String>>>,
    limits: Option<RawLimits>,
    log: Option<RawLog>,
    admin: Option<RawAdmin>,
    health: Option<RawHealth>,
    compression: Option<RawCompression>,
    quarantine: Option<RawQuarantine>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    plugins: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
    #[serde(default)]
    allow_remote: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    enabled: Option<bool>,
    min_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    alive: Option<Spanned<String>>,
    ready: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuarantine {
    crashes: Option<Spanned<i64>>,
    window_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    access: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    plugin: Spanned<String>,
}

/// `processes`: a number from 1 to 256, or `auto` for one per CPU.
///
/// # Errors
/// Anything else, in words that name the key.
pub fn parse_processes(text: &str) -> Result<usize, String> {
    if text == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match text.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err(format!(
            "processes: {text:?} is not a number from 1 to 256 or \"auto\""
        )),
    }
}

pub(crate) fn in_range(value: &Spanned<i64>, min: i64, max: i64, key: &str) -> Result<u64, String> {
    let v = *value.get_ref();
    if v < min || v > max {
        return Err(format!("{key}: {v} is out of range ({min} to {max})"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn processes_and_quarantine_are_read_and_checked() {
        let c = parse("processes = 2\n[quarantine]\ncrashes = 5\nwindow_ms = 1000\n").unwrap();
        assert_eq!(c.processes, 2);
        assert_eq!(
            (c.quarantine_after, c.quarantine_window),
            (5, Duration::from_secs(1))
        );
        assert!(parse("processes = \"auto\"").unwrap().processes >= 1);
        let e = parse("workers = 1\nprocesses = 0\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("processes: \"0\" is not a number"),
            "{e}"
        );
        assert!(parse("processes = \"many\"").is_err());
        assert!(parse("processes = 1.5").is_err());
        let e = parse("[quarantine]\ncrashes = -1\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(parse("[quarantine]\nwindow = 5\n").is_err(), "unknown key");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(
            Config::load(Path::new("/nonexistent/config.toml"), false).unwrap(),
            Config::default()
        );
        assert!(Config::load(Path::new("/nonexistent/config.toml"), true).is_err());
    }

    #[test]
    fn reads_every_section() {
        let c = parse(
            r#"
listen = "127.0.0.1:0"
workers = 3
plugins_dir = "/srv/plugins"
reload_debounce_ms = 50

[limits]
max_body_bytes = 10
header_timeout_ms = 1500

[[routes]]
prefix = "/api/kv/"
plugin = "kv"

[[routes]]
prefix = "/"
plugin = "hello"

[plugins.greeter]
greeting = "Hi"
count = 2
"#,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.workers, 3);
        assert_eq!(c.plugins_dir, PathBuf::from("/srv/plugins"));
        assert_eq!(c.reload_debounce, Duration::from_millis(50));
        assert_eq!(c.limits.max_body_bytes, 10);
        assert_eq!(c.limits.header_timeout, Duration::from_millis(1500));
        assert_eq!(c.limits.max_connections, Limits::default().max_connections);
        assert_eq!(
            c.routes,
            [
                RouteSpec {
                    prefix: "/api/kv".into(),
                    plugin: "kv".into()
                },
                RouteSpec {
                    prefix: "/".into(),
                    plugin: "hello".into()
                },
            ]
        );
        let greeter: toml::Table = toml::from_str(&c.plugin_settings["greeter"]).unwrap();
        assert_eq!(greeter["greeting"].as_str(), Some("Hi"));
        assert_eq!(greeter["count"].as_integer(), Some(2));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let e = parse("workers = 2\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("lisen"), "{e}");
        assert!(e.to_string().starts_with("config.toml:2: "), "{e}");

        let e = parse("\n\nworkers = 0\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("workers"), "{e}");

        let e = parse("workers = \"two\"\n").unwrap_err();
        assert_eq!(e.line, Some(1));

        let e = parse("[limits]\nmax_body_bytes = -1\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("limits.max_body_bytes"), "{e}");

        let e = parse("[limits]\nmax_bodies = 1\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("max_bodies"), "{e}");

        let e = parse("proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"x\"]\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("trusted_proxies: \"x\""), "{e}");
        let c = parse("proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n").unwrap();
        assert!(c.limits.proxy.protocol && !c.limits.proxy.forwarded_for);
        assert!(c.limits.proxy.trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(
            !c.limits
                .proxy
                .trusted
                .contains("127.0.0.1".parse().unwrap())
        );

        let e = parse("[health]\nready = \"readyz\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("health.ready"), "{e}");
        let c = parse("[health]\nready = \"/ready\"\n[limits]\ndrain_delay_ms = 250\n").unwrap();
        assert_eq!(c.health.ready.as_deref(), Some("/ready"));
        assert_eq!(c.health.alive, None);
        assert_eq!(c.limits.drain_delay, Duration::from_millis(250));

        let e = parse("[[routes]]\nprefix = \"api\"\nplugin = \"kv\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("routes.prefix"), "{e}");

        let e = parse("listen = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("listen"), "{e}");

        let e = parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("log.level"), "{e}");

        let e = parse("[admin]\nlisten = \"0.0.0.0:9090\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("allow_remote"), "{e}");
        let c = parse("[admin]\nlisten = \"0.0.0.0:9090\"\nallow_remote = true\n").unwrap();
        assert_eq!(c.admin_listen.as_deref(), Some("0.0.0.0:9090"));

        let e = parse("workers = [\n").unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
