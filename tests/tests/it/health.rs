//! Running several behind a load balancer: the service port's probes (`[health]`), readiness
//! turning false on SIGTERM for `[limits] drain_delay_ms` while everything still serves, and
//! `reuse_port` for several hosts on one port.

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::{Client, HostProcess, flip_variants};

const WAIT: Duration = Duration::from_secs(30);
const PROBES: &str = "[health]\nalive = \"/healthz\"\nready = \"/readyz\"\n";

#[test]
fn the_service_port_answers_its_probes_before_any_plugin() {
    // hello is also mounted at `/`, so without the host's answer `/readyz` would reach it.
    let config = format!("{PROBES}[[routes]]\nprefix = \"/\"\nplugin = \"hello\"\n");
    let host = HostProcess::start(&["libhello.so"], &config);
    let mut c = host.connect();
    let alive = c.get("/healthz");
    assert_eq!((alive.status, alive.text()), (200, "ok\n"), "{alive:?}");
    let ready = c.get("/readyz");
    assert_eq!((ready.status, ready.text()), (200, "ready\n"), "{ready:?}");
    assert_eq!(ready.header("cache-control"), Some("no-store"));
    let head = c
        .send("HEAD /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        .reply_to(true);
    assert_eq!(head.status, 200, "{head:?}");
    let post = c
        .send("POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .reply();
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // Other paths still go to the plugin.
    assert_eq!(c.get("/anything").text(), "Hello");
}

#[test]
fn readiness_names_a_plugin_in_the_folder_that_is_not_loaded() {
    let host = HostProcess::start(&["libhello.so", "libwrong_abi.so"], PROBES);
    let r = host.connect().get("/readyz");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.text().contains("plugin wrong_abi is not loaded"), "{r:?}");
    // Alive all the same.
    assert_eq!(host.connect().get("/healthz").status, 200);
}

#[test]
fn probes_are_off_unless_configured() {
    let host = HostProcess::start(&["libhello.so"], "");
    assert_eq!(host.connect().get("/readyz").status, 404);
}

/// SIGTERM with a drain delay: readiness turns false at once, on the service port and the admin
/// listener, while new connections are still accepted and served; the drain comes after the
/// delay, and the host exits 0.
#[test]
fn sigterm_turns_readiness_false_for_the_drain_delay_before_the_listener_closes() {
    let config =
        format!("{PROBES}[limits]\ndrain_delay_ms = 5000\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let mut host = HostProcess::start(&["libhello.so"], &config);
    let admin = host.admin();
    assert_eq!(host.connect().get("/readyz").status, 200);
    assert_eq!(Client::connect(admin).get("/readyz").status, 200);
    host.signal("TERM");
    host.wait_for_log("stopping in 5000 ms", WAIT);
    let started = Instant::now();
    // The service port's probe: 503 once the process got word (a datagram away).
    let ready = loop {
        let r = host.connect().get("/readyz");
        if r.status == 503 || started.elapsed() > WAIT {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.text().contains("draining"), "{ready:?}");
    let r = Client::connect(admin).get("/readyz");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.text().contains("draining: the server is stopping"),
        "{r:?}"
    );
    // Meanwhile a new connection is accepted and served, as are the probes.
    let mut fresh = host.connect();
    assert_eq!(fresh.get("/hello").text(), "Hello");
    assert!(
        !host
            .log()
            .iter()
            .any(|l| l.contains("shutting down: draining")),
        "the drain began before the delay was over: {:?}",
        started.elapsed()
    );
    // Then the drain: the host exits 0 and the port refuses connections.
    host.wait_for_log("shutting down: draining", WAIT);
    assert_eq!(host.wait_exit(WAIT), Some(0));
    assert!(TcpStream::connect(host.addr).is_err(), "still accepting");
}

#[test]
fn a_second_sigterm_during_the_drain_delay_drains_at_once() {
    let config = format!("{PROBES}[limits]\ndrain_delay_ms = 600000\n");
    let mut host = HostProcess::start(&["libhello.so"], &config);
    host.signal("TERM");
    host.wait_for_log("stopping in 600000 ms", WAIT);
    host.signal("TERM");
    host.wait_for_log("a second stop signal: draining now", WAIT);
    assert_eq!(host.wait_exit(WAIT), Some(0));
}

/// Starts a host serving `variant` of flip at `listen`, with `config`.
fn flip_host(variant: &Path, config: &str, listen: &str) -> HostProcess {
    let dir = HostProcess::prepare(&[], config);
    std::fs::copy(variant, dir.join("plugins/libflip.so")).unwrap();
    HostProcess::spawn(&dir, &["--listen", listen])
}

#[test]
fn with_reuse_port_two_hosts_share_one_port_and_both_serve() {
    let (a, b) = flip_variants();
    let first = flip_host(a, "reuse_port = true\n", "127.0.0.1:0").ready();
    let port = first.addr.to_string();
    let second = flip_host(b, "reuse_port = true\n", &port).ready();
    assert_eq!(second.addr, first.addr);
    // The kernel spreads new connections over both listeners.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(Client::connect(first.addr).get("/flip").text().to_owned());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn without_reuse_port_a_second_host_on_the_port_is_refused() {
    let (a, b) = flip_variants();
    let first = flip_host(a, "", "127.0.0.1:0").ready();
    let mut second = flip_host(b, "", &first.addr.to_string());
    assert_eq!(second.wait_exit(WAIT), Some(1));
    let line = second.wait_for_log("cannot listen on", WAIT);
    assert!(
        line.contains("Address in use") || line.contains("in use"),
        "{line}"
    );
}

/// systemd socket activation, with systemd's own tool: it listens, and on the first connection
/// executes the host with the socket as descriptor 3 (`LISTEN_FDS`, `LISTEN_PID`), which serves
/// it (the harness's `--listen 127.0.0.1:0` is not used).
#[test]
fn a_socket_passed_by_the_service_manager_is_served() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = HostProcess::prepare(&["libhello.so"], "");
    let listen = port.to_string();
    let host = HostProcess::spawn_wrapped(&dir, &[], &["systemd-socket-activate", "-l", &listen]);
    // systemd-socket-activate's own line, once it listens.
    host.wait_for_log(&format!("Listening on {listen}"), WAIT);
    // The first connection waits in the socket's backlog while the host starts.
    let mut c = Client::connect(port);
    let host = host.ready();
    assert_eq!(host.addr, port);
    assert_eq!(c.get("/hello").text(), "Hello");
    host.wait_for_log("serving the socket the service manager passed", WAIT);
}
