//! The host binary: reads arguments, installs logging, loads `config.toml`, and serves the plugins
//! folder (as the supervisor, or as one of its server processes), checks it, or writes a new
//! plugin. Everything else is in the library.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mini_async_http::config::{Config, Overrides, parse_processes};
use mini_async_http::host::Host;
use mini_async_http::plugin::{Quarantined, Registry};
use mini_async_http::supervisor::{self, Ended, Link};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};

/// Serves HTTP/1.1 with request handlers loaded from plugins (*.so) in a folder.
#[derive(Parser)]
#[command(
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    // A flag given twice: the last one counts, as in most tools (a wrapper script adds one).
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: HostArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the plugins folder (the default)
    Serve(HostArgs),
    /// Check config.toml and load every plugin without serving; exit 1 on any problem
    Check(HostArgs),
    /// Serve, and rebuild and reload each plugin crate given when its sources change
    Dev {
        #[command(flatten)]
        host: HostArgs,
        /// The plugin crates' folders
        #[arg(value_name = "CRATE_DIR", required = true)]
        crates: Vec<PathBuf>,
    },
    /// Write a new plugin crate that builds and serves on the first try
    NewPlugin {
        /// The plugin's name: it is served at /NAME
        name: String,
        /// The folder to create the crate in
        #[arg(long, value_name = "DIR", default_value = ".")]
        path: PathBuf,
    },
    /// One server process, started by `serve` with the sockets it inherits (not by hand)
    #[command(hide = true)]
    ServerProcess {
        #[command(flatten)]
        host: HostArgs,
        /// Its number under the supervisor
        #[arg(long)]
        process: usize,
        /// A plugin file not to load: NAME=SHA256-PREFIX (repeatable)
        #[arg(long, value_parser = parse_quarantined)]
        quarantined: Vec<Quarantined>,
    },
}

#[derive(Args, Clone)]
struct HostArgs {
    /// The configuration file [default: config.toml, optional]
    #[arg(long, short, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The address to listen on, overriding the file
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The plugins folder, overriding the file
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Worker threads in each server process, overriding the file
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Server processes (a number, or "auto" for one per CPU), overriding the file
    #[arg(long, value_name = "N", value_parser = parse_processes)]
    processes: Option<usize>,
}

impl HostArgs {
    /// The flags a server process gets from the supervisor: the same files and workers. It
    /// inherits the listening socket, so `--listen` is not passed.
    fn for_server_process(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(config) = &self.config {
            args.extend(["--config".into(), config.clone().into_os_string()]);
        }
        if let Some(dir) = &self.plugins {
            args.extend(["--plugins".into(), dir.clone().into_os_string()]);
        }
        if let Some(workers) = self.workers {
            args.extend(["--workers".into(), workers.to_string().into()]);
        }
        args
    }
}

fn parse_quarantined(text: &str) -> Result<Quarantined, String> {
    let (plugin, sha) = text
        .split_once('=')
        .filter(|(plugin, sha)| !plugin.is_empty() && !sha.is_empty())
        .ok_or_else(|| format!("{text:?} is not NAME=SHA"))?;
    Ok(Quarantined {
        plugin: plugin.into(),
        sha: sha.into(),
    })
}

const EXAMPLES: &str = "\
Examples:
  mini-async-http                                   serve ./plugins as config.toml says
  mini-async-http --listen 0.0.0.0:8080 --workers 4 --processes 2
  mini-async-http check --config /etc/mini-async-http.toml
  mini-async-http new-plugin greeter && cd greeter && cargo build --release
  RUST_LOG=debug mini-async-http

