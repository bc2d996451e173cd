//! The admin listener (`[admin] listen` in `config.toml`, off by default): `/metrics` in the
//! Prometheus text format, `/status` as JSON, and `/` as a small HTML page that shows the
//! processes, the plugins, their generations and counters at a glance.
//!
//! The supervisor serves it, with one worker of its own, so it shares nothing with the hot path.
//! Each server process describes itself in a [`Snapshot`] (sent over the supervisor's channel);
//! the supervisor adds them up, with what processes that ended had counted, into an [`Overview`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use plugin_api::{Request, Response, ResponseBuilder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ServerStats;
use crate::crash::Running;
use crate::plugin::{LATENCY_BUCKETS_US, PluginCounts, Registry};

/// One server process, described by itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its connection counters.
    pub server: ServerStats,
    /// Its plugins, by name.
    pub plugins: Vec<PluginRow>,
    /// Its threads inside plugin code now (the 32 longest).
    pub running: Vec<Running>,
    /// Its drain timeout in force, in milliseconds (it can be reloaded).
    pub drain_timeout_ms: u64,
}

/// One plugin, as a process or the whole server sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginRow {
    /// `/NAME`.
    pub name: String,
    /// The version of the generation serving, if one is.
    pub version: Option<String>,
    /// The generation serving, if one is.
    pub generation: Option<u64>,
    /// The SHA-256 of the file it was loaded from, hex.
    pub sha256: Option<String>,
    /// The file in the plugins folder.
    pub file: Option<String>,
    /// The prefixes it serves.
    pub routes: Vec<String>,
    /// Its counters.
    pub counts: PluginCounts,
    /// Server processes it crashed (filled in by the supervisor).
    pub crashes: u64,
    /// Left unloaded for crashing its processes.
    pub quarantined: bool,
}

impl Snapshot {
    /// What `registry` and the server's counters say now, with the drain timeout in force.
    pub fn of(registry: &Registry, server: ServerStats, drain_timeout: Duration) -> Snapshot {
        let plugins = registry
            .plugins()
            .into_iter()
            .map(|p| {
                let g = p.generation.as_ref();
                PluginRow {
                    version: g.map(|g| g.version.clone()),
                    generation: g.map(|g| g.number),
                    sha256: g.map(|g| g.sha256.clone()),
                    file: p.file.as_ref().map(|f| f.display().to_string()),
                    routes: p.routes,
                    counts: p.counts,
                    crashes: 0,
                    quarantined: p.quarantined,
                    name: p.name,
                }
            })
            .collect();
        Snapshot {
            server,
            plugins,
            running: crate::crash::running(32),
            drain_timeout_ms: drain_timeout.as_millis() as u64,
        }
    }
}

/// The whole server: every process, and the figures of them all added up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Connection counters, summed over the processes (counts of ended processes included).
    pub server: ServerStats,
    /// Plugins, by name, with counters summed the same way.
    pub plugins: Vec<PluginRow>,
    /// One row per server process.
    pub processes: Vec<ProcessRow>,
}

/// One server process, as the supervisor sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRow {
    /// Its number, from 1; a replacement keeps the number.
    pub number: usize,
    /// Its process id, while one runs.
    pub pid: Option<u32>,
    /// `starting`, `serving`, `restarting` or `stopping`.
    pub state: String,
    /// When the running one started, in seconds since the Unix epoch.
    pub started: u64,
    /// How many times it was replaced.
    pub restarts: u64,
    /// Its open connections now.
    pub open_connections: usize,
    /// Its threads inside plugin code now, longest first.
    pub running: Vec<Running>,
}

/// Counters of the processes that ended, kept so that totals survive a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    server: ServerStats,
    plugins: BTreeMap<String, PluginCounts>,
}

impl Totals {
    /// Adds the last snapshot of a process that ended. Gauges (open connections, queue depth)
    /// are not kept: they ended with it.
    pub fn retire(&mut self, last: &Snapshot) {
        self.server.accepted_total += last.server.accepted_total;
        self.server.refused_busy_total += last.server.refused_busy_total;
        for p in &last.plugins {
            add(self.plugins.entry(p.name.clone()).or_default(), &p.counts);
        }
    }
}

