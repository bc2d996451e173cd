//! The supervisor: the parent process of `serve`, after nginx's master process.
//!
//! It binds the listening socket, loads no plugin code, and runs `processes` server processes
//! (`child.rs`), each today's host: a mio loop, a worker pool, the plugins. A process that dies for
//! any reason is replaced at once, while the listening socket stays open here, so new connections
//! wait in the kernel's backlog instead of being refused; one that dies during start-up again and
//! again is restarted with a growing backoff. The crash record a dying process leaves
//! (`crate::crash`) names the plugin, generation and request, and a plugin that keeps crashing its
//! processes is quarantined (`quarantine.rs`). `restart.rs` reaps, tells how a process ended and
//! starts replacements. Signals come here and are relayed over each process's channel
//! (`channel.rs`; `link.rs` is the process's end); the admin listener runs here too and adds up
//! what the processes report (`status.rs`).
//!
//! One thread runs the loop below, a mio `Poll` over the processes' channels and a waker that the
//! signal thread and the admin listener ring. It also spawns every process, which matters: a
//! process's parent-death signal follows the thread that forked it.

mod activation;
mod channel;
mod child;
mod drain;
mod link;
mod quarantine;
mod replace;
mod restart;
mod status;
mod upgrade;

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use crate::ServerHandle;
use crate::admin::{Overview, Totals};
use crate::config::Config;
pub use channel::{Down, Up};
use child::Process;
pub use child::inherited;
pub use link::Link;
use quarantine::Quarantine;

/// What the supervisor needs to know.
pub struct Options {
    /// The configuration at start: `listen`, `processes`, `[admin]`, `[quarantine]` and the drain
    /// timeout are the supervisor's; the server processes read the file themselves.
    pub config: Config,
    /// The binary to execute for each server process (this one).
    pub exe: PathBuf,
    /// Arguments handed to every server process after `server-process --process N`.
    pub args: Vec<OsString>,
    /// What SIGUSR2 executes (`upgrade.rs`): the path this binary was started from, where a new
    /// build is installed, and the supervisor's own arguments.
    pub upgrade: (PathBuf, Vec<OsString>),
    /// Called once, when the first server process serves, with a way to ask how the server is
    /// doing (`dev` starts its loop there).
    pub on_serving: Option<Box<dyn FnOnce(crate::dev::Overviews) + Send>>,
}

/// How the supervisor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every process drained and exited.
    Clean,
    /// A process was still busy after the drain timeout: it stopped with requests unfinished
    /// (and said which), or was killed.
    Unfinished,
}

/// Binds, runs the server processes until SIGTERM or SIGINT, drains them, and returns.
///
/// # Errors
/// The address cannot be bound, or the poller or the signal handlers cannot be set up.
pub fn run(options: Options) -> io::Result<Ended> {
    Supervisor::new(options)?.run()
}

/// A process's death is logged once its replacement serves, with the time that took.
const WAKER: Token = Token(usize::MAX);
/// The longest the loop sleeps: processes report every second anyway.
const TICK: Duration = Duration::from_secs(1);
/// A process that served for less than this before dying counts as failing to start.
const MIN_UPTIME: Duration = Duration::from_secs(1);
/// The first and the longest wait before restarting a process that fails to start.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));
/// How long the admin listener waits for the processes' fresh figures.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// Past the drain timeout, how long a process may take to close and exit before it is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// A process that is not serving this long after it was started is killed (and backs off).
const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Supervisor {
    options: Options,
    /// Held open until the drain begins, so that connections wait in its backlog while a process
    /// restarts; closed then, so that new ones are refused at once rather than left waiting.
    listener: Option<std::net::TcpListener>,
    addr: SocketAddr,
    poll: Poll,
    waker: Arc<Waker>,
    /// Signals and admin requests, each followed by a ring of `waker`.
    events: (mpsc::Sender<Event>, mpsc::Receiver<Event>),
    slots: Vec<Slot>,
    quarantine: Quarantine,
    /// What processes that ended had counted.
    retired: Totals,
    /// Admin requests waiting for the processes' answers.
    asks: Vec<Ask>,
    seq: u64,
    phase: Phase,
    admin: Option<ServerHandle>,
    /// A receive buffer as large as the largest message.
    buf: Vec<u8>,
    /// The admin listener's socket, kept to hand to a new binary (`upgrade.rs`).
    admin_listener: Option<std::net::TcpListener>,
    /// A new supervisor being started (SIGUSR2).
    upgrade: Option<upgrade::Upgrade>,
    /// Started by an upgrade: the pipe to tell the old supervisor that this one serves.
    upgraded_from: Option<std::fs::File>,
}

