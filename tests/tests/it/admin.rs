//! The admin listener: Prometheus metrics, JSON status, and the status page in a real headless
//! browser (Debian's chromium).

use std::net::SocketAddr;
use std::process::Command;

use integration_tests::{Client, HostProcess};

/// The host with its admin listener, after traffic; the client stays connected.
fn start() -> (HostProcess, SocketAddr, Client) {
    let host = HostProcess::start(
        &["libhello.so", "libpanicky.so"],
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let admin = host.admin();
    let mut c = host.connect();
    for _ in 0..3 {
        assert_eq!(c.get("/hello").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(c.get("/panicky/boom").status, 500);
    }
    (host, admin, c)
}

#[test]
fn metrics_and_status_count_what_happened() {
    let (_host, admin, _open) = start();
    let mut c = Client::connect(admin);
    let r = c.get("/metrics");
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    let text = r.text();
    for line in [
        "mah_plugin_requests_total{plugin=\"hello\"} 3",
        "mah_plugin_responses_total{plugin=\"hello\",class=\"2xx\"} 3",
        "mah_plugin_responses_total{plugin=\"panicky\",class=\"5xx\"} 2",
        "mah_plugin_panics_total{plugin=\"panicky\"} 2",
        "mah_plugin_request_duration_seconds_count{plugin=\"hello\"} 3",
        "mah_plugin_request_duration_seconds_bucket{plugin=\"hello\",le=\"+Inf\"} 3",
        "mah_plugin_generation{plugin=\"hello\"} 1",
        "mah_plugin_reloads_total{plugin=\"hello\",result=\"ok\"} 1",
        "# TYPE mah_plugin_request_duration_seconds histogram",
        "mah_open_connections 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("mah_accepted_connections_total "), "{text}");

    let r = c.get("/status");
    let status: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let plugins = status["plugins"].as_array().unwrap();
    let hello = plugins.iter().find(|p| p["name"] == "hello").unwrap();
    assert_eq!(
        (hello["generation"].as_u64(), hello["requests"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(hello["routes"][0], "/hello");
    assert_eq!(status["server"]["open_connections"].as_u64(), Some(1));
    assert_eq!(c.get("/nothing").status, 404);
}

#[test]
fn the_status_page_renders_in_a_headless_browser() {
    let (_host, admin, _open) = start();
    let profile = std::env::temp_dir().join(format!("mah-chromium-{}", std::process::id()));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{admin}/"))
        .output()
        .expect("chromium is needed for this test: apt-get install chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<table id=\"plugins\">"), "{dom}");
    for cell in [
        "<td>hello</td><td>serving</td>",
        "<td>panicky</td><td>serving</td>",
        "1 open connections",
    ] {
        assert!(
            dom.contains(cell),
            "no {cell:?} in the rendered page:\n{dom}"
        );
    }
}

#[test]
fn healthz_says_alive_and_readyz_says_whether_every_plugin_is_loaded() {
    let (host, admin, _open) = start();
    let mut c = Client::connect(admin);
    let r = c.get("/healthz");
    assert_eq!((r.status, r.text()), (200, "ok\n"));
    let r = c.get("/readyz");
    assert_eq!((r.status, r.text()), (200, "ready\n"));
    // A plugin that cannot load: alive, not ready, and the answer names it.
    std::fs::copy(
        integration_tests::artifact("libinit_fails.so"),
        host.plugins().join("libinit_fails.so"),
    )
    .unwrap();
    host.wait_for_log(
        "plugin init_fails: refused libinit_fails.so",
        std::time::Duration::from_secs(20),
    );
    assert_eq!(c.get("/healthz").status, 200);
    let r = c.get("/readyz");
    assert_eq!(
        (r.status, r.text()),
        (503, "plugin init_fails is not loaded\n")
    );
}
