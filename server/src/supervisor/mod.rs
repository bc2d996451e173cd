//! The supervisor: the parent process of `serve`, after nginx's master process.
//!
//! It binds the listening socket, loads no plugin code, and runs `processes` server processes
//! (`child.rs`), each today's host: a mio loop, a worker pool, the plugins. A process that dies for
//! any reason is replaced at once, while the listening socket stays open here, so new connections
//! wait in the kernel's backlog instead of being refused; one that dies during start-up again and
//! again is restarted with a growing backoff. The crash record a dying process leaves
//! (`crate::crash`) names the plugin, generation and request, and a plugin that keeps crashing its
//! processes is quarantined (`quarantine.rs`). Signals come here and are relayed over each
//! process's channel (`channel.rs`; `link.rs` is the process's end); the admin listener runs here
//! too and adds up what the processes report.
//!
//! One thread runs the loop below, a mio `Poll` over the processes' channels and a waker that the
//! signal thread and the admin listener ring. It also spawns every process, which matters: a
//! process's parent-death signal follows the thread that forked it.

mod channel;
mod child;
mod link;
mod quarantine;

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use crate::admin::{self, Overview, ProcessRow, Totals};
use crate::crash::{Cause, Record, signal_name};
use crate::{AIOServer, ServerHandle};
pub use channel::{Down, Up};
use child::Process;
pub use child::inherited;
pub use link::Link;
use quarantine::Quarantine;

/// What the supervisor needs to know.
pub struct Options {
    /// The address to listen on.
    pub listen: String,
    /// Server processes to run.
    pub processes: usize,
    /// The binary to execute for each server process (this one).
    pub exe: PathBuf,
    /// Arguments handed to every server process after `server-process --process N`.
    pub args: Vec<OsString>,
    /// How long a graceful stop waits for the processes' requests in flight.
    pub drain_timeout: Duration,
    /// The admin listener's address, if it is on.
    pub admin: Option<String>,
    /// Crashes within `quarantine_window` that quarantine a plugin file (0: never).
    pub quarantine_after: u32,
    /// See `quarantine_after`.
    pub quarantine_window: Duration,
}

