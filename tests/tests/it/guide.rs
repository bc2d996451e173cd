//! README's "Write a plugin", followed step by step: `cargo new --lib`, the `Cargo.toml` lines and
//! the `src/lib.rs` from the README, `cargo build --release`, drop the library in, `curl`.

use std::process::Command;

use integration_tests::{HostProcess, workspace_root};

const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The first fenced block of `lang` after the heading `section` in README.md.
fn readme_block(section: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme
        .find(section)
        .unwrap_or_else(|| panic!("README has no {section:?}"));
    let fence = format!("```{lang}\n");
    let from = readme[start..].find(&fence).expect("a code block") + start + fence.len();
    let len = readme[from..].find("```").expect("a closed block");
    readme[from..from + len].to_owned()
}

/// README's steps 1 to 3 in a fresh folder named after `tag`: `cargo new --lib greeter`, its
/// `Cargo.toml` lines (with plugin-api where this checkout has it) and `src/lib.rs`. Returns the
/// folder and the crate.
fn readme_crate(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let work = std::env::temp_dir().join(format!("mah-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    // Step 1: cargo new --lib greeter
    let status = Command::new(&cargo)
        .current_dir(&work)
        .args(["new", "--lib", "--vcs", "none", "--quiet", "greeter"])
        .status()
        .unwrap();
    assert!(status.success());
    let krate = work.join("greeter");

    // Step 2: Cargo.toml, with plugin-api where this checkout has it.
    let manifest_path = krate.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let block = readme_block("## Write a plugin", "toml");
    let plugin_api = workspace_root().join("plugin-api");
    let block = block.replace(
        "path/to/mini-async-http/plugin-api",
        plugin_api.to_str().unwrap(),
    );
    let manifest = manifest.replace("[dependencies]\n", "") + "\n" + &block;
    std::fs::write(&manifest_path, manifest).unwrap();

    // Step 3: src/lib.rs
    std::fs::write(
        krate.join("src/lib.rs"),
        readme_block("## Write a plugin", "rust"),
    )
    .unwrap();
    (work, krate)
}

#[test]
fn the_readme_plugin_guide_works() {
    let (work, krate) = readme_crate("guide");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    // Step 4: cargo build --release (sharing the harness's target folder to save time)
    let target = workspace_root().join("target").join("it");
    let status = Command::new(&cargo)
        .current_dir(&krate)
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "the README's plugin does not build");

    // Step 5: drop it into the plugins folder and ask for it.
    let dir = HostProcess::prepare(&[], "");
    std::fs::copy(
        target.join("release/libgreeter.so"),
        dir.join("plugins/libgreeter.so"),
    )
    .unwrap();
    let host = HostProcess::spawn(&dir, &[]).ready();
    let r = host.connect().get("/greeter?ann");
    assert_eq!((r.status, r.text()), (200, "Hello, ann!"));
    std::fs::remove_dir_all(&work).unwrap();
}

/// The same section's `dev` loop: serve the crate, save a change, see the one line, get the new
/// answer; a change that does not compile leaves the last good build serving.
#[test]
fn the_readme_dev_loop_rebuilds_on_save() {
    let (work, krate) = readme_crate("dev");
    let lib = krate.join("src/lib.rs");

    // `mini-async-http dev --plugins plugins greeter`, as the README has it (its arguments after
    // `dev`; the harness adds the config, port and workers), sharing the harness's target folder.
    let command = readme_block("## Write a plugin", "sh");
    assert_eq!(
        command.trim(),
        "mini-async-http dev --plugins plugins greeter"
    );
    let dir = HostProcess::prepare(&[], "");
    let target = workspace_root().join("target").join("it");
    let host = HostProcess::spawn_dev(&dir, &krate, &target).ready();
    host.wait_for_log("greeter built in", WAIT);
    let r = host.connect().get("/greeter?ann");
    assert_eq!((r.status, r.text()), (200, "Hello, ann!"));

    // Save a change: one line, and the new code serves.
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, code.replace("Hello, {name}!", "Hi, {name}!")).unwrap();
    let line = host.wait_for_log("greeter rebuilt in", WAIT);
    assert!(line.contains("generation 2 serving"), "{line}");
    assert_eq!(host.connect().get("/greeter?ann").text(), "Hi, ann!");

    // A change that does not compile: the error, and the last good build serves on.
    std::fs::write(&lib, code.replace(".unwrap()", ".unwrap() nope")).unwrap();
    host.wait_for_log(
        "greeter: the build failed; the last good build keeps serving",
        WAIT,
    );
    assert_eq!(host.connect().get("/greeter?ann").text(), "Hi, ann!");
    // One line per save: the build did not set off another.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let rebuilt = host
        .log()
        .iter()
        .filter(|l| l.contains("greeter rebuilt"))
        .count();
    assert_eq!(rebuilt, 1, "log:\n{}", host.log().join("\n"));
    drop(host);
    std::fs::remove_dir_all(&work).unwrap();
}
