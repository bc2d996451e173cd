//! A new host binary without downtime: SIGUSR2 starts the binary installed at the path the host
//! was started from, on the same sockets; once it serves, the old supervisor drains and exits. A
//! new binary that does not start leaves the old one serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use integration_tests::{Client, HostProcess, artifact, flip_variants};

const WAIT: Duration = Duration::from_secs(30);

/// A host serving flip (variant a) from a copy of the binary in its folder, which a test replaces.
fn start() -> (HostProcess, PathBuf) {
    let dir = HostProcess::prepare(&[], "[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::copy(&flip_variants().0, dir.join("plugins/libflip.so")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let binary = dir.join("bin/mini-async-http");
    std::fs::copy(artifact("mini-async-http"), &binary).unwrap();
    let host = HostProcess::spawn_binary(&dir, &binary, &[]).ready();
    (host, binary)
}

/// Installs `content` at `path` as a package manager does: beside it, then renamed over it.
fn install(path: &PathBuf, content: &[u8], executable: bool) {
    use std::os::unix::fs::PermissionsExt;
    let staged = path.with_extension("new");
    std::fs::write(&staged, content).unwrap();
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[test]
fn sigusr2_hands_the_sockets_to_the_new_binary_and_no_request_fails() {
    let (mut host, binary) = start();
    let admin = host.admin();
    // Clients open a connection per request, so that every accept during the hand-over counts.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, served) = (host.addr, Arc::clone(&stop), Arc::clone(&served));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = Client::connect(addr)
                        .send("GET /flip HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .reply();
                    assert_eq!((r.status, r.text()), (200, "a"), "{r:?}");
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The new build, installed over the old one (the same code here: what counts is the
    // hand-over).
    install(
        &binary,
        &std::fs::read(artifact("mini-async-http")).unwrap(),
        true,
    );
    host.signal("USR2");
    let pid = host.wait_for_upgrade(WAIT);
    assert_eq!(
        host.wait_exit(WAIT),
        Some(0),
        "the old supervisor did not drain cleanly"
    );
    let at_exit = served.load(Ordering::Relaxed);
    // The new one serves on, the admin listener too.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a request failed during the upgrade");
    }
    let total = served.load(Ordering::Relaxed);
    assert!(
        total > at_exit,
        "no request was served after the old supervisor left"
    );
    assert_eq!(Client::connect(admin).get("/healthz").status, 200);
    eprintln!("binary upgrade under load: {total} requests, 0 failed");
    host.stop_adopted(pid, WAIT);
}

#[test]
fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let (host, binary) = start();
    install(
        &binary,
        b"#!/bin/sh\necho 'a broken build' >&2\nexit 3\n",
        true,
    );
    host.signal("USR2");
    let line = host.wait_for_log("upgrade failed", WAIT);
    assert!(line.contains("exit status: 3"), "{line}");
    assert!(line.contains("this supervisor serves on"), "{line}");
    assert_eq!(host.connect().get("/flip").text(), "a");
}

#[test]
fn a_stop_signal_during_an_upgrade_stops_the_new_binary_first() {
    let (mut host, binary) = start();
    // A new build that never gets to serve.
    install(&binary, b"#!/bin/sh\nexec sleep 600\n", true);
    host.signal("USR2");
    let pid = host.wait_for_upgrade_start(WAIT);
    host.signal("TERM");
    let line = host.wait_for_log("upgrade failed", WAIT);
    assert!(line.contains("a stop signal came first"), "{line}");
    assert_eq!(host.wait_exit(WAIT), Some(0));
    // Killed and reaped, not left serving (or sleeping) alone.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the new binary outlived the old supervisor"
    );
}
