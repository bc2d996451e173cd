//! Stopping: SIGTERM or SIGINT begins the drain, after `[limits] drain_delay_ms` if one is set.
//!
//! During the delay every server process serves on but reports itself not ready (the admin
//! listener's `/readyz` and the service port's `[health] ready` answer `503`), so that a load
//! balancer that checks readiness stops sending before any connection is refused. A second
//! signal during the delay begins the drain at once. The drain itself closes the listener, tells
//! each process to finish its requests and exit, and kills what still runs past the drain
//! timeout.

use std::time::{Duration, Instant};

use super::channel::Down;
use super::{DRAIN_GRACE, Ended, Phase, State, Supervisor};
use crate::crash::signal_name;

impl Supervisor {
    /// A stop signal: the drain, now or after the delay in force.
    pub(super) fn stop(&mut self, signal: i32) {
        let delay = self
            .running()
            .filter_map(|p| p.last.as_ref())
            .map(|s| Duration::from_millis(s.drain_delay_ms))
            .fold(self.options.config.limits.drain_delay, Duration::max);
        // A new binary not serving yet would outlive us, serving alone: it goes first.
        self.fail_upgrade("a stop signal came first");
        match self.phase {
            Phase::Draining { .. } => {}
            Phase::StoppingSoon { .. } => {
                tracing::info!(
                    signal = %signal_name(signal),
                    "a second stop signal: draining now"
                );
                self.begin_drain(signal);
            }
            _ if delay.is_zero() => self.begin_drain(signal),
            _ => {
                tracing::info!(
                    signal = %signal_name(signal),
                    "stopping in {} ms: not ready from now on, the drain begins then",
                    delay.as_millis()
                );
                self.phase = Phase::StoppingSoon {
                    until: Instant::now() + delay,
                    signal,
                };
                for process in self.running() {
                    process.send(&Down::StopSoon);
                }
            }
        }
    }

    /// Begins the drain once the delay is over.
    pub(super) fn check_stop_soon(&mut self) {
        if let Phase::StoppingSoon { until, signal } = self.phase
            && Instant::now() >= until
        {
            self.begin_drain(signal);
        }
    }

    pub(super) fn begin_drain(&mut self, signal: i32) {
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
            .fold(self.options.config.limits.drain_timeout, Duration::max);
        self.phase = Phase::Draining {
            deadline: Instant::now() + drain + DRAIN_GRACE,
            outcome: Ended::Clean,
        };
        self.listener = None;
        self.drain_retiring();
        for slot in &mut self.slots {
            if let Some((line, _)) = slot.report.take() {
                tracing::error!("{line}; not replaced: shutting down");
            }
            match &slot.state {
                State::Running(process) => process.send(&Down::Shutdown),
                _ => slot.state = State::Stopped,
            }
        }
    }

    /// Past the drain deadline, kills what still runs; `Some` once every process has ended.
    pub(super) fn check_drain(&mut self) -> Option<Ended> {
        let Phase::Draining { deadline, outcome } = &mut self.phase else {
            return None;
        };
        let past = Instant::now() >= *deadline;
        if past {
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
                *outcome = Ended::Unfinished;
            }
        }
        if past
            && self.kill_retiring()
            && let Phase::Draining { outcome, .. } = &mut self.phase
        {
            *outcome = Ended::Unfinished;
        }
        let Phase::Draining { outcome, .. } = self.phase else {
            return None;
        };
        let done = self
            .slots
            .iter()
            .all(|s| matches!(s.state, State::Stopped) && s.retiring.is_none());
        done.then_some(outcome)
    }
}