/// How the supervisor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every process drained and exited.
    Clean,
    /// A process was still busy after the drain timeout and was killed.
    Killed,
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
    fn new(options: Options) -> io::Result<Supervisor> {
        let listener = crate::server::bind(&options.listen)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let events = mpsc::channel();
        relay_signals(events.0.clone(), Arc::clone(&waker))?;
        let slots = (1..=options.processes.max(1))
            .map(|number| Slot {
                number,
                state: State::Waiting {
                    until: Instant::now(),
                },
                restarts: 0,
                failures: 0,
                report: None,
            })
            .collect();
        let quarantine = Quarantine::new(options.quarantine_after, options.quarantine_window);
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
                    Token(i) => self.read_channel(i),
                }
            }
            self.reap();
            self.start_due();
            self.answer_asks();
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
        if let Phase::Draining { deadline, .. } = self.phase {
            at = at.min(deadline);
        }
        at
    }

    fn take_events(&mut self) {
        while let Ok(event) = self.events.1.try_recv() {
            match event {
                Event::Signal(libc::SIGHUP) => self.reload(),
                Event::Signal(libc::SIGCHLD) => {} // `reap` runs after every wake-up
                Event::Signal(signal) => self.begin_drain(signal),
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

    fn begin_drain(&mut self, signal: i32) {
        if matches!(self.phase, Phase::Draining { .. }) {
            return;
        }
        let running = self.running().count();
        tracing::info!(
            signal = %signal_name(signal),
            "shutting down: draining {running} server process(es)"
        );
        // The processes apply a reloaded drain timeout at once; wait for the longest in force.
        let drain = self
            .running()
            .filter_map(|p| p.last.as_ref())
            .map(|s| Duration::from_millis(s.drain_timeout_ms))
            .fold(self.options.drain_timeout, Duration::max);
        self.phase = Phase::Draining {
            deadline: Instant::now() + drain + DRAIN_GRACE,
            outcome: Ended::Clean,
        };
        self.listener = None;
        for slot in &mut self.slots {
            match &slot.state {
                State::Running(process) => process.send(&Down::Shutdown),
                _ => slot.state = State::Stopped,
            }
        }
    }

    /// Past the drain deadline, kills what still runs; `Some` once every process has ended.
    fn check_drain(&mut self) -> Option<Ended> {
        let Phase::Draining { deadline, outcome } = &mut self.phase else {
            return None;
        };
        if Instant::now() >= *deadline {
            for slot in &mut self.slots {
                let State::Running(process) = &mut slot.state else {
                    continue;
                };
                if process.killed {
                    continue;
                }
                let holding = process
                    .last
                    .as_ref()
                    .and_then(|s| s.running.first())
                    .map_or("no plugin code was running".into(), |r| {
                        format!(
                            "plugin {} (generation {}) had been running {} for {} ms",
                            r.plugin, r.generation, r.what, r.for_ms
                        )
                    });
                tracing::error!(
                    "server process {} (pid {}) was still busy when the drain timed out: \
                     {holding}; killed",
                    slot.number,
                    process.pid,
                );
                // Reaped by `reap` like any other exit.
                process.kill();
                *outcome = Ended::Killed;
            }
        }
        let done = self.slots.iter().all(|s| matches!(s.state, State::Stopped));
        done.then_some(*outcome)
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
                    let mut lifted = false;
                    for p in &snapshot.plugins {
                        if let Some(sha) = &p.sha256
                            && self.quarantine.loaded(&p.name, sha)
                        {
                            lifted = true;
                            tracing::info!(
                                plugin = %p.name,
                                "plugin {}: quarantine lifted: a new file was loaded (sha {}…)",
                                p.name,
                                &sha[..sha.len().min(8)]
                            );
                        }
                    }
                    if lifted {
                        self.send_quarantine();
                    }
                    if let State::Running(process) = &mut self.slots[i].state {
                        process.last = Some(snapshot);
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
        if matches!(self.phase, Phase::Starting) {
            self.phase = Phase::Serving;
            tracing::info!(
                addr = %self.addr,
                processes = self.slots.len(),
                "listening"
            );
            self.start_admin();
        }
    }

    /// Handles every process that ended, and kills one that never became ready.
    fn reap(&mut self) {
        for i in 0..self.slots.len() {
            let number = self.slots[i].number;
            let status = match &mut self.slots[i].state {
                State::Running(process) => {
                    if process.ready.is_none()
                        && !process.killed
                        && process.started.elapsed() >= START_TIMEOUT
                    {
                        tracing::error!(
                            "server process {} (pid {}) was not serving {} s after it started: \
                             killed",
                            number,
                            process.pid,
                            START_TIMEOUT.as_secs()
                        );
                        process.kill();
                    }
                    process.exited()
                }
                _ => None,
            };
            if let Some(status) = status {
                // Its last words (a final report) first.
                self.read_channel(i);
                self.ended(i, status);
            }
        }
    }

    fn ended(&mut self, i: usize, status: ExitStatus) {
        let draining = matches!(self.phase, Phase::Draining { .. });
        let slot = &mut self.slots[i];
        let State::Running(mut process) = std::mem::replace(&mut slot.state, State::Stopped) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut process.channel);
        if let Some(last) = &process.last {
            self.retired.retire(last);
        }
        for ask in &mut self.asks {
            ask.waiting.retain(|&w| w != i);
        }
        if draining {
            tracing::info!(
                "server process {} (pid {}) exited ({status})",
                slot.number,
                process.pid
            );
            return;
        }
        let records = process.records();
        let (line, culprit) = describe(slot.number, process.pid, status, records.first());
        if let Some((previous, _)) = slot.report.take() {
            tracing::error!("{previous}; its replacement did not start either");
        }
        let now = Instant::now();
        // A death in a plugin's request handler is restarted at once however soon it came (the
        // quarantine stops a plugin that keeps doing it); one before serving, or soon after it
        // in no plugin's code, backs off so that a process that cannot run does not loop.
        let request_crash = culprit.is_some() && process.ready.is_some();
        let served_long = process.ready.is_some_and(|t| t.elapsed() >= MIN_UPTIME);
        if request_crash || served_long {
            slot.failures = 0;
            slot.report = Some((line, now));
            slot.state = State::Waiting { until: now };
        } else {
            slot.failures += 1;
            let wait = backoff(slot.failures);
            tracing::error!(
                "{line}; restarting it in {} ms (backoff: {} failed start(s) in a row)",
                wait.as_millis(),
                slot.failures,
            );
            slot.state = State::Waiting { until: now + wait };
        }
        slot.restarts += 1;
        if let Some((plugin, file, sha)) = culprit
            && self.quarantine.crashed(&plugin, &sha, now)
        {
            let (after, window) = self.quarantine.rule();
            tracing::error!(
                plugin = %plugin,
                "plugin {plugin} ({file}) quarantined: {after} crashes within {} s; its routes \
                 answer 503 until a new build of its file or SIGHUP",
                window.as_secs()
            );
            self.send_quarantine();
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

    /// Starts every process whose turn has come.
    fn start_due(&mut self) {
        let now = Instant::now();
        let quarantined = self.quarantine.list();
        let Some(listener) = &self.listener else {
            return;
        };
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if !matches!(slot.state, State::Waiting { until } if until <= now) {
                continue;
            }
            let spawned = child::spawn(
                &self.options.exe,
                &self.options.args,
                slot.number,
                listener.as_raw_fd(),
                &quarantined,
            )
            .and_then(|mut process| {
                let registered = self.poll.registry().register(
                    &mut process.channel,
                    Token(i),
                    Interest::READABLE,
                );
                if let Err(e) = registered {
                    // Never leave a process running that nobody watches.
                    process.kill();
                    process.exited();
                    return Err(e);
                }
                Ok(process)
            });
            match spawned {
                Ok(process) => {
                    tracing::debug!(pid = process.pid, "server process {} started", slot.number);
                    slot.state = State::Running(process);
                }
                Err(e) => {
                    slot.failures += 1;
                    let wait = backoff(slot.failures);
                    tracing::error!(
                        "cannot start server process {}: {e}; trying again in {} ms",
                        slot.number,
                        wait.as_millis()
                    );
                    slot.state = State::Waiting { until: now + wait };
                }
            }
        }
    }

    /// An admin request: ask every serving process for fresh figures.
    fn ask(&mut self, reply: mpsc::Sender<Overview>) {
        self.seq += 1;
        let seq = self.seq;
        let mut waiting = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let State::Running(process) = &slot.state
                && process.ready.is_some()
            {
                process.send(&Down::Status { seq });
                waiting.push(i);
            }
        }
        self.asks.push(Ask {
            seq,
            reply,
            deadline: Instant::now() + ASK_TIMEOUT,
            waiting,
        });
    }

    /// Answers the admin requests whose figures are all in, or that waited long enough.
    fn answer_asks(&mut self) {
        let now = Instant::now();
        let (due, waiting): (Vec<Ask>, Vec<Ask>) = std::mem::take(&mut self.asks)
            .into_iter()
            .partition(|a| a.waiting.is_empty() || now >= a.deadline);
        self.asks = waiting;
        if !due.is_empty() {
            let overview = self.overview();
            for ask in due {
                let _ = ask.reply.send(overview.clone());
            }
        }
    }

    fn overview(&self) -> Overview {
        let draining = matches!(self.phase, Phase::Draining { .. });
        let processes = self
            .slots
            .iter()
            .map(|slot| {
                let mut row = ProcessRow {
                    number: slot.number,
                    restarts: slot.restarts,
                    ..ProcessRow::default()
                };
                row.state = match &slot.state {
                    State::Running(p) => {
                        row.pid = Some(p.pid);
                        row.started = p.started_unix;
                        if let Some(last) = &p.last {
                            row.open_connections = last.server.open_connections;
                            row.running.clone_from(&last.running);
                        }
                        match (draining, p.ready) {
                            (true, _) => "stopping",
                            (false, Some(_)) => "serving",
                            (false, None) => "starting",
                        }
                    }
                    State::Waiting { .. } => "restarting",
                    State::Stopped => "stopped",
                }
                .into();
                row
            })
            .collect();
        let live = self.slots.iter().filter_map(|s| match &s.state {
            State::Running(p) => p.last.as_ref(),
            _ => None,
        });
        Overview::merge(&self.retired, live, processes, &self.quarantine.counts())
    }

    /// Starts the admin listener, if configured, once the first process serves.
    fn start_admin(&mut self) {
        let Some(addr) = self.options.admin.clone() else {
            return;
        };
        let events = self.events.0.clone();
        let waker = Arc::clone(&self.waker);
        let handler = admin::handler(move || {
            let (reply, answer) = mpsc::channel();
            events.send(Event::Overview(reply)).ok()?;
            waker.wake().ok()?;
            answer.recv_timeout(ASK_TIMEOUT * 4).ok()
        });
        let server = AIOServer::new(1, addr, handler);
        let handle = server.handle();
        let started = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || server.start());
        match started.map(|_| handle.ready()) {
            Ok(Ok(local)) => {
                tracing::info!(addr = %local, "admin listening");
                self.admin = Some(handle);
            }
            Ok(Err(e)) => tracing::error!("admin listener: {e}"),
            Err(e) => tracing::error!("admin listener: {e}"),
        }
    }

    fn running(&self) -> impl Iterator<Item = &Process> {
        self.slots.iter().filter_map(|s| match &s.state {
            State::Running(p) => Some(p),
            _ => None,
        })
    }
}

/// The line that says how a process ended, and the plugin to blame (name, file, hash), if one.
fn describe(
    number: usize,
    pid: u32,
    status: ExitStatus,
    record: Option<&Record>,
) -> (String, Option<(String, String, String)>) {
    let ended = match (record.map(Record::cause), status.signal()) {
        (Some(Cause::Signal(signal)), _) | (_, Some(signal)) => {
            let overflow = record.is_some_and(Record::stack_overflow);
            format!(
                "with {}{}",
                signal_name(signal),
                if overflow { " (stack overflow)" } else { "" }
            )
        }
        _ => format!("with exit status {}", status.code().unwrap_or(-1)),
    };
    match record.and_then(|r| Some((r, r.plugin()?))) {
        Some((r, plugin)) => {
            let line = format!(
                "plugin {plugin} (generation {}, {}) crashed server process {number} (pid {pid}) \
                 {ended} during {}",
                r.generation(),
                r.file(),
                r.what()
            );
            (line, Some((plugin, r.file(), r.sha())))
        }
        None => (
            format!("server process {number} (pid {pid}) ended {ended}, in no plugin's code"),
            None,
        ),
    }
}

/// The wait before the `failures`th restart in a row: 100 ms, doubling, at most 10 s.
fn backoff(failures: u32) -> Duration {
    let (first, most) = BACKOFF;
    first
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(most)
}

/// Forwards SIGTERM, SIGINT, SIGHUP and SIGCHLD to the loop.
fn relay_signals(events: mpsc::Sender<Event>, waker: Arc<Waker>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGCHLD,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_ten_seconds() {
        let ms = |n| backoff(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 400, 800]);
        assert_eq!(ms(8), 10_000);
        assert_eq!(ms(1000), 10_000);
    }

    #[test]
    fn a_death_without_a_record_names_the_process_and_its_status() {
        let (line, culprit) = describe(2, 77, ExitStatus::from_raw(9), None);
        assert_eq!(
            line,
            "server process 2 (pid 77) ended with SIGKILL, in no plugin's code"
        );
        assert!(culprit.is_none());
        let (line, _) = describe(1, 5, ExitStatus::from_raw(3 << 8), None);
        assert!(
            line.ends_with("ended with exit status 3, in no plugin's code"),
            "{line}"
        );
    }
}