A supervisor runs the server processes and replaces any that dies (a crashing plugin is named in
the log, and quarantined after repeated crashes). Plugins and config.toml are reloaded when they
change. Signals: SIGTERM or SIGINT drain and exit (after [limits] drain_delay_ms); SIGHUP reloads
the configuration, rescans the plugins folder and lifts every quarantine; SIGUSR2 starts the binary
installed at this one's path on the same sockets, and drains this one once it serves.
Exit codes: 0 done, 1 a problem (printed), 2 bad arguments.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    let result = match command {
        Command::Serve(args) => serve(args, None),
        Command::Dev { host, crates } => serve(host, Some(crates)),
        Command::Check(args) => check(args),
        Command::NewPlugin { name, path } => new_plugin(&name, &path),
        Command::ServerProcess {
            host,
            process,
            quarantined,
        } => server_process(host, process, quarantined),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration from the file and the flags, and the file to watch (if any).
fn configure(args: HostArgs) -> anyhow::Result<(Config, Option<PathBuf>, Overrides)> {
    let (path, required) = match args.config {
        Some(path) => (path, true),
        None => (PathBuf::from("config.toml"), false),
    };
    let mut config = Config::load(&path, required)?;
    let overrides = Overrides {
        listen: args.listen,
        plugins_dir: args.plugins,
        workers: args.workers.map(usize::from),
        processes: args.processes,
    };
    overrides.apply(&mut config);
    let watched = (required || path.exists()).then_some(path);
    Ok((config, watched, overrides))
}

/// Logs to standard error at `RUST_LOG`, or else at `level`.
fn install_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// `serve`: the supervisor, which runs the server processes; `dev`: that, and the rebuild loop of
/// `crates` (`dev.rs`).
fn serve(args: HostArgs, crates: Option<Vec<PathBuf>>) -> anyhow::Result<()> {
    let child_args = args.for_server_process();
    let (config, _, _) = configure(args)?;
    let crates = crates.map(mini_async_http::dev::check).transpose()?;
    if crates.is_some() {
        // `dev` puts its builds there: a fresh folder is made, so that it is watched from the start.
        std::fs::create_dir_all(&config.plugins_dir).with_context(|| {
            format!(
                "cannot make the plugins folder {}",
                config.plugins_dir.display()
            )
        })?;
    }
    let on_serving = crates.map(|crates| {
        let plugins = config.plugins_dir.clone();
        Box::new(move |overviews| {
            if let Err(e) = mini_async_http::dev::spawn(crates, plugins, overviews) {
                eprintln!("error: dev: {e}");
                std::process::exit(1);
            }
        }) as Box<dyn FnOnce(mini_async_http::dev::Overviews) + Send>
    });
    install_logging(&config.log_level);
    // The running binary itself, even if its file was replaced since: a restarted process runs
    // the same code as the ones it replaces.
    let exe = match Path::new("/proc/self/exe") {
        p if p.exists() => p.to_owned(),
        _ => std::env::current_exe().context("cannot find this binary")?,
    };
    // SIGUSR2 runs the binary at the path this one was started from: where a new build goes.
    let path = invoked_as().context("cannot find this binary")?;
    let options = supervisor::Options {
        config,
        exe,
        args: child_args,
        upgrade: (path, std::env::args_os().skip(1).collect()),
        on_serving,
    };
    match supervisor::run(options).context("cannot start the server")? {
        Ended::Clean => Ok(()),
        Ended::Unfinished => {
            anyhow::bail!("a server process was still busy when the drain ended")
        }
    }
}

/// The path this binary was started from, as given (made absolute, found on `PATH`), not with
/// symbolic links resolved: a deployment that repoints a link at a new release upgrades to it.
fn invoked_as() -> std::io::Result<PathBuf> {
    let Some(argv0) = std::env::args_os().next() else {
        return std::env::current_exe();
    };
    let given = Path::new(&argv0);
    if given.components().count() > 1 {
        return std::path::absolute(given);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    match std::env::split_paths(&path)
        .map(|dir| dir.join(given))
        .find(|candidate| candidate.is_file())
    {
        Some(found) => std::path::absolute(found),
        None => std::env::current_exe(),
    }
}

/// One server process: the host, on the supervisor's socket, told what to do over its channel.
fn server_process(
    args: HostArgs,
    number: usize,
    quarantined: Vec<Quarantined>,
) -> anyhow::Result<()> {
    // SAFETY: nothing has started a thread yet: argument parsing is all that ran before.
    let (listener, channel, crash_pipe) = unsafe { supervisor::inherited() }?;
    mini_async_http::crash::install(crash_pipe).context("cannot install the crash handlers")?;
    let (config, watched, overrides) = configure(args)?;
    install_logging(&config.log_level);
    // Terminal and service-manager signals may reach every process of the group; only the
    // supervisor acts on them, and relays them.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR2])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                tracing::debug!(
                    signal,
                    "server process {number}: ignored; the supervisor relays signals"
                );
            }
        })?;
    let host = Host::new(config, watched, overrides, quarantined)
        .context("cannot start the host")?
        .with_listener(listener);
    Link::new(channel).spawn(host.handle())?;
    match host.run() {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            // Threads are still inside plugin code: leave without running exit handlers and
            // library destructors under them.
            eprintln!("error: {e}");
            // SAFETY: `_exit` ends the process at once; nothing here needs flushing (logs go
            // unbuffered to standard error).
            unsafe { libc::_exit(1) }
        }
        result => Ok(result?),
    }
}

/// Like `nginx -t`: everything `serve` would do before listening, reported.
fn check(args: HostArgs) -> anyhow::Result<()> {
    install_logging("warn");
    let (config, watched, _) = configure(args)?;
    let file = watched.map_or("(no config file: defaults)".into(), |p| {
        p.display().to_string()
    });
    println!(
        "{file}: ok: listen {}, {} server process(es) of {} workers, plugins in {}",
        config.listen,
        config.processes,
        config.workers,
        config.plugins_dir.display()
    );
    let registry = Registry::new(
        &config.plugins_dir,
        config.plugin_settings.clone(),
        config.routes.clone(),
    )?;
    if !config.plugins_dir.is_dir() {
        anyhow::bail!(
            "the plugins folder {} does not exist",
            config.plugins_dir.display()
        );
    }
    let refused = registry.scan();
    for info in registry.plugins() {
        let file = info
            .file
            .as_deref()
            .map_or("-".into(), |f| f.display().to_string());
        let routes = info.routes.join(" ");
        match &info.generation {
            Some(g) => println!(
                "plugin {} {} (ABI {}): ok, from {file}, serves {routes}",
                info.name,
                g.version,
                plugin_api::abi::ABI_VERSION
            ),
            None => println!(
                "plugin {}: not loaded, from {file}, serves {routes} (503)",
                info.name
            ),
        }
    }
    for (path, e) in &refused {
        println!("{}: refused: {e}", path.display());
    }
    let dangling = registry.dangling_routes();
    for route in &dangling {
        println!(
            "route {}: plugin {} has no file in the plugins folder (503)",
            route.prefix, route.plugin
        );
    }
    let problems = refused.len() + dangling.len();
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    println!("all good");
    Ok(())
}

fn new_plugin(name: &str, dir: &Path) -> anyhow::Result<()> {
    // Where this binary's plugin-api was when it was built: the crate to depend on.
    let api = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugin-api");
    let api = api.canonicalize().unwrap_or(api);
    let root = mini_async_http::scaffold::new_plugin(name, dir, &api)?;
    let lib = name.replace('-', "_");
    println!("wrote {}", root.display());
    println!("  cd {} && cargo build --release", root.display());
    println!("  cp target/release/lib{lib}.so PLUGINS_FOLDER/   # then: curl localhost:7878/{lib}");
    Ok(())
}
