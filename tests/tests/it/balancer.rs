//! Three hosts behind a real HAProxy (Debian's; `./test.sh` installs it), with health checks on
//! `/readyz` and the PROXY protocol, under load: a rolling update of a plugin, a rolling binary
//! upgrade, and SIGKILL of one host. No request may fail in the first two; in the third, at most
//! the killed host's requests in flight.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{HostProcess, artifact, flip_variants};

const WAIT: Duration = Duration::from_secs(30);
/// What every host is configured with: the balancer sends a PROXY header, checks `/readyz`.
const HOST_CONFIG: &str =
    "proxy_protocol = true\n[health]\nready = \"/readyz\"\n[limits]\ndrain_delay_ms = 1000\n";

/// One host, started from its own copy of the binary (which the upgrade replaces).
struct Host {
    process: HostProcess,
    binary: PathBuf,
    /// The supervisor serving now, after upgrades.
    supervisor: Option<u32>,
}

fn start_host() -> Host {
    let dir = HostProcess::prepare(&[], HOST_CONFIG);
    std::fs::copy(&flip_variants().0, dir.join("plugins/libflip.so")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let binary = dir.join("bin/mini-async-http");
    std::fs::copy(artifact("mini-async-http"), &binary).unwrap();
    let process = HostProcess::spawn_binary(&dir, &binary, &[]).ready();
    Host {
        process,
        binary,
        supervisor: None,
    }
}

/// A GET on a fresh connection; `prefix` is written first (a PROXY header). The body, or why not.
fn get(addr: SocketAddr, prefix: &[u8], path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(&[prefix, request.as_bytes()].concat())
        .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no head: {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}

/// Sends `command` to HAProxy's stats socket and returns its answer.
fn haproxy_ask(socket: &Path, command: &str) -> String {
    let mut s = UnixStream::connect(socket).expect("HAProxy's stats socket");
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Each server's status (`UP`, `DOWN`, …) as HAProxy's `show stat` has it.
fn statuses(socket: &Path) -> Vec<(String, String)> {
    haproxy_ask(socket, "show stat")
        .lines()
        .filter(|l| l.starts_with("be,h"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), f[17].to_owned())
        })
        .collect()
}

fn start_haproxy(dir: &Path, port: u16, hosts: &[&Host]) -> Child {
    let servers: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("    server h{} {} check\n", i + 1, h.process.addr))
        .collect();
    let config = format!(
        "global\n    stats socket {dir}/haproxy.sock mode 600 level admin\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    \
         timeout server 10s\n    retries 3\n    option redispatch\n    \
         retry-on all-retryable-errors\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n    balance roundrobin\n    option httpchk\n    \
         http-check send meth GET uri /readyz\n    \
         default-server inter 100ms fall 2 rise 2 send-proxy-v2 check-send-proxy\n{servers}",
        dir = dir.display()
    );
    std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
    Command::new(haproxy())
        .args(["-db", "-q"])
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start haproxy (./test.sh installs it)")
}

/// Debian's HAProxy: on the `PATH`, or in /usr/sbin (which a user's `PATH` may lack).
fn haproxy() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("haproxy"))
}

/// The requests made and failed, per phase.
#[derive(Default)]
struct Tally {
    phase: AtomicUsize,
    ok: [AtomicU64; 4],
    failed: [AtomicU64; 4],
    last_failure: Mutex<String>,
}

#[test]
fn rolling_updates_and_a_killed_host_behind_haproxy() {
    let hosts: Vec<Host> = (0..3).map(|_| start_host()).collect();
    let dir = std::env::temp_dir().join(format!("mah-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut haproxy = start_haproxy(&dir, port, &hosts.iter().collect::<Vec<_>>());
    let socket = dir.join("haproxy.sock");
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while !(socket.exists() && statuses(&socket).iter().all(|(_, s)| s == "UP")) {
        assert!(started.elapsed() < WAIT, "HAProxy never saw the hosts up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut hosts = hosts;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let phase = tally.phase.load(Ordering::Relaxed);
                    match get(front, b"", "/flip") {
                        Ok(body) if body == "a" || body == "b" => {
                            tally.ok[phase].fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            tally.failed[phase].fetch_add(1, Ordering::Relaxed);
                            *tally.last_failure.lock().unwrap() = format!("{other:?}");
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // 1. A rolling update of the plugin, one host at a time.
    tally.phase.store(1, Ordering::Relaxed);
    let b = std::fs::read(&flip_variants().1).unwrap();
    for host in &hosts {
        let plugins = host.process.plugins();
        std::fs::write(plugins.join(".libflip.so.new"), &b).unwrap();
        std::fs::rename(plugins.join(".libflip.so.new"), plugins.join("libflip.so")).unwrap();
        let since = Instant::now();
        while get(host.process.addr, b"PROXY UNKNOWN\r\n", "/flip").as_deref() != Ok("b") {
            assert!(since.elapsed() < WAIT, "the new build never served");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    // 2. A rolling binary upgrade, one host at a time.
    tally.phase.store(2, Ordering::Relaxed);
    for host in &mut hosts {
        let staged = host.binary.with_extension("new");
        std::fs::copy(artifact("mini-async-http"), &staged).unwrap();
        std::fs::rename(&staged, &host.binary).unwrap();
        host.process.signal("USR2");
        host.supervisor = Some(host.process.wait_for_upgrade(WAIT));
        assert_eq!(host.process.wait_exit(WAIT), Some(0));
    }
    std::thread::sleep(Duration::from_millis(300));

    // 3. SIGKILL of one host (its supervisor; its server processes die with it).
    tally.phase.store(3, Ordering::Relaxed);
    let killed = hosts[2].supervisor.expect("upgraded");
    let status = Command::new("kill")
        .args(["-KILL", &killed.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let since = Instant::now();
    while !statuses(&socket)
        .iter()
        .any(|(name, s)| name == "h3" && s.starts_with("DOWN"))
    {
        assert!(
            since.elapsed() < WAIT,
            "HAProxy never marked the killed host down"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let routed_around = since.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    for host in &hosts[..2] {
        host.process
            .stop_adopted(host.supervisor.expect("upgraded"), WAIT);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let n = |a: &[AtomicU64; 4], i: usize| a[i].load(Ordering::Relaxed);
    eprintln!(
        "behind HAProxy: rolling plugin update {} requests, {} failed; rolling binary upgrade {} \
         requests, {} failed; SIGKILL of a host {} requests, {} failed, marked down after {} ms \
         (checks every 100 ms, fall 2)",
        n(&tally.ok, 1),
        n(&tally.failed, 1),
        n(&tally.ok, 2),
        n(&tally.failed, 2),
        n(&tally.ok, 3),
        n(&tally.failed, 3),
        routed_around.as_millis()
    );
    let last = tally.last_failure.lock().unwrap().clone();
    assert_eq!(n(&tally.failed, 0), 0, "warm-up: {last}");
    assert_eq!(n(&tally.failed, 1), 0, "rolling plugin update: {last}");
    assert_eq!(n(&tally.failed, 2), 0, "rolling binary upgrade: {last}");
    // At most the requests in flight on the killed host: one per client.
    assert!(n(&tally.failed, 3) <= 4, "SIGKILL: {last}");
    assert!(n(&tally.ok, 1) > 0 && n(&tally.ok, 2) > 0 && n(&tally.ok, 3) > 0);
}
