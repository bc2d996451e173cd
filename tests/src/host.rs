//! Starting the real host binary against real plugins.
//!
//! `cargo test` does not write the `.so` of cdylib crates, so [`build`] runs `cargo build` once per
//! test process for the binary and every plugin the tests load, into its own target directory
//! (`target/it`) so that it never waits on the build lock of the `cargo test` that runs it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::Client;

/// Every package the tests load, by cargo package name.
const PACKAGES: &[&str] = &[
    "mini-async-http",
    "hello",
    "counter",
    "echo",
    "kv",
    "panicky",
    "init-fails",
    "wrong-abi",
    "no-symbol",
    "raw-bad",
    "static-files",
    "events",
    "chaos",
    "crash-init",
    "slow",
    "old-shape",
    "keeper",
];

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// Builds the binary and the plugins once; returns the folder they are in.
///
/// # Panics
/// If the build fails (its output is shown).
pub fn build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Before the default build, which puts the default `libchaos.so` back.
        variant("chaos", "b");
        let root = workspace_root();
        let target = root.join("target").join("it");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .arg("build")
            .arg("--quiet")
            .arg("--target-dir")
            .arg(&target);
        for p in PACKAGES {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of the host and plugins failed"
        );
        let out = target.join("debug");
        build_c_plugin(&root, &out);
        out
    })
}

/// Builds the C example plugin (`plugins/c-greeter`) with the system C compiler (`$CC`, else
/// `cc`) into `out/libc_greeter.so`, warnings as errors, against the generated header.
///
/// # Panics
/// If there is no C compiler or the build fails.
fn build_c_plugin(root: &Path, out: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .current_dir(root)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O2",
            "-fPIC",
        ])
        .args(["-shared", "-I", "plugin-api/include", "-o"])
        .arg(out.join("libc_greeter.so"))
        .arg("plugins/c-greeter/greeter.c")
        .status()
        .unwrap_or_else(|e| panic!("run the C compiler {cc:?}: {e}"));
    assert!(status.success(), "the C plugin did not build with {cc}");
}

/// Builds the `flip` fixture as variant `a` and as variant `b`, once; returns the two library files
/// (named `libflip-a.so.bin` and `libflip-b.so.bin`, so that nothing mistakes them for plugins).
///
/// # Panics
/// If a build fails.
pub fn flip_variants() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| (variant("flip", "a"), variant("flip", "b")))
}

/// The `chaos` fixture built as variant `b`: a rebuild (another file, answering `calm b`). [`build`]
/// makes it, before the default build that the other tests copy.
pub fn chaos_rebuild() -> PathBuf {
    build().join("libchaos-b.so.bin")
}

/// The `hello` plugin built with `panic = "abort"` (the `plugin-abort` profile), once; returns a
/// copy of its library named `libhello-abort.so.bin`.
///
/// # Panics
/// If the build fails.
pub fn abort_build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = workspace_root().join("target").join("it");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(&cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "-p",
                "hello",
                "--profile",
                "plugin-abort",
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of hello (panic = abort) failed"
        );
        let out = target.join("plugin-abort");
        let copy = out.join("libhello-abort.so.bin");
        std::fs::copy(out.join("libhello.so"), &copy).expect("copy the build");
        copy
    })
}

/// Builds fixture `package` with `PACKAGE_VARIANT=variant` into `target/it`; returns a copy of its
/// library named `libPACKAGE-VARIANT.so.bin`, so that nothing mistakes it for a plugin.
fn variant(package: &str, variant: &str) -> PathBuf {
    let target = workspace_root().join("target").join("it");
    let out = target.join("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--target-dir"])
        .arg(target)
        .env(format!("{}_VARIANT", package.to_uppercase()), variant)
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of {package} ({variant}) failed"
    );
    let copy = out.join(format!("lib{package}-{variant}.so.bin"));
    std::fs::copy(out.join(format!("lib{package}.so")), &copy).expect("copy the variant");
    copy
}

/// The path of a built artifact: `artifact("libhello.so")`, `artifact("mini-async-http")`.
pub fn artifact(name: &str) -> PathBuf {
    build().join(name)
}

/// A running host binary in a temporary folder of its own.
pub struct HostProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The temporary folder: `config.toml` and `plugins/` are in it.
    pub dir: PathBuf,
    child: Child,
    log: Arc<Log>,
    /// Processes the host started that outlive it (a supervisor started by a binary upgrade):
    /// killed on drop if the test did not stop them.
    adopted: Mutex<Vec<u32>>,
}

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
    closed: Mutex<bool>,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

impl HostProcess {
    /// Starts the host with `plugins` (file names such as `libhello.so`, copied from the build)
    /// in its plugins folder, and `config` as its `config.toml`.
    ///
    /// # Panics
    /// If the host does not report that it listens within a minute; shows its log.
    pub fn start(plugins: &[&str], config: &str) -> HostProcess {
        Self::start_with_args(plugins, config, &[])
    }