/// One server process number and what runs under it.
struct Slot {
    /// From 1; a replacement keeps its number.
    number: usize,
    state: State,
    restarts: u64,
    /// Start-up failures in a row, for the backoff.
    failures: u32,
    /// The line about the death of the previous process, logged once the replacement serves.
    report: Option<(String, Instant)>,
    /// The process this number's current one replaces, until it has drained (`replace.rs`).
    retiring: Option<replace::Retiring>,
}

enum State {
    Running(Process),
    /// Restarting after a backoff.
    Waiting {
        until: Instant,
    },
    /// Ended during shutdown.
    Stopped,
}

enum Phase {
    /// No process has served yet.
    Starting,
    Serving,
    /// Told to stop: every process serves on but reports itself not ready, until `until`, when
    /// the drain begins (`drain.rs`).
    StoppingSoon {
        until: Instant,
        signal: i32,
    },
    Draining {
        deadline: Instant,
        outcome: Ended,
    },
}

enum Event {
    Signal(i32),
    Overview(mpsc::Sender<Overview>),
}

struct Ask {
    seq: u64,
    reply: mpsc::Sender<Overview>,
    deadline: Instant,
    /// Slots whose answer is still awaited.
    waiting: Vec<usize>,
}

impl Supervisor {
    /// The socket passed by the service manager, else one bound to `listen`.
    fn listen(config: &Config) -> io::Result<std::net::TcpListener> {
        match activation::take()? {
            Some(listener) => {
                tracing::info!(
                    "serving the socket the service manager passed (LISTEN_FDS); `listen` is not \
                     used"
                );
                Ok(listener)
            }
            None => crate::server::bind_with(&config.listen, config.reuse_port),
        }
    }

    fn new(options: Options) -> io::Result<Supervisor> {
        let config = &options.config;
        let (listener, admin_listener, upgraded_from) = match upgrade::inherited()? {
            Some(i) => {
                tracing::info!(
                    "upgrade: serving the sockets of the supervisor that started this one"
                );
                (i.listener, i.admin, Some(i.ready))
            }
            None => (Self::listen(config)?, None, None),
        };
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let events = mpsc::channel();
        relay_signals(events.0.clone(), Arc::clone(&waker))?;
        let slots = (1..=config.processes.max(1))
            .map(|number| Slot {
                number,
                state: State::Waiting {
                    until: Instant::now(),
                },
                restarts: 0,
                failures: 0,
                report: None,
                retiring: None,
            })
            .collect();
        let quarantine = Quarantine::new(config.quarantine_after, config.quarantine_window);
        Ok(Supervisor {
            options,
            listener: Some(listener),
            addr,
            poll,
            waker,
            events,
            slots,
            quarantine,
            retired: Totals::default(),
            asks: Vec::new(),
            seq: 0,
            phase: Phase::Starting,
            admin: None,
            admin_listener,
            upgrade: None,
            upgraded_from,
            buf: vec![0; channel::MAX_DATAGRAM],
        })
    }

