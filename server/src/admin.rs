//! The admin listener (`[admin] listen` in `config.toml`, off by default): `/metrics` in the
//! Prometheus text format, `/status` as JSON, and `/` as a small HTML page that shows the plugins,
//! their generations and counters at a glance. It is a second [`AIOServer`](crate::AIOServer)
//! with one worker, so it shares nothing with the hot path but the counters it reads.

use std::fmt::Write as _;
use std::sync::Arc;

use plugin_api::{Request, Response, ResponseBuilder};
use serde_json::json;

use crate::plugin::{LATENCY_BUCKETS_US, PluginInfo, Registry};
use crate::{ServerHandle, ServerStats};

/// The admin handler, reading `registry` and the main server's counters through `server`.
pub fn handler(
    registry: Arc<Registry>,
    server: ServerHandle,
) -> impl Fn(&Request<'_>) -> Response + Send + Sync + 'static {
    move |request| {
        let plugins = registry.plugins();
        let stats = server.stats().unwrap_or_default();
        let (content_type, body) = match request.path() {
            "/metrics" => ("text/plain; version=0.0.4", metrics(&plugins, &stats)),
            "/status" => ("application/json", status(&plugins, &stats).to_string()),
            "/" => ("text/html; charset=utf-8", page(&plugins, &stats)),
            _ => ("text/plain", String::new()),
        };
        let code = if body.is_empty() { 404 } else { 200 };
        ResponseBuilder::new(code)
            .content_type(content_type)
            .header("cache-control", "no-store")
            .body(body)
            .build()
            .unwrap_or_else(|_| crate::worker::internal_error())
    }
}

/// The Prometheus text exposition format (version 0.0.4).
fn metrics(plugins: &[PluginInfo], stats: &ServerStats) -> String {
    let mut out = String::new();
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
    let series: [(&str, &str, &str); 6] = [
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
    ];
    for (name, kind, help) in series {
        let _ = writeln!(out, "# HELP mah_{name} {help}\n# TYPE mah_{name} {kind}");
        for p in plugins {
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
                    let g = p.generation.as_ref().map_or(0, |g| g.number);
                    let _ = writeln!(out, "mah_{name}{{{l}}} {g}");
                }
                _ => {
                    let _ = writeln!(out, "mah_{name}{{{l},result=\"ok\"}} {}", c.reloads_ok);
                    let _ = writeln!(
                        out,
                        "mah_{name}{{{l},result=\"failed\"}} {}",
                        c.reloads_failed
                    );
                }
            }
        }
    }
    out
}

fn status(plugins: &[PluginInfo], stats: &ServerStats) -> serde_json::Value {
    let plugins: Vec<_> = plugins
        .iter()
        .map(|p| {
            let g = p.generation.as_ref();
            json!({
                "name": p.name,
                "loaded": g.is_some(),
                "version": g.map(|g| g.version.clone()),
                "generation": g.map(|g| g.number),
                "sha256": g.map(|g| g.sha256.clone()),
                "file": p.file.as_ref().map(|f| f.display().to_string()),
                "routes": p.routes,
                "requests": p.counts.requests,
                "responses": {
                    "1xx": p.counts.by_class[0], "2xx": p.counts.by_class[1],
                    "3xx": p.counts.by_class[2], "4xx": p.counts.by_class[3],
                    "5xx": p.counts.by_class[4],
                },
                "panics": p.counts.failures,
                "reloads_ok": p.counts.reloads_ok,
                "reloads_failed": p.counts.reloads_failed,
            })
        })
        .collect();
    json!({
        "server": {
            "open_connections": stats.open_connections,
            "accepted_total": stats.accepted_total,
            "queue_depth": stats.queue_depth,
            "refused_busy_total": stats.refused_busy_total,
        },
        "plugins": plugins,
    })
}

fn page(plugins: &[PluginInfo], stats: &ServerStats) -> String {
    let mut rows = String::new();
    for p in plugins {
        let g = p.generation.as_ref();
        let state = if g.is_some() { "serving" } else { "not loaded" };
        let _ = writeln!(
            rows,
            "<tr class=\"{cls}\"><td>{name}</td><td>{state}</td><td>{version}</td><td>{generation}</td>\
             <td>{routes}</td><td>{requests}</td><td>{errors}</td><td>{panics}</td>\
             <td>{ok} ok / {failed} failed</td></tr>",
            cls = if g.is_some() { "ok" } else { "down" },
            name = escape(&p.name),
            version = escape(g.map_or("-", |g| g.version.as_str())),
            generation = g.map_or("-".into(), |g| g.number.to_string()),
            routes = escape(&p.routes.join(" ")),
            requests = p.counts.requests,
            errors = p.counts.by_class[4],
            panics = p.counts.failures,
            ok = p.counts.reloads_ok,
            failed = p.counts.reloads_failed,
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>mini-async-http status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1a202c; }}
table {{ border-collapse: collapse; }} th, td {{ padding: .4em .9em; border-bottom: 1px solid #e2e8f0; text-align: left; }}
th {{ background: #edf2f7; }} tr.down td:nth-child(2) {{ color: #c53030; font-weight: bold; }}
tr.ok td:nth-child(2) {{ color: #2f855a; }} .server span {{ margin-right: 2em; }}
</style></head>
<body>
<h1>mini-async-http</h1>
<p class="server"><span id="open">{open} open connections</span><span>{accepted} accepted</span><span>{queued} queued</span><span>{refused} refused (busy)</span></p>
<table id="plugins">
<tr><th>plugin</th><th>state</th><th>version</th><th>generation</th><th>routes</th><th>requests</th><th>5xx</th><th>panics</th><th>reloads</th></tr>
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
