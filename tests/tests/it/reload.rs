//! Hot reload: the folder watcher, validated swaps, state hand-over, configuration reloads.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::{Client, HostProcess, artifact, flip_variants};

const WAIT: Duration = Duration::from_secs(20);
const QUICK: &str = "reload_debounce_ms = 100\n";

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Installs `content` as `name` the way `mv` does: write beside it, then rename over it.
fn install_by_rename(dir: &Path, name: &str, content: &[u8]) {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn start_flip(config: &str) -> HostProcess {
    let (a, _) = flip_variants();
    let dir = HostProcess::prepare(&["libhello.so"], config);
    std::fs::copy(a, dir.join("plugins/libflip.so")).unwrap();
    HostProcess::spawn(&dir, &[]).ready()
}

#[test]
fn a_rebuilt_plugin_is_picked_up_whether_copied_in_place_or_moved_in() {
    let (a, b) = flip_variants();
    let host = start_flip(QUICK);
    let mut c = host.connect();
    assert_eq!(c.get("/flip").text(), "a");
    // `cp` over the file: same inode, truncated and rewritten.
    std::fs::write(host.plugins().join("libflip.so"), bytes(b)).unwrap();
    let line = host.wait_for_log("plugin flip: generation 2 loaded from libflip.so", WAIT);
    assert!(line.contains("(sha "), "{line}");
    assert_eq!(c.get("/flip").text(), "b");
    // `mv` onto it: a new inode under the same name.
    install_by_rename(&host.plugins(), "libflip.so", &bytes(a));
    host.wait_for_log("plugin flip: generation 3 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "a");
    // The same content again is no reload at all.
    std::fs::write(host.plugins().join("libflip.so"), bytes(a)).unwrap();
    install_by_rename(&host.plugins(), "libflip.so", &bytes(b));
    host.wait_for_log("plugin flip: generation 4 loaded", WAIT);
    assert!(!host.log().iter().any(|l| l.contains("generation 5")));
}

#[test]
fn new_files_are_mounted_and_deleted_files_unmounted() {
    let (a, _) = flip_variants();
    let host = HostProcess::start(&["libhello.so"], QUICK);
    let mut c = host.connect();
    assert_eq!(c.get("/flip").status, 404);
    install_by_rename(&host.plugins(), "libflip.so", &bytes(a));
    host.wait_for_log("plugin flip: generation 1 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "a");
    std::fs::remove_file(host.plugins().join("libflip.so")).unwrap();
    host.wait_for_log("plugin flip: unmounted", WAIT);
    assert_eq!(c.get("/flip").status, 404);
    assert_eq!(c.get("/hello").text(), "Hello");
    // Back again: numbering goes on, so log lines and metrics never repeat a generation.
    install_by_rename(&host.plugins(), "libflip.so", &bytes(a));
    host.wait_for_log("plugin flip: generation 2 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "a");
}

#[test]
fn a_broken_new_version_leaves_the_old_one_serving_until_a_good_one_comes() {
    let (_, b) = flip_variants();
    let host = start_flip(QUICK);
    let mut c = host.connect();
    let file = host.plugins().join("libflip.so");

    std::fs::write(&file, "garbage, not a library").unwrap();
    let line = host.wait_for_log("plugin flip: reload from libflip.so failed", WAIT);
    assert!(
        line.contains("not a shared library") && line.contains("generation 1 keeps serving"),
        "{line}"
    );
    assert_eq!(c.get("/flip").text(), "a");

    std::fs::write(&file, bytes(&artifact("libwrong_abi.so"))).unwrap();
    let line = host.wait_for_nth_log("plugin flip: reload from libflip.so failed", 2, WAIT);
    assert!(
        line.contains("plugin ABI version 5, but this host speaks ABI version 4"),
        "{line}"
    );
    assert_eq!(c.get("/flip").text(), "a");

    // The next change of the file is tried again.
    std::fs::write(&file, bytes(b)).unwrap();
    host.wait_for_log("plugin flip: generation 2 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "b");

    // Settings that make init fail: the running generation stays.
    let config = host.dir.join("config.toml");
    install_by_rename(
        &host.dir,
        "config.toml",
        format!("{QUICK}[plugins.flip]\nfail = true\n").as_bytes(),
    );
    let line = host.wait_for_nth_log("plugin flip: reload from libflip.so failed", 3, WAIT);
    assert!(
        line.contains("init fails on purpose") && line.contains("generation 2 keeps serving"),
        "{line}"
    );
    assert_eq!(c.get("/flip").text(), "b");
    assert!(config.exists());
}

#[test]
fn a_file_closed_by_its_writer_or_moved_in_is_reloaded_at_once() {
    // A quiet period longer than this test waits: only the file's completion can trigger these.
    let (a, b) = flip_variants();
    let host = start_flip("reload_debounce_ms = 60000\n");
    let mut c = host.connect();
    std::fs::write(host.plugins().join("libflip.so"), bytes(b)).unwrap();
    host.wait_for_log("plugin flip: generation 2 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "b");
    install_by_rename(&host.plugins(), "libflip.so", &bytes(a));
    host.wait_for_log("plugin flip: generation 3 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "a");
}

#[test]
fn a_half_written_file_is_never_served_half() {
    let (_, b) = flip_variants();
    let host = start_flip(QUICK);
    let mut c = host.connect();
    let content = bytes(b);
    let mut file = std::fs::File::create(host.plugins().join("libflip.so")).unwrap();
    file.write_all(&content[..content.len() / 2]).unwrap();
    file.flush().unwrap();
    let line = host.wait_for_log("plugin flip: reload from libflip.so failed", WAIT);
    assert!(
        line.contains("truncated") || line.contains("not a shared library"),
        "{line}"
    );
    assert_eq!(c.get("/flip").text(), "a");
    file.write_all(&content[content.len() / 2..]).unwrap();
    drop(file);
    host.wait_for_log("plugin flip: generation 2 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "b");
}

#[test]
fn a_burst_of_writes_is_one_reload() {
    let (a, b) = flip_variants();
    let host = start_flip("reload_debounce_ms = 400\n");
    let content = bytes(b);
    let mut file = std::fs::File::create(host.plugins().join("libflip.so")).unwrap();
    for chunk in content.chunks(content.len() / 20 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
    }
    drop(file);
    host.wait_for_log("plugin flip: generation 2 loaded", WAIT);
    // A later change shows that nothing else came of the burst in between.
    install_by_rename(&host.plugins(), "libflip.so", &bytes(a));
    host.wait_for_log("plugin flip: generation 3 loaded", WAIT);
    let log = host.log();
    let reloads = log
        .iter()
        .filter(|l| l.contains("plugin flip: generation 2"))
        .count();
    let failures = log
        .iter()
        .filter(|l| l.contains("reload from libflip.so failed"))
        .count();
    assert_eq!((reloads, failures), (1, 0), "log:\n{}", log.join("\n"));
}

#[test]
fn config_edits_are_applied_and_broken_edits_refused() {
    let host = start_flip(&format!("{QUICK}[plugins.flip]\nsuffix = \"1\"\n"));
    let mut c = host.connect();
    assert_eq!(c.get("/flip").text(), "a1");
    let edit = |text: &str| {
        install_by_rename(
            &host.dir,
            "config.toml",
            format!("{QUICK}{text}").as_bytes(),
        )
    };

    edit(
        "[limits]\nmax_body_bytes = 4\n\n[[routes]]\nprefix = \"/other\"\nplugin = \"flip\"\n\n[plugins.flip]\nsuffix = \"2\"\n",
    );
    host.wait_for_log("configuration reloaded", WAIT);
    host.wait_for_log("plugin flip: generation 2 loaded", WAIT);
    assert_eq!(c.get("/flip").text(), "a2");
    assert_eq!(c.get("/other/x").text(), "a2");
    let r = c
        .send("POST /flip HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n12345")
        .reply();
    assert_eq!(r.status, 413, "the new limits apply");

    let mut c = host.connect();
    edit("workers = \"many\"\n");
    let line = host.wait_for_log("config reload failed", WAIT);
    assert!(
        line.contains("config.toml:2:") && line.contains("workers"),
        "{line}"
    );
    assert!(
        line.contains("the previous configuration keeps serving"),
        "{line}"
    );
    assert_eq!(c.get("/other/x").text(), "a2");
}

#[test]
fn sighup_reloads_everything() {
    let host = start_flip(QUICK);
    host.signal("HUP");
    host.wait_for_log("SIGHUP: reloading", WAIT);
    host.wait_for_log("configuration reloaded", WAIT);
    assert_eq!(host.connect().get("/flip").text(), "a");
}

#[test]
fn sighup_retries_a_plugin_whose_last_load_failed_even_when_its_file_did_not_change() {
    // static-files refuses to start while its root folder is missing; the bytes are the same
    // when the folder comes, so only a retry on demand brings the plugin back.
    let dir = HostProcess::prepare(&["libstatic_files.so"], "");
    let www = dir.join("www");
    let config = format!(
        "[plugins.static_files]\nroot = {:?}\n",
        www.display().to_string()
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let host = HostProcess::spawn(&dir, &[]).ready();
    let line = host.wait_for_log("plugin static_files: refused libstatic_files.so", WAIT);
    assert!(
        line.contains("is not a folder") || line.contains("root"),
        "{line}"
    );
    assert_eq!(host.connect().get("/static_files/a.txt").status, 503);
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("a.txt"), "here now").unwrap();
    host.signal("HUP");
    host.wait_for_log("plugin static_files: generation 1 loaded", WAIT);
    assert_eq!(host.connect().get("/static_files/a.txt").text(), "here now");
}

#[test]
fn the_counter_keeps_its_count_across_a_rebuild() {
    let host = HostProcess::start(&["libcounter.so"], QUICK);
    let mut c = host.connect();
    for expected in 0..3 {
        assert_eq!(c.get("/counter").text(), expected.to_string());
    }
    // A different file with the same code: the library with bytes appended after its end.
    let mut rebuilt = bytes(&host.plugins().join("libcounter.so"));
    rebuilt.extend_from_slice(b"\0rebuilt");
    install_by_rename(&host.plugins(), "libcounter.so", &rebuilt);
    host.wait_for_log("plugin counter: generation 2 loaded", WAIT);
    host.wait_for_log("count restored at 3", WAIT);
    assert_eq!(c.get("/counter").text(), "3");
}

#[test]
fn moving_the_old_file_aside_and_copying_a_new_one_in_hands_the_state_over() {
    // `mv libcounter.so libcounter.so.bak; cp new libcounter.so`: the move is not a removal to
    // act on at once, so the copy replaces the generation (state included) instead of following
    // an unmount.
    // The copy comes a moment after the move (as a person typing would), well inside the quiet
    // period.
    let host = HostProcess::start(&["libcounter.so"], "reload_debounce_ms = 2000\n");
    let mut c = host.connect();
    for expected in 0..3 {
        assert_eq!(c.get("/counter").text(), expected.to_string());
    }
    let file = host.plugins().join("libcounter.so");
    let mut rebuilt = bytes(&file);
    rebuilt.extend_from_slice(b"\0rebuilt");
    std::fs::rename(&file, host.plugins().join("libcounter.so.bak")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&file, &rebuilt).unwrap();
    host.wait_for_log("plugin counter: generation 2 loaded", WAIT);
    host.wait_for_log("count restored at 3", WAIT);
    assert_eq!(c.get("/counter").text(), "3");
    assert!(
        !host
            .log()
            .iter()
            .any(|l| l.contains("plugin counter: unmounted")),
        "unmounted in between"
    );
}

/// The acceptance test: clients hammer the plugin over keep-alive connections while its file is
/// replaced 20 times between two builds; every request gets a complete 200 from one of them.
#[test]
fn reloads_under_load_fail_no_request() {
    let (a, b) = flip_variants();
    let (a, b) = (bytes(a), bytes(b));
    let host = start_flip(QUICK);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, served) = (host.addr, Arc::clone(&stop), Arc::clone(&served));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    let r = c.get("/flip");
                    assert_eq!(r.status, 200, "{r:?}");
                    assert!(r.text() == "a" || r.text() == "b", "{r:?}");
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut probe = host.connect();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let (content, expected) = if i % 2 == 0 { (&b, "b") } else { (&a, "a") };
        if i % 4 < 2 {
            std::fs::write(host.plugins().join("libflip.so"), content).unwrap();
        } else {
            install_by_rename(&host.plugins(), "libflip.so", content);
        }
        let written = Instant::now();
        while probe.get("/flip").text() != expected {
            assert!(written.elapsed() < WAIT, "reload {i} never served");
        }
        latencies.push(written.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw a failed request");
    }
    latencies.sort();
    eprintln!(
        "20 reloads under load: {} requests served, 0 failed; write-to-first-new-response median {:.1} ms, max {:.1} ms",
        served.load(Ordering::Relaxed),
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
    );
    host.wait_for_log("plugin flip: generation 21 loaded", WAIT);
}

#[test]
fn a_slow_teardown_runs_off_the_request_path() {
    let config = "[plugins.slow]\ndrop_ms = 3000\n";
    let host = HostProcess::start(&["libslow.so"], config);
    let mut c = host.connect();
    // This request holds generation 1 while generation 2 replaces it, so it is the last holder.
    c.send("GET /slow/sleep/1000 HTTP/1.1\r\nHost: x\r\n\r\n");
    host.wait_for_log("slow call 1 began", WAIT);
    // The same library with bytes appended past its end: new content, same code.
    let mut changed = bytes(&artifact("libslow.so"));
    changed.extend_from_slice(&[0; 64]);
    install_by_rename(&host.plugins(), "libslow.so", &changed);
    host.wait_for_log("plugin slow: generation 2 loaded", WAIT);
    let r = c.reply();
    assert_eq!(r.text(), "slept 1000 ms\n");
    // The reply did not wait for generation 1's three-second teardown, which runs elsewhere.
    assert!(
        !host.log().iter().any(|l| l.contains("slow drop ended")),
        "the answer waited for the plugin's teardown"
    );
    host.wait_for_log("slow drop ended", WAIT);
}
