//! `mini-async-http dev CRATE_DIR…`: the plugin author's loop. The host serves as `serve` does;
//! beside it, this watches each plugin crate's `src/`, `build.rs` and `Cargo.toml`, and on a save
//! builds that crate (`cargo build --release`, its compiler messages shown as they come), installs
//! the library in the plugins folder (a rename, which the host reloads at once), waits until the
//! new code serves and says so in one line: `greeter rebuilt in 2.4 s; generation 5 serving`.
//!
//! It builds only the crate that changed, one build at a time, and never reacts to what a build
//! writes (`target/` is not watched, and only source files count). A build that fails, or does
//! not load, leaves the last good generation serving. With several server processes, the line
//! comes when one of them serves the new build.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};

use crate::admin::Overview;

/// Saves that come together (an editor writes a file in steps, a formatter touches several)
/// are one rebuild: this long without another event.
const QUIET: Duration = Duration::from_millis(30);
/// How long a new build may take to serve before the loop says it did not.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How the loop learns what serves: the supervisor's overview.
pub type Overviews = Box<dyn Fn() -> Option<Overview> + Send>;

/// The crate folders, absolute, once each is checked to be a crate: call it before serving.
///
/// # Errors
/// A folder has no `Cargo.toml`.
pub fn check(crates: Vec<PathBuf>) -> io::Result<Vec<PathBuf>> {
    let crates: Vec<PathBuf> = crates
        .into_iter()
        .map(|c| std::path::absolute(&c))
        .collect::<io::Result<_>>()?;
    for c in &crates {
        if !c.join("Cargo.toml").is_file() {
            return Err(io::Error::other(format!(
                "{} has no Cargo.toml: not a crate",
                c.display()
            )));
        }
    }
    Ok(crates)
}

/// Starts the loop on its own thread: builds each crate once, then on every save. `crates` come
/// from [`check`].
///
/// # Errors
/// The watch cannot be set up.
pub fn spawn(crates: Vec<PathBuf>, plugins: PathBuf, overviews: Overviews) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        use notify::EventKind::{Access, Modify};
        use notify::event::ModifyKind::Metadata;
        match event {
            // Events were dropped (the kernel's queue overflowed): anything may have changed.
            Ok(e) if e.need_rescan() => {
                let _ = tx.send(Vec::new());
            }
            // A build reads the sources (inotify reports every open): only changes count.
            Ok(e) if !matches!(e.kind, Access(_) | Modify(Metadata(_))) => {
                let _ = tx.send(e.paths);
            }
            _ => {}
        }
    })
    .map_err(io::Error::other)?;
    for c in &crates {
        // The crate's own folder for Cargo.toml and build.rs, `src/` with all below it; never
        // `target/`, which a build fills (and which can hold more folders than inotify takes).
        watcher
            .watch(c, RecursiveMode::NonRecursive)
            .map_err(io::Error::other)?;
        let src = c.join("src");
        if src.is_dir() {
            watcher
                .watch(&src, RecursiveMode::Recursive)
                .map_err(io::Error::other)?;
        }
    }
    std::thread::Builder::new()
        .name("dev".into())
        .spawn(move || {
            let _watcher = watcher;
            for c in &crates {
                rebuild(c, &plugins, &overviews, ("built", Instant::now()));
            }
            while let Ok(paths) = rx.recv() {
                let saved = Instant::now();
                let mut changed: BTreeSet<PathBuf> = owners(&crates, &paths).cloned().collect();
                // The rest of this save.
                while let Ok(more) = rx.recv_timeout(QUIET) {
                    changed.extend(owners(&crates, &more).cloned());
                }
                for c in &changed {
                    rebuild(c, &plugins, &overviews, ("rebuilt", saved));
                }
                // What the builds stirred up meanwhile (editors saving again included) is looked
                // at afresh: a save during a build makes one more build, no more.
            }
        })?;
    Ok(())
}

