//! What the admin listener shows: the supervisor asks every serving process for a fresh snapshot,
//! waits for the answers (or `ASK_TIMEOUT`), and adds them up with what ended processes counted.

use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::{ASK_TIMEOUT, Ask, Down, Event, Phase, State, Supervisor};
use crate::AIOServer;
use crate::admin::{self, Overview, ProcessRow};

impl Supervisor {
    /// An admin request: ask every serving process for fresh figures.
    pub(super) fn ask(&mut self, reply: mpsc::Sender<Overview>) {
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
    pub(super) fn answer_asks(&mut self) {
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

    pub(super) fn overview(&self) -> Overview {
        let draining = matches!(
            self.phase,
            Phase::Draining { .. } | Phase::StoppingSoon { .. }
        );
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

    /// A way for another thread to ask how the server is doing: the loop answers (`None` when
    /// it does not in time).
    pub(super) fn overviews(&self) -> impl Fn() -> Option<Overview> + Send + Sync + 'static {
        let events = self.events.0.clone();
        let waker = Arc::clone(&self.waker);
        move || {
            let (reply, answer) = mpsc::channel();
            events.send(Event::Overview(reply)).ok()?;
            waker.wake().ok()?;
            answer.recv_timeout(ASK_TIMEOUT * 4).ok()
        }
    }

    /// Starts the admin listener, if configured, once the first process serves.
    pub(super) fn start_admin(&mut self) {
        let Some(addr) = self.options.config.admin_listen.clone() else {
            return;
        };
        let handler = admin::handler(self.overviews());
        // Bound here (or inherited from the supervisor this one upgraded), and kept: a new binary
        // gets it on SIGUSR2 (`upgrade.rs`).
        let listener = match self.admin_listener.as_ref() {
            Some(l) => l.try_clone(),
            None => crate::server::bind(&addr),
        };
        let listener = match listener.and_then(|l| Ok((l.try_clone()?, l))) {
            Ok((kept, served)) => {
                self.admin_listener = Some(kept);
                served
            }
            Err(e) => {
                tracing::error!("admin listener: {e}");
                return;
            }
        };
        let server = AIOServer::new(1, addr, handler).with_listener(listener);
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
}
