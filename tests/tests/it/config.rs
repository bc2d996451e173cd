//! `config.toml` and the command line: settings reach the plugin's init, flags override the file,
//! errors name the file, the line and the key.

use std::process::Command;

use integration_tests::{HostProcess, artifact};

#[test]
fn plugin_settings_reach_init() {
    let host = HostProcess::start(
        &["libcounter.so", "libkv.so"],
        "[plugins.counter]\nstart = 41\n\n[plugins.kv]\nmax_keys = 0\n",
    );
    let mut c = host.connect();
    assert_eq!(c.get("/counter").text(), "41");
    let r = c
        .send("PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n1")
        .reply();
    assert_eq!(r.status, 507, "max_keys = 0 reached the plugin");
}

#[test]
fn bad_plugin_settings_refuse_that_plugin_only() {
    let host = HostProcess::start(
        &["libcounter.so", "libhello.so"],
        "[plugins.counter]\nstart = \"ten\"\n",
    );
    let line = host.wait_for_log("plugin counter: refused", std::time::Duration::from_secs(5));
    assert!(
        line.contains("bad settings") && line.contains("start"),
        "{line}"
    );
    let mut c = host.connect();
    assert_eq!(c.get("/counter").status, 503);
    assert_eq!(c.get("/hello").text(), "Hello");
}

fn run_host(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(artifact("mini-async-http"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run the host");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_name_file_line_and_key_and_exit_non_zero() {
    let dir = HostProcess::prepare(&[], "workers = 2\nlisen = \"127.0.0.1:1\"\n");
    let (code, err) = run_host(&dir, &["--config", "config.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("config.toml:2:") && err.contains("lisen"),
        "{err}"
    );

    std::fs::write(
        dir.join("config.toml"),
        "[limits]\nmax_body_bytes = \"big\"\n",
    )
    .unwrap();
    let (code, err) = run_host(&dir, &["--config", "config.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("config.toml:2:") && err.contains("max_body_bytes"),
        "{err}"
    );

    let (code, err) = run_host(&dir, &["--config", "missing.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing.toml"), "{err}");

    let (code, err) = run_host(&dir, &["--workers", "0"]);
    assert_eq!(code, Some(2), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn flags_override_the_file_and_a_used_port_is_a_clear_error() {
    let host = HostProcess::start(&["libhello.so"], "listen = \"127.0.0.1:1\"\nworkers = 7\n");
    // --listen 127.0.0.1:0 (from the harness) won over the file's port 1.
    assert_ne!(host.addr.port(), 1);
    let line = host.wait_for_log("listening", std::time::Duration::from_secs(5));
    assert!(line.contains("workers=2"), "--workers 2 won: {line}");
    let dir = HostProcess::prepare(&[], "");
    let (code, err) = run_host(
        &dir,
        &["--listen", &host.addr.to_string(), "--plugins", "plugins"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {}", host.addr)),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_and_version() {
    let dir = std::env::temp_dir();
    let out = Command::new(artifact("mini-async-http"))
        .current_dir(&dir)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && help.contains("--plugins") && help.contains("Examples:"),
        "{help}"
    );
    let out = Command::new(artifact("mini-async-http"))
        .current_dir(&dir)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mini-async-http 0.1.0"));
}
