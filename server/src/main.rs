//! The host binary: reads arguments, installs logging and signal handling, loads `config.toml`,
//! and serves the plugins folder. Everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mini_async_http::config::{Config, Overrides};
use mini_async_http::host::Host;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Serves HTTP/1.1 with request handlers loaded from plugins (*.so) in a folder.
#[derive(Parser)]
#[command(version, after_help = EXAMPLES)]
struct Cli {
    /// The configuration file [default: config.toml, optional]
    #[arg(long, short, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The address to listen on, overriding the file
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The plugins folder, overriding the file
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Worker threads, overriding the file
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

const EXAMPLES: &str = "\
Examples:
  mini-async-http                                   serve ./plugins as config.toml says
  mini-async-http --listen 0.0.0.0:8080 --workers 4
  RUST_LOG=debug mini-async-http --config /etc/mini-async-http.toml

Plugins and config.toml are reloaded when they change. Signals: SIGTERM or SIGINT drain and\nexit; SIGHUP reloads the configuration and rescans the plugins folder.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (path, required) = match cli.config {
        Some(path) => (path, true),
        None => (PathBuf::from("config.toml"), false),
    };
    let mut config = Config::load(&path, required)?;
    let overrides = Overrides {
        listen: cli.listen,
        plugins_dir: cli.plugins,
        workers: cli.workers.map(usize::from),
    };
    overrides.apply(&mut config);
    let watched = (required || path.exists()).then_some(path);
    let host = Host::new(config, watched, overrides).context("cannot start the host")?;
    let handle = host.handle();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!("SIGHUP: reloading the configuration and the plugins");
                    handle.reload_everything();
                } else {
                    tracing::info!(signal, "shutting down");
                    handle.begin_shutdown();
                }
            }
        })?;
    host.run()?;
    Ok(())
}