/// The crates a changed source file belongs to; what a build writes (`target/`) and editors'
/// droppings (hidden files, `~` backups) count for none.
fn owners<'a>(crates: &'a [PathBuf], paths: &'a [PathBuf]) -> impl Iterator<Item = &'a PathBuf> {
    crates.iter().filter(move |c| {
        // No paths: a rescan, every crate.
        paths.is_empty()
            || paths.iter().any(|p| {
                let Ok(rel) = p.strip_prefix(c) else {
                    return false;
                };
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                if name.starts_with('.') || name.ends_with('~') {
                    return false;
                }
                rel.starts_with("src")
                    || rel == Path::new("Cargo.toml")
                    || rel == Path::new("build.rs")
            })
    })
}

/// Builds one crate, installs its library and reports, in one line, how it went: `done` says
/// what it was, and since when (the save) the time counts.
fn rebuild(krate: &Path, plugins: &Path, overviews: &Overviews, (done, saved): (&str, Instant)) {
    let name = krate
        .file_name()
        .map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
    let started = Instant::now();
    let library = match build(krate) {
        Ok(library) => library,
        Err(why) => {
            eprintln!("{name}: {why}; the last good build keeps serving");
            return;
        }
    };
    let built = started.elapsed();
    let Some(file_name) = library.file_name().map(|f| f.to_owned()) else {
        return;
    };
    let installed = plugins.join(&file_name);
    let staged = plugins.join(format!(".{}.dev", file_name.to_string_lossy()));
    let bytes = match std::fs::read(&library) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{name}: cannot read {}: {e}", library.display());
            return;
        }
    };
    // The bytes hashed are the bytes installed, whatever rewrites the build's copy meanwhile.
    let sha = hex(&Sha256::digest(&bytes));
    let failed_before = failed_loads(overviews, &file_name.to_string_lossy());
    // Written beside it and renamed over it: complete when it appears, reloaded at once.
    if let Err(e) =
        std::fs::write(&staged, &bytes).and_then(|()| std::fs::rename(&staged, &installed))
    {
        eprintln!("{name}: cannot install {}: {e}", installed.display());
        return;
    }
    let wanted = file_name.to_string_lossy().into_owned();
    let until = Instant::now() + SERVE_TIMEOUT;
    loop {
        let serving = overviews().and_then(|o| {
            o.plugins.into_iter().find(|p| {
                p.file.as_deref().is_some_and(|f| f.ends_with(&wanted))
                    && p.sha256.as_deref() == Some(sha.as_str())
            })
        });
        if let Some(row) = serving.and_then(|p| p.generation) {
            // From the save: the quiet wait, the build, the install and the reload.
            let total = saved.elapsed();
            eprintln!(
                "{name} {done} in {:.2} s; generation {row} serving (build {:.2} s, the rest {} ms)",
                total.as_secs_f64(),
                built.as_secs_f64(),
                total.saturating_sub(built).as_millis()
            );
            return;
        }
        if failed_loads(overviews, &wanted) > failed_before {
            eprintln!(
                "{name}: the new build did not load (the log above says why); the last good \
                 build keeps serving"
            );
            return;
        }
        if Instant::now() >= until {
            eprintln!(
                "{name}: the new build did not serve within {} s (see the log above); the last \
                 good build keeps serving",
                SERVE_TIMEOUT.as_secs()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many loads of the plugin in `file_name` failed so far.
fn failed_loads(overviews: &Overviews, file_name: &str) -> u64 {
    overviews()
        .and_then(|o| {
            o.plugins
                .into_iter()
                .find(|p| p.file.as_deref().is_some_and(|f| f.ends_with(file_name)))
        })
        .map_or(0, |p| p.counts.reloads_failed)
}

/// `cargo build --release` of the crate, its messages on the terminal; the library it made.
fn build(krate: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(krate.join("Cargo.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: the closure runs in the forked child before `exec` and makes one
    // async-signal-safe call (prctl). The build dies with the host instead of holding the build
    // folder's lock after it (this thread lives as long as the process).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut library = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let cdylib = msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
            if msg["reason"] == "compiler-artifact" && cdylib {
                library = msg["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".so"))
                    .map(PathBuf::from);
            }
        }
    }
    let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err("the build failed".into());
    }
    library.ok_or_else(|| "the crate builds no cdylib (crate-type = [\"cdylib\"])".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