    fn run(mut self) -> io::Result<Ended> {
        let mut events = Events::with_capacity(64);
        let ended = loop {
            let now = Instant::now();
            let timeout = self.next_timer(now).saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.take_events(),
                    upgrade::READY => self.read_upgrade(),
                    Token(i) => self.read_channel(i),
                }
            }
            self.reap();
            self.reap_retiring();
            self.start_due();
            self.answer_asks();
            self.check_stop_soon();
            self.check_upgrade();
            if let Some(ended) = self.check_drain() {
                break ended;
            }
        };
        if let Some(admin) = self.admin.take() {
            admin.shutdown();
        }
        tracing::info!(addr = %self.addr, "stopped");
        Ok(ended)
    }

    /// When the loop must wake up at the latest.
    fn next_timer(&self, now: Instant) -> Instant {
        let mut at = now + TICK;
        for slot in &self.slots {
            if let State::Waiting { until } = slot.state {
                at = at.min(until);
            }
        }
        for ask in &self.asks {
            at = at.min(ask.deadline);
        }
        if let Some(deadline) = self.upgrade_deadline() {
            at = at.min(deadline);
        }
        match self.phase {
            // Past it, the kills are sent and the loop only waits to reap: no busy wake-ups.
            Phase::Draining { deadline, .. } if deadline > now => at = at.min(deadline),
            Phase::StoppingSoon { until, .. } => at = at.min(until),
            _ => {}
        }
        at
    }

    fn take_events(&mut self) {
        while let Ok(event) = self.events.1.try_recv() {
            match event {
                Event::Signal(libc::SIGHUP) => self.reload(),
                Event::Signal(libc::SIGCHLD) => {} // `reap` runs after every wake-up
                Event::Signal(libc::SIGUSR2) => self.begin_upgrade(),
                Event::Signal(signal) => self.stop(signal),
                Event::Overview(reply) => self.ask(reply),
            }
        }
    }

    /// SIGHUP: every quarantine is lifted, and every process re-reads the configuration and
    /// rescans the plugins folder.
    fn reload(&mut self) {
        let lifted = self.quarantine.lift_all();
        if !lifted.is_empty() {
            tracing::info!("SIGHUP: quarantine lifted for {}", lifted.join(", "));
        }
        tracing::info!("SIGHUP: reloading the configuration and the plugins");
        self.send_quarantine();
        for process in self.running() {
            process.send(&Down::Reload);
        }
    }

    /// Reads every message a process sent.
    fn read_channel(&mut self, i: usize) {
        loop {
            let Some(State::Running(process)) = self.slots.get(i).map(|s| &s.state) else {
                return;
            };
            let n = match process.channel.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            match channel::decode::<Up>(&self.buf[..n]) {
                Some(Up::Ready) => self.ready(i),
                Some(Up::Status { seq, snapshot }) => {
                    let exhausted = snapshot.server.needs_replacement;
                    let stopping = matches!(self.phase, Phase::StoppingSoon { .. });
                    if let State::Running(process) = &mut self.slots[i].state {
                        process.last = Some(snapshot);
                        if stopping {
                            // A datagram may be lost: said again with every report.
                            process.send(&Down::StopSoon);
                        }
                    }
                    if exhausted {
                        self.replace(i);
                    }
                    for ask in &mut self.asks {
                        if seq >= ask.seq {
                            ask.waiting.retain(|&w| w != i);
                        }
                    }
                }
                None => tracing::warn!("a server process sent a message that is not one"),
            }
        }
    }

    fn ready(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let State::Running(process) = &mut slot.state else {
            return;
        };
        process.ready = Some(Instant::now());
        tracing::info!(
            pid = process.pid,
            "server process {} (pid {}) serving",
            slot.number,
            process.pid
        );
        if let Some((line, since)) = slot.report.take() {
            tracing::error!("{line}; replaced in {} ms", since.elapsed().as_millis());
        }
        self.retire_replaced(i);
        if matches!(self.phase, Phase::StoppingSoon { .. })
            && let State::Running(process) = &self.slots[i].state
        {
            // A replacement that starts during the delay is not ready either.
            process.send(&Down::StopSoon);
        }
        self.tell_old();
        if matches!(self.phase, Phase::Starting) {
            self.phase = Phase::Serving;
            if let Some(on_serving) = self.options.on_serving.take() {
                on_serving(Box::new(self.overviews()));
            }
            tracing::info!(
                addr = %self.addr,
                processes = self.slots.len(),
                "listening"
            );
            self.start_admin();
        }
    }

    /// Tells every process the files not to load, after the list changed.
    fn send_quarantine(&self) {
        let files = self.quarantine.list();
        for process in self.running() {
            process.send(&Down::Quarantine {
                files: files.clone(),
            });
        }
    }

    fn running(&self) -> impl Iterator<Item = &Process> {
        self.slots.iter().filter_map(|s| match &s.state {
            State::Running(p) => Some(p),
            _ => None,
        })
    }
}

/// Forwards SIGTERM, SIGINT, SIGHUP and SIGCHLD to the loop.
fn relay_signals(events: mpsc::Sender<Event>, waker: Arc<Waker>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGCHLD,
        libc::SIGUSR2,
    ])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        })?;
    Ok(())
}
