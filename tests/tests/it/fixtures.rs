//! Plugins that misbehave on purpose: each gets one clear log line naming the file and the reason,
//! and every other plugin keeps serving.

use std::time::Duration;

use integration_tests::{HostProcess, abort_build};

const ALL_BAD: &[&str] = &[
    "libhello.so",
    "libpanicky.so",
    "libinit_fails.so",
    "libwrong_abi.so",
    "libno_symbol.so",
];

fn start_with_bad_plugins() -> HostProcess {
    let dir = HostProcess::prepare(ALL_BAD, "");
    std::fs::write(
        dir.join("plugins").join("libnot_a_library.so"),
        "#!/bin/sh\necho hi\n",
    )
    .unwrap();
    std::fs::create_dir(dir.join("plugins").join("libsubfolder.so")).unwrap();
    std::fs::write(dir.join("plugins").join("README.txt"), "not a plugin").unwrap();
    HostProcess::spawn(&dir, &[]).ready()
}

#[test]
fn each_bad_plugin_is_refused_with_a_clear_line_and_the_rest_serve() {
    let host = start_with_bad_plugins();
    let wait = |needle: &str| host.wait_for_log(needle, Duration::from_secs(5));
    let line = wait("plugin init_fails: refused libinit_fails.so");
    assert!(
        line.contains("init failed: refusing to start on purpose"),
        "{line}"
    );
    let line = wait("plugin wrong_abi: refused libwrong_abi.so");
    assert!(
        line.contains("plugin ABI version 5") && line.contains("host speaks ABI version 4"),
        "{line}"
    );
    let line = wait("plugin no_symbol: refused libno_symbol.so");
    assert!(
        line.contains("no `mini_async_http_plugin` symbol"),
        "{line}"
    );
    let line = wait("plugin not_a_library: refused libnot_a_library.so");
    assert!(line.contains("not a shared library"), "{line}");
    // Folders and other files are not plugins: not even mentioned.
    assert!(
        !host
            .log()
            .iter()
            .any(|l| l.contains("subfolder") || l.contains("README"))
    );

    let mut c = host.connect();
    assert_eq!(c.get("/hello").text(), "Hello");
    // A mounted plugin that failed to load is unavailable, not absent.
    assert_eq!(c.get("/init_fails").status, 503);
    assert_eq!(c.get("/wrong_abi/x").status, 503);
    assert_eq!(c.get("/not_a_library").status, 503);
}

#[test]
fn a_panicking_plugin_answers_500_and_serving_goes_on() {
    let host = HostProcess::start(&["libhello.so", "libpanicky.so"], "");
    let mut c = host.connect();
    for _ in 0..20 {
        let r = c.get("/panicky/boom");
        assert_eq!(r.status, 500, "{r:?}");
        assert_eq!(c.get("/panicky").text(), "calm");
        assert_eq!(c.get("/hello").text(), "Hello");
    }
    let line = host.wait_for_log("handler panicked: boom on purpose", Duration::from_secs(5));
    assert!(line.contains("panicky"), "{line}");
}

#[test]
fn two_files_for_one_name_keep_the_first() {
    let dir = HostProcess::prepare(&["libhello.so"], "");
    std::fs::copy(
        dir.join("plugins/libhello.so"),
        dir.join("plugins/hello.so"),
    )
    .unwrap();
    let host = HostProcess::spawn(&dir, &[]).ready();
    let line = host.wait_for_log("plugin hello: ignored libhello.so", Duration::from_secs(5));
    assert!(
        line.contains("hello.so already provides this plugin"),
        "{line}"
    );
    assert_eq!(host.connect().get("/hello").text(), "Hello");
}

#[test]
fn a_declaration_of_an_older_shorter_shape_loads_without_its_optional_hooks() {
    // Its declared size ends before `on_save`; the words after it would crash the host if read
    // as hooks. A rebuild (another file: one byte appended) swaps it, which asks the old
    // generation for its state and hands it to the new one: neither hook exists.
    let host = HostProcess::start(&["libold_shape.so"], "");
    let r = host.connect().get("/old_shape");
    assert_eq!(
        (r.status, r.text(), r.header("x-shape")),
        (200, "short", Some("short"))
    );
    let file = host.plugins().join("libold_shape.so");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(0);
    let staged = host.dir.join("libold_shape.so.new");
    std::fs::write(&staged, &bytes).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    host.wait_for_log(
        "plugin old_shape: generation 2 loaded",
        Duration::from_secs(20),
    );
    assert_eq!(host.connect().get("/old_shape").text(), "short");
}

#[test]
fn a_plugin_built_with_panic_abort_is_refused_naming_both_strategies() {
    let dir = HostProcess::prepare(&[], "");
    std::fs::copy(abort_build(), dir.join("plugins").join("libhello.so")).unwrap();
    let host = HostProcess::spawn(&dir, &[]).ready();
    let line = host.wait_for_log("plugin hello: refused libhello.so", Duration::from_secs(20));
    assert!(
        line.contains("built with panic = \"abort\"") && line.contains("needs panic = \"unwind\""),
        "{line}"
    );
    assert_eq!(host.connect().get("/hello").status, 503);
}