    /// Like [`start`](Self::start), with extra command-line arguments.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_with_args(plugins: &[&str], config: &str, args: &[&str]) -> HostProcess {
        let dir = Self::prepare(plugins, config);
        Self::spawn(&dir, args).ready()
    }

    /// Waits until the supervisor logs that the server listens (its first server process serves),
    /// and takes the address from that line.
    ///
    /// # Panics
    /// If that takes more than a minute, or the host exits; shows its log.
    pub fn ready(mut self) -> HostProcess {
        let line = self.wait_for_log(" processes=", Duration::from_secs(60));
        self.addr = line
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        self
    }

    /// Makes the temporary folder with `plugins/` and `config.toml`.
    pub fn prepare(plugins: &[&str], config: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mah-it-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins")).expect("make the temp folder");
        for p in plugins {
            std::fs::copy(artifact(p), dir.join("plugins").join(p)).expect("copy a plugin");
        }
        std::fs::write(dir.join("config.toml"), config).expect("write config.toml");
        dir
    }

    /// Runs the binary in `dir` with `--config dir/config.toml --plugins dir/plugins --listen
    /// 127.0.0.1:0` (and `--workers 2` unless `args` say otherwise) and `args`, without waiting for
    /// it.
    pub fn spawn(dir: &Path, args: &[&str]) -> HostProcess {
        Self::spawn_wrapped(dir, args, &[])
    }

    /// Like [`spawn`](Self::spawn), run through a wrapper command, such as
    /// `["prlimit", "--nofile=64"]`.
    pub fn spawn_wrapped(dir: &Path, args: &[&str], wrapper: &[&str]) -> HostProcess {
        Self::launch(dir, args, wrapper, &[])
    }

    /// Like [`spawn`](Self::spawn), with these environment variables set too.
    pub fn spawn_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> HostProcess {
        Self::launch(dir, args, &[], env)
    }

    /// `mini-async-http dev --plugins plugins CRATE …` in `dir` (with the harness's config, port and
    /// workers), its builds in `target` (`CARGO_TARGET_DIR`).
    pub fn spawn_dev(dir: &Path, krate: &Path, target: &Path) -> HostProcess {
        let krate = krate.to_string_lossy().into_owned();
        let target = [("CARGO_TARGET_DIR", target)];
        Self::launch_with(
            &artifact("mini-async-http"),
            dir,
            (&["dev"], &[krate.as_str()]),
            &[],
            &target,
        )
    }

    /// Like [`spawn`](Self::spawn), running the host binary at `binary` (a copy, which a test may
    /// replace with a new build).
    pub fn spawn_binary(dir: &Path, binary: &Path, args: &[&str]) -> HostProcess {
        Self::launch_binary(binary, dir, args, &[], &[])
    }

    fn launch(dir: &Path, args: &[&str], wrapper: &[&str], env: &[(&str, &Path)]) -> HostProcess {
        Self::launch_binary(&artifact("mini-async-http"), dir, args, wrapper, env)
    }

    fn launch_binary(
        binary: &Path,
        dir: &Path,
        args: &[&str],
        wrapper: &[&str],
        env: &[(&str, &Path)],
    ) -> HostProcess {
        Self::launch_with(binary, dir, (&[], args), wrapper, env)
    }

    /// `binary [before…] --config … --plugins … --listen … --workers 2 [args…]`.
    fn launch_with(
        binary: &Path,
        dir: &Path,
        (before, args): (&[&str], &[&str]),
        wrapper: &[&str],
        env: &[(&str, &Path)],
    ) -> HostProcess {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg("--").arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .current_dir(dir)
            .args(before)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("--plugins")
            .arg(dir.join("plugins"))
            .args(["--listen", "127.0.0.1:0"])
            .args(if args.contains(&"--workers") {
                &[][..]
            } else {
                &["--workers", "2"][..]
            })
            .args(args)
            .env("RUST_LOG", "info,mini_async_http=debug")
            .envs(env.iter().copied())
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the host binary");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            // A test that panics while holding the lock must not stop this thread: the host would
            // then block on a full stderr pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line);
                sink.grew.notify_all();
            }
            *sink.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
            sink.grew.notify_all();
        });
        HostProcess {
            addr: "0.0.0.0:0".parse().expect("an address"),
            dir: dir.to_owned(),
            child,
            log,
            adopted: Mutex::new(Vec::new()),
        }
    }

    /// Takes charge of `pid`, a process this host started that outlives it (a new supervisor
    /// after a binary upgrade): [`stop_adopted`](Self::stop_adopted) stops it, and so does the
    /// drop, if the test could not.
    pub fn adopt(&self, pid: u32) {
        self.adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
    }

    /// Waits for the log line of a binary upgrade that went through (SIGUSR2), adopts the new
    /// supervisor it names, and returns its pid.
    ///
    /// # Panics
    /// If no such line comes within `timeout`, or it names no pid.
    pub fn wait_for_upgrade(&self, timeout: Duration) -> u32 {
        let pid = self.wait_for_upgrade_start(timeout);
        let served = pid_in(&self.wait_for_log("upgrade: the new supervisor (pid", timeout));
        assert_eq!(served, pid, "another supervisor serves");
        pid
    }

    /// Waits for the log line of a binary upgrade that started (SIGUSR2), adopts the new
    /// supervisor it names (so that a test that fails later still stops it), and returns its pid.
    ///
    /// # Panics
    /// If no such line comes within `timeout`, or it names no pid.
    pub fn wait_for_upgrade_start(&self, timeout: Duration) -> u32 {
        let pid = pid_in(&self.wait_for_log("SIGUSR2: upgrade: started", timeout));
        self.adopt(pid);
        pid
    }

    /// Sends SIGTERM to an adopted process and waits, at most `timeout`, for it to be gone.
    ///
    /// # Panics
    /// If it is still there after `timeout`.
    pub fn stop_adopted(&self, pid: u32, timeout: Duration) {
        send_signal("TERM", pid);
        let deadline = Instant::now() + timeout;
        while is_host(pid, &self.dir) {
            assert!(Instant::now() < deadline, "process {pid} did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection to the host.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The plugins folder.
    pub fn plugins(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for a log line containing `needle` (counting lines already seen) and returns it.
    ///
    /// # Panics
    /// If none comes before `timeout`, or the process ends; shows the whole log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_nth_log(needle, 1, timeout)
    }

    /// Waits until `n` log lines contain `needle`, and returns the `n`th.
    ///
    /// # Panics
    /// As [`wait_for_log`](Self::wait_for_log).
    pub fn wait_for_nth_log(&self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(line) = lines.iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return line.clone();
            }
            let now = Instant::now();
            let closed = *self.log.closed.lock().unwrap_or_else(|e| e.into_inner());
            assert!(
                now < deadline && !closed,
                "no log line #{n} with {needle:?} ({}); log:\n{}",
                if closed {
                    "the host exited"
                } else {
                    "timed out"
                },
                lines.join("\n")
            );
            let wait = (deadline - now).min(Duration::from_millis(200));
            lines = self
                .log
                .grew
                .wait_timeout(lines, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The supervisor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The supervisor and its server processes, from `/proc`.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            if stat_fields(pid).get(1).and_then(|f| f.parse().ok()) == Some(self.pid()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The CPU time (user + system) of the supervisor and its server processes so far.
    pub fn cpu_time(&self) -> Duration {
        let ticks: u64 = self
            .pids()
            .into_iter()
            .map(|pid| {
                let f = stat_fields(pid);
                let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                get(11) + get(12)
            })
            .sum();
        Duration::from_millis(ticks * 10)
    }

    /// How many descriptors the supervisor and its server processes have open, from `/proc`.
    pub fn open_fds(&self) -> usize {
        self.pids()
            .into_iter()
            .map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()))
            .sum()
    }

    /// The admin listener's address, from its log line (`[admin] listen` must be set).
    ///
    /// # Panics
    /// If the line does not come within 30 s.
    pub fn admin(&self) -> SocketAddr {
        let line = self.wait_for_log("admin listening", Duration::from_secs(30));
        line.split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Sends `signal` (e.g. `"TERM"`, `"HUP"`) to the host.
    ///
    /// # Panics
    /// If `kill` cannot be run.
    pub fn signal(&self, signal: &str) {
        send_signal(signal, self.child.id());
    }

    /// Sends `signal` (`KILL`, `STOP`…) to the supervisor's (first) server process, as a crash or
    /// a hang would strike it; returns its pid.
    ///
    /// # Panics
    /// If there is no server process, or `kill` fails.
    pub fn signal_server(&self, signal: &str) -> u32 {
        let pid = self.server_pid();
        send_signal(signal, pid);
        pid
    }

    /// The id of a server process (a child of the supervisor).
    ///
    /// # Panics
    /// If there is none.
    pub fn server_pid(&self) -> u32 {
        self.pids()
            .into_iter()
            .find(|&p| p != self.pid())
            .expect("a server process")
    }

    /// Waits for the host to exit, at most `timeout`; returns its exit code.
    ///
    /// # Panics
    /// If it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the host did not exit; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, …
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self
            .adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            if is_host(pid, &self.dir) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pid a log line names as `(pid N)`.
fn pid_in(line: &str) -> u32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Whether `pid` is a live host process started on `dir` (not a zombie, not another process
/// that reused the id: its command line names the folder).
fn is_host(pid: u32, dir: &Path) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains("mini-async-http") && cmdline.contains(&*dir.to_string_lossy())
}

/// `kill -SIGNAL pid`.
fn send_signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}
