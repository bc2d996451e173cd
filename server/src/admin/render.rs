//! The admin pages, rendered from an [`Overview`]: `/metrics` (Prometheus text), `/status` (JSON),
//! `/` (HTML), and the probes `/healthz` (alive) and `/readyz` (ready to take traffic). What they
//! show is gathered in `mod.rs`.

use std::fmt::Write as _;

use plugin_api::{Request, Response, ResponseBuilder};
use serde_json::json;

use super::Overview;
use crate::plugin::LATENCY_BUCKETS_US;

/// The admin handler; `overview` says how the server is doing now, or `None` when the supervisor
/// cannot tell in time (the answer is then 503, never made-up zeros that a scraper would take
/// for a counter reset).
pub fn handler(
    overview: impl Fn() -> Option<Overview> + Send + Sync + 'static,
) -> impl Fn(&Request<'_>) -> Response + Send + Sync + 'static {
    move |request| {
        if let path @ ("/healthz" | "/readyz") = request.path() {
            let (code, body) = match overview() {
                None => (503, "the supervisor did not answer in time\n".to_owned()),
                Some(_) if path == "/healthz" => (200, "ok\n".to_owned()),
                Some(o) => match not_ready(&o) {
                    None => (200, "ready\n".to_owned()),
                    Some(why) => (503, why),
                },
            };
            return respond(code, "text/plain; charset=utf-8", body);
        }
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
        respond(code, content_type, body)
    }
}

fn respond(code: u16, content_type: &str, body: String) -> Response {
    ResponseBuilder::new(code)
        .content_type(content_type)
        .header("cache-control", "no-store")
        .body(body)
        .build()
        .unwrap_or_else(|_| crate::worker::internal_error())
}

/// Why the server should not be sent traffic now, a line each; `None` when it is ready: a server
/// process serves, none is stopping (draining), and every plugin in the folder is loaded.
fn not_ready(o: &Overview) -> Option<String> {
    let mut why = String::new();
    if !o
        .processes
        .iter()
        .any(|p| p.state == "serving" || p.state == "stopping")
    {
        why.push_str("no server process is serving\n");
    }
    if o.processes.iter().any(|p| p.state == "stopping") {
        why.push_str("draining: the server is stopping\n");
    }
    for p in o
        .plugins
        .iter()
        .filter(|p| p.file.is_some() && p.generation.is_none())
    {
        let _ = writeln!(why, "plugin {} is not loaded", p.name);
    }
    (!why.is_empty()).then_some(why)
}

/// The Prometheus text exposition format (version 0.0.4).
pub(super) fn metrics(o: &Overview) -> String {
    let mut out = String::new();
    let stats = &o.server;
    let server: [(&str, &str, &str, u64); 5] = [
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
        (
            "lost_workers",
            "gauge",
            "Worker threads stuck in a handler past its deadline.",
            stats.lost_workers as u64,
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
    let series: [(&str, &str, &str); 14] = [
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
        (
            "plugin_in_flight",
            "gauge",
            "Calls of the plugin holding a worker now.",
        ),
        (
            "plugin_queued",
            "gauge",
            "Requests waiting for a place under the plugin's concurrency limit.",
        ),
        (
            "plugin_timeouts_total",
            "counter",
            "Calls past their deadline, answered 504.",
        ),
        (
            "plugin_refused_total",
            "counter",
            "Requests answered 503 by the plugin's limit: queue full or waited too long.",
        ),
        (
            "plugin_lost_workers",
            "gauge",
            "Worker threads still stuck in the plugin past a deadline.",
        ),
        (
            "plugin_max_concurrency",
            "gauge",
            "The plugin's concurrency limit in one server process.",
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
                "plugin_quarantined" => {
                    let _ = writeln!(out, "mah_{name}{{{l}}} {}", u8::from(p.quarantined));
                }
                _ => {
                    let b = &p.bulkhead;
                    let value = match name {
                        "plugin_in_flight" => b.in_flight as u64,
                        "plugin_queued" => b.queued as u64,
                        "plugin_timeouts_total" => b.timed_out,
                        "plugin_refused_total" => b.refused,
                        "plugin_lost_workers" => b.lost_workers as u64,
                        _ => b.max_concurrency as u64,
                    };
                    let _ = writeln!(out, "mah_{name}{{{l}}} {value}");
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
                "in_flight": p.bulkhead.in_flight,
                "queued": p.bulkhead.queued,
                "timed_out": p.bulkhead.timed_out,
                "refused": p.bulkhead.refused,
                "lost_workers": p.bulkhead.lost_workers,
                "max_concurrency": p.bulkhead.max_concurrency,
            })
        })
        .collect();
    json!({
        "server": {
            "open_connections": o.server.open_connections,
            "accepted_total": o.server.accepted_total,
            "queue_depth": o.server.queue_depth,
            "refused_busy_total": o.server.refused_busy_total,
            "lost_workers": o.server.lost_workers,
            "needs_replacement": o.server.needs_replacement,
        },
        "processes": o.processes,
        "plugins": plugins,
    })
}

pub(super) fn page(o: &Overview) -> String {
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
             <td>{routes}</td><td>{requests}</td><td>{in_flight} / {limit}</td><td>{queued}</td>\
             <td>{timed_out}</td><td>{refused}</td><td>{errors}</td><td>{panics}</td><td>{crashes}</td>\
             <td>{ok} ok / {failed} failed</td></tr>",
            name = escape(&p.name),
            version = escape(p.version.as_deref().unwrap_or("-")),
            generation = p.generation.map_or("-".into(), |g| g.to_string()),
            routes = escape(&p.routes.join(" ")),
            requests = c.requests,
            in_flight = p.bulkhead.in_flight,
            limit = p.bulkhead.max_concurrency,
            queued = p.bulkhead.queued,
            timed_out = p.bulkhead.timed_out,
            refused = p.bulkhead.refused,
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
<p class="server"><span id="open">{open} open connections</span><span>{accepted} accepted</span><span>{queued} queued</span><span>{refused} refused (busy)</span><span id="lost">{lost} workers stuck</span></p>
<table id="processes">
<tr><th>process</th><th>pid</th><th>state</th><th>started</th><th>restarts</th><th>open connections</th></tr>
{processes}</table>
<table id="plugins">
<tr><th>plugin</th><th>state</th><th>version</th><th>generation</th><th>routes</th><th>requests</th><th>in flight / limit</th><th>queued</th><th>timed out</th><th>refused</th><th>5xx</th><th>panics</th><th>crashes</th><th>reloads</th></tr>
{rows}</table>
<p><a href="/metrics">metrics</a> · <a href="/status">status (JSON)</a></p>
</body></html>
"#,
        open = stats.open_connections,
        accepted = stats.accepted_total,
        queued = stats.queue_depth,
        refused = stats.refused_busy_total,
        lost = stats.lost_workers,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
