//! Restarts: reaping the server processes that ended, telling how each one ended (and whom to
//! blame), and starting their replacements, at once or after a backoff.

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::{BACKOFF, Ended, MIN_UPTIME, Phase, START_TIMEOUT, State, Supervisor, child};
use crate::crash::{Cause, Record, signal_name};

impl Supervisor {
    /// Handles every process that ended, and kills one that never became ready.
    pub(super) fn reap(&mut self) {
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

    pub(super) fn ended(&mut self, i: usize, status: ExitStatus) {
        let draining = matches!(self.phase, Phase::Draining { .. });
        let slot = &mut self.slots[i];
        let State::Running(mut process) = std::mem::replace(&mut slot.state, State::Stopped) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut process.channel);
        // A process killed during a load leaves its shadow copy behind: nobody else removes it.
        crate::plugin::sweep_shadow_copies(&std::env::temp_dir(), process.pid);
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
            if !status.success()
                && let Phase::Draining { outcome, .. } = &mut self.phase
            {
                *outcome = Ended::Unfinished;
            }
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

    /// Starts every process whose turn has come.
    pub(super) fn start_due(&mut self) {
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
                    process.reap_now();
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
