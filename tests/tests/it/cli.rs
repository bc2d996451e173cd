//! The command line: `check` (like `nginx -t`) and `new-plugin`.

use std::process::Command;
use std::time::Duration;

use integration_tests::{HostProcess, artifact, workspace_root};

fn run_host(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(artifact("mini-async-http"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run the host");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_reports_every_plugin_and_route() {
    let config = "[[routes]]\nprefix = \"/api\"\nplugin = \"counter\"\n";
    let dir = HostProcess::prepare(&["libhello.so", "libcounter.so"], config);
    let (code, out, err) = run_host(
        &dir,
        &["check", "--config", "config.toml", "--plugins", "plugins"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("config.toml: ok: listen 127.0.0.1:7878"),
        "{out}"
    );
    assert!(out.contains("plugin hello 0.1.0 (ABI 4): ok"), "{out}");
    assert!(
        out.contains("plugin counter 0.1.0 (ABI 4): ok") && out.contains("/api"),
        "{out}"
    );
    assert!(out.ends_with("all good\n"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_fails_with_every_problem_named() {
    let config = "[[routes]]\nprefix = \"/gone\"\nplugin = \"absent\"\n";
    let dir = HostProcess::prepare(
        &["libhello.so", "libwrong_abi.so", "libinit_fails.so"],
        config,
    );
    let (code, out, err) = run_host(
        &dir,
        &["check", "--config", "config.toml", "--plugins", "plugins"],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("libwrong_abi.so: refused: plugin ABI version 5"),
        "{out}"
    );
    assert!(
        out.contains("libinit_fails.so: refused: init failed"),
        "{out}"
    );
    assert!(
        out.contains("route /gone: plugin absent has no file"),
        "{out}"
    );
    assert!(err.contains("3 problem(s) found"), "{err}");

    std::fs::write(dir.join("config.toml"), "workers = 0\n").unwrap();
    let (code, _, err) = run_host(&dir, &["check", "--config", "config.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("config.toml:1:") && err.contains("workers"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn new_plugin_writes_a_crate_that_builds_and_serves() {
    let work = std::env::temp_dir().join(format!("mah-new-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (code, out, err) = run_host(&work, &["new-plugin", "hi-there", "--path", "."]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cargo build --release"), "{out}");
    let krate = work.join("hi-there");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = workspace_root().join("target").join("it");
    for args in [
        &["test", "--quiet"][..],
        &["build", "--release", "--quiet"][..],
    ] {
        let status = Command::new(&cargo)
            .current_dir(&krate)
            .args(args)
            .arg("--target-dir")
            .arg(&target)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cargo {args:?} failed in the generated crate"
        );
    }
    let host = HostProcess::start(&[], "[plugins.hi_there]\ngreeting = \"Hi\"\n");
    std::fs::copy(
        target.join("release/libhi_there.so"),
        host.plugins().join("libhi_there.so"),
    )
    .unwrap();
    host.wait_for_log(
        "plugin hi_there: generation 1 loaded",
        Duration::from_secs(30),
    );
    let r = host.connect().get("/hi_there?ann");
    assert_eq!((r.status, r.text()), (200, "Hi, ann!"));
    // A second run does not overwrite it.
    let (code, _, err) = run_host(&work, &["new-plugin", "hi-there"]);
    assert_eq!(code, Some(1), "{err}");
    std::fs::remove_dir_all(&work).unwrap();
}