impl Overview {
    /// The sum of `retired` and the `live` snapshots, with the processes' rows and the plugins'
    /// crash counts and quarantine from the supervisor.
    pub fn merge<'a>(
        retired: &Totals,
        live: impl IntoIterator<Item = &'a Snapshot>,
        processes: Vec<ProcessRow>,
        crashes: &BTreeMap<String, (u64, bool)>,
    ) -> Overview {
        let mut server = retired.server;
        let mut plugins: BTreeMap<String, PluginRow> = BTreeMap::new();
        for (name, counts) in &retired.plugins {
            let row = plugins.entry(name.clone()).or_default();
            row.name.clone_from(name);
            add(&mut row.counts, counts);
        }
        for snapshot in live {
            server.open_connections += snapshot.server.open_connections;
            server.accepted_total += snapshot.server.accepted_total;
            server.queue_depth += snapshot.server.queue_depth;
            server.refused_busy_total += snapshot.server.refused_busy_total;
            for p in &snapshot.plugins {
                let row = plugins.entry(p.name.clone()).or_default();
                let counts = std::mem::take(&mut row.counts);
                if row.generation.is_none() {
                    // The first live process that serves it tells what is loaded.
                    *row = PluginRow {
                        counts: PluginCounts::default(),
                        ..p.clone()
                    };
                }
                row.counts = counts;
                add(&mut row.counts, &p.counts);
            }
        }
        for (name, &(count, quarantined)) in crashes {
            let row = plugins.entry(name.clone()).or_default();
            row.name.clone_from(name);
            row.crashes = count;
            // A file of it is quarantined; it shows so while no process serves another file.
            row.quarantined = quarantined && row.generation.is_none();
        }
        Overview {
            server,
            plugins: plugins.into_values().collect(),
            processes,
        }
    }
}

fn add(sum: &mut PluginCounts, more: &PluginCounts) {
    sum.requests += more.requests;
    for (s, m) in sum.by_class.iter_mut().zip(more.by_class) {
        *s += m;
    }
    sum.failures += more.failures;
    for (s, m) in sum.latency.iter_mut().zip(more.latency) {
        *s += m;
    }
    sum.latency_sum_us += more.latency_sum_us;
    sum.reloads_ok += more.reloads_ok;
    sum.reloads_failed += more.reloads_failed;
}

