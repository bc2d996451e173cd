//! Graceful replacement. A thread stuck in plugin code cannot be reclaimed, only its process can:
//! when more of a process's workers are stuck past their deadline than it may replace
//! (`max_lost_workers`), its status report says so ([`ServerStats::needs_replacement`]), and the
//! supervisor starts a successor under the same number. The old process keeps serving until the
//! successor does, then drains (its stuck threads end with it); both share the listening socket,
//! so no connection waits for the swap.
//!
//! [`ServerStats::needs_replacement`]: crate::ServerStats::needs_replacement

use std::time::Instant;

use super::{Down, Phase, State, Supervisor, child::Process};

/// A process being replaced.
pub(super) struct Retiring {
    pub process: Process,
    /// Told to drain (its successor serves).
    pub told: bool,
}

impl Supervisor {
    /// A report of process `i` says its pool is exhausted: start its successor.
    pub(super) fn replace(&mut self, i: usize) {
        if matches!(self.phase, Phase::Draining { .. }) {
            return;
        }
        let slot = &mut self.slots[i];
        let ready = matches!(&slot.state, State::Running(p) if p.ready.is_some() && !p.killed);
        if slot.retiring.is_some() || !ready {
            return;
        }
        let State::Running(mut old) = std::mem::replace(
            &mut slot.state,
            State::Waiting {
                until: Instant::now(),
            },
        ) else {
            return;
        };
        // Its successor takes the channel's token; the old one's last report is kept for the
        // totals.
        let _ = self.poll.registry().deregister(&mut old.channel);
        tracing::warn!(
            "server process {} (pid {}) has more workers stuck in plugin code than it may \
             replace: starting its successor; it drains once that one serves",
            slot.number,
            old.pid
        );
        slot.retiring = Some(Retiring {
            process: old,
            told: false,
        });
        self.start_due();
    }

    /// Process `i` serves: the one it replaces, if any, drains now.
    pub(super) fn retire_replaced(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(retiring) = &mut slot.retiring
            && !retiring.told
        {
            retiring.process.send(&Down::Shutdown);
            retiring.told = true;
            tracing::info!(
                "server process {} (pid {}) replaced: draining",
                slot.number,
                retiring.process.pid
            );
        }
    }

    /// Reaps replaced processes that exited.
    pub(super) fn reap_retiring(&mut self) {
        for slot in &mut self.slots {
            let Some(retiring) = &mut slot.retiring else {
                continue;
            };
            let Some(status) = retiring.process.exited() else {
                continue;
            };
            tracing::info!(
                "server process {} (pid {}), replaced, exited ({status})",
                slot.number,
                retiring.process.pid
            );
            if let Some(last) = &retiring.process.last {
                self.retired.retire(last);
            }
            slot.retiring = None;
        }
    }

    /// Shutdown: replaced processes drain too (at once, whether or not a successor serves).
    pub(super) fn drain_retiring(&mut self) {
        for slot in &mut self.slots {
            if let Some(retiring) = &mut slot.retiring
                && !retiring.told
            {
                retiring.process.send(&Down::Shutdown);
                retiring.told = true;
            }
        }
    }

    /// Past the drain deadline: kills replaced processes still running; whether any was.
    pub(super) fn kill_retiring(&mut self) -> bool {
        let mut killed = false;
        for slot in &mut self.slots {
            if let Some(retiring) = &mut slot.retiring
                && !retiring.process.killed
            {
                tracing::error!(
                    "server process {} (pid {}), replaced, was still busy when the drain timed \
                     out; killed",
                    slot.number,
                    retiring.process.pid
                );
                retiring.process.kill();
                killed = true;
            }
        }
        killed
    }
}