/// The admin handler; `overview` says how the server is doing now, or `None` when the supervisor
/// cannot tell in time (the answer is then 503, never made-up zeros that a scraper would take
/// for a counter reset).
pub fn handler(
    overview: impl Fn() -> Option<Overview> + Send + Sync + 'static,
) -> impl Fn(&Request<'_>) -> Response + Send + Sync + 'static {
    move |request| {
        let (content_type, render): (&str, fn(&Overview) -> String) = match request.path() {
            "/metrics" => ("text/plain; version=0.0.4", metrics),
            "/status" => ("application/json", |o| status(o).to_string()),
            "/" => ("text/html; charset=utf-8", page),
            _ => ("text/plain", |_| String::new()),
        };
        let (code, body) = match overview() {
            Some(o) => {
                let body = render(&o);
                (if body.is_empty() { 404 } else { 200 }, body)
            }
            None => (503, "the supervisor did not answer in time\n".to_owned()),
        };
        ResponseBuilder::new(code)
            .content_type(content_type)
            .header("cache-control", "no-store")
            .body(body)
            .build()
            .unwrap_or_else(|_| crate::worker::internal_error())
    }
}

/// The Prometheus text exposition format (version 0.0.4).
fn metrics(o: &Overview) -> String {
    let mut out = String::new();
    let stats = &o.server;
    let server: [(&str, &str, &str, u64); 4] = [
        (
            "open_connections",
            "gauge",
            "Connections open now.",
            stats.open_connections as u64,
        ),
        (
            "accepted_connections_total",
            "counter",
            "Connections accepted.",
            stats.accepted_total,
        ),
        (
            "queue_depth",
            "gauge",
            "Connections waiting for a worker.",
            stats.queue_depth as u64,
        ),
        (
            "refused_busy_total",
            "counter",
            "Connections refused for a full queue.",
            stats.refused_busy_total,
        ),
    ];
    for (name, kind, help, value) in server {
        let _ = writeln!(
            out,
            "# HELP mah_{name} {help}\n# TYPE mah_{name} {kind}\nmah_{name} {value}"
        );
    }
    let per_process: [(&str, &str, &str); 2] = [
        (
            "process_restarts_total",
            "counter",
            "Times the server process was replaced.",
        ),
        (
            "process_open_connections",
            "gauge",
            "Connections open in the server process now.",
        ),
    ];
    for (name, kind, help) in per_process {
        let _ = writeln!(out, "# HELP mah_{name} {help}\n# TYPE mah_{name} {kind}");
        for p in &o.processes {
            let value = match name {
                "process_restarts_total" => p.restarts,
                _ => p.open_connections as u64,
            };
            let _ = writeln!(out, "mah_{name}{{process=\"{}\"}} {value}", p.number);
        }
    }
    let series: [(&str, &str, &str); 8] = [
        (
            "plugin_requests_total",
            "counter",
            "Requests answered by the plugin.",
        ),
        (
            "plugin_responses_total",
            "counter",
            "Responses by status class.",
        ),
        (
            "plugin_panics_total",
            "counter",
            "Handler panics and unsendable responses (answered 500).",
        ),
        (
            "plugin_request_duration_seconds",
            "histogram",
            "Time in the plugin's handler.",
        ),
        (
            "plugin_generation",
            "gauge",
            "The generation serving (0: none loaded).",
        ),
        (
            "plugin_reloads_total",
            "counter",
            "Loads of the plugin's file, by result.",
        ),
        (
            "plugin_crashes_total",
            "counter",
            "Server processes the plugin crashed.",
        ),
        (
            "plugin_quarantined",
            "gauge",
            "1 while the plugin is left unloaded for crashing.",
        ),
    ];
    for (name, kind, help) in series {
        let _ = writeln!(out, "# HELP mah_{name} {help}\n# TYPE mah_{name} {kind}");
        for p in &o.plugins {
            let c = &p.counts;
            let l = format!("plugin=\"{}\"", p.name);
            match name {
                "plugin_requests_total" => {
                    let _ = writeln!(out, "mah_{name}{{{l}}} {}", c.requests);
                }
                "plugin_responses_total" => {
                    for (i, n) in c.by_class.iter().enumerate() {
                        let _ = writeln!(out, "mah_{name}{{{l},class=\"{}xx\"}} {n}", i + 1);
                    }
                }
                "plugin_panics_total" => {
                    let _ = writeln!(out, "mah_{name}{{{l}}} {}", c.failures);
                }
                "plugin_request_duration_seconds" => {
                    let mut cumulative = 0;
                    for (i, n) in c.latency.iter().enumerate() {
                        cumulative += n;
                        let le = LATENCY_BUCKETS_US
                            .get(i)
                            .map_or("+Inf".into(), |us| format!("{}", *us as f64 / 1e6));
                        let _ = writeln!(out, "mah_{name}_bucket{{{l},le=\"{le}\"}} {cumulative}");
                    }
                    let sum = c.latency_sum_us as f64 / 1e6;
                    let _ = writeln!(
                        out,
                        "mah_{name}_sum{{{l}}} {sum}\nmah_{name}_count{{{l}}} {cumulative}"
                    );
                }
                "plugin_generation" => {
                    let _ = writeln!(out, "mah_{name}{{{l}}} {}", p.generation.unwrap_or(0));
                }
                "plugin_reloads_total" => {
                    let _ = writeln!(out, "mah_{name}{{{l},result=\"ok\"}} {}", c.reloads_ok);
                    let _ = writeln!(
                        out,
                        "mah_{name}{{{l},result=\"failed\"}} {}",
                        c.reloads_failed
                    );
                }
                "plugin_crashes_total" => {
                    let _ = writeln!(out, "mah_{name}{{{l}}} {}", p.crashes);
                }
                _ => {
                    let _ = writeln!(out, "mah_{name}{{{l}}} {}", u8::from(p.quarantined));
                }
            }
        }
    }
    out
}

fn status(o: &Overview) -> serde_json::Value {
    let plugins: Vec<_> = o
        .plugins
        .iter()
        .map(|p| {
            let c = &p.counts;
            json!({
                "name": p.name,
                "loaded": p.generation.is_some(),
                "version": p.version,
                "generation": p.generation,
                "sha256": p.sha256,
                "file": p.file,
                "routes": p.routes,
                "requests": c.requests,
                "responses": {
                    "1xx": c.by_class[0], "2xx": c.by_class[1], "3xx": c.by_class[2],
                    "4xx": c.by_class[3], "5xx": c.by_class[4],
                },
                "panics": c.failures,
                "reloads_ok": c.reloads_ok,
                "reloads_failed": c.reloads_failed,
                "crashes": p.crashes,
                "quarantined": p.quarantined,
            })
        })
        .collect();
    json!({
        "server": {
            "open_connections": o.server.open_connections,
            "accepted_total": o.server.accepted_total,
            "queue_depth": o.server.queue_depth,
            "refused_busy_total": o.server.refused_busy_total,
        },
        "processes": o.processes,
        "plugins": plugins,
    })
}

fn page(o: &Overview) -> String {
    let mut processes = String::new();
    for p in &o.processes {
        let _ = writeln!(
            processes,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.number,
            p.pid.map_or("-".into(), |pid| pid.to_string()),
            p.state,
            String::from_utf8_lossy(&plugin_api::http_date(p.started)),
            p.restarts,
            p.open_connections,
        );
    }
    let mut rows = String::new();
    for p in &o.plugins {
        let (cls, state) = match (p.quarantined, p.generation.is_some()) {
            (true, _) => ("down", "quarantined"),
            (false, true) => ("ok", "serving"),
            (false, false) => ("down", "not loaded"),
        };
        let c = &p.counts;
        let _ = writeln!(
            rows,
            "<tr class=\"{cls}\"><td>{name}</td><td>{state}</td><td>{version}</td><td>{generation}</td>\
             <td>{routes}</td><td>{requests}</td><td>{errors}</td><td>{panics}</td><td>{crashes}</td>\
             <td>{ok} ok / {failed} failed</td></tr>",
            name = escape(&p.name),
            version = escape(p.version.as_deref().unwrap_or("-")),
            generation = p.generation.map_or("-".into(), |g| g.to_string()),
            routes = escape(&p.routes.join(" ")),
            requests = c.requests,
            errors = c.by_class[4],
            panics = c.failures,
            crashes = p.crashes,
            ok = c.reloads_ok,
            failed = c.reloads_failed,
        );
    }
    let stats = &o.server;
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>mini-async-http status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1a202c; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }} th, td {{ padding: .4em .9em; border-bottom: 1px solid #e2e8f0; text-align: left; }}
th {{ background: #edf2f7; }} tr.down td:nth-child(2) {{ color: #c53030; font-weight: bold; }}
tr.ok td:nth-child(2) {{ color: #2f855a; }} .server span {{ margin-right: 2em; }}
</style></head>
<body>
<h1>mini-async-http</h1>
<p class="server"><span id="open">{open} open connections</span><span>{accepted} accepted</span><span>{queued} queued</span><span>{refused} refused (busy)</span></p>
<table id="processes">
<tr><th>process</th><th>pid</th><th>state</th><th>started</th><th>restarts</th><th>open connections</th></tr>
{processes}</table>
<table id="plugins">
<tr><th>plugin</th><th>state</th><th>version</th><th>generation</th><th>routes</th><th>requests</th><th>5xx</th><th>panics</th><th>crashes</th><th>reloads</th></tr>
{rows}</table>
<p><a href="/metrics">metrics</a> · <a href="/status">status (JSON)</a></p>
</body></html>
"#,
        open = stats.open_connections,
        accepted = stats.accepted_total,
        queued = stats.queue_depth,
        refused = stats.refused_busy_total,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, requests: u64, generation: Option<u64>) -> PluginRow {
        PluginRow {
            name: name.into(),
            generation,
            counts: PluginCounts {
                requests,
                ..PluginCounts::default()
            },
            ..PluginRow::default()
        }
    }

    #[test]
    fn counters_add_up_across_processes_and_survive_a_restart() {
        let one = Snapshot {
            server: ServerStats {
                open_connections: 2,
                accepted_total: 10,
                ..ServerStats::default()
            },
            plugins: vec![row("hello", 5, Some(1)), row("chaos", 1, None)],
            ..Snapshot::default()
        };
        let two = Snapshot {
            server: ServerStats {
                open_connections: 3,
                accepted_total: 7,
                ..ServerStats::default()
            },
            plugins: vec![row("hello", 4, Some(2))],
            ..Snapshot::default()
        };
        let mut retired = Totals::default();
        retired.retire(&Snapshot {
            plugins: vec![row("hello", 100, Some(1))],
            server: ServerStats {
                open_connections: 9,
                accepted_total: 50,
                ..ServerStats::default()
            },
            ..Snapshot::default()
        });
        let crashes = BTreeMap::from([("chaos".to_owned(), (3, true))]);
        let o = Overview::merge(&retired, [&one, &two], Vec::new(), &crashes);
        assert_eq!(
            o.server.open_connections, 5,
            "gauges of ended processes are gone"
        );
        assert_eq!(o.server.accepted_total, 67);
        let hello = o.plugins.iter().find(|p| p.name == "hello").unwrap();
        assert_eq!(hello.counts.requests, 109);
        assert_eq!(hello.generation, Some(1));
        let chaos = o.plugins.iter().find(|p| p.name == "chaos").unwrap();
        assert_eq!((chaos.crashes, chaos.quarantined), (3, true));
        let text = metrics(&o);
        assert!(
            text.contains("mah_plugin_crashes_total{plugin=\"chaos\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("mah_plugin_quarantined{plugin=\"chaos\"} 1"),
            "{text}"
        );
        assert!(page(&o).contains("<td>chaos</td><td>quarantined</td>"));
    }
}
