//! The admin listener (`[admin] listen` in `config.toml`, off by default): `/metrics` in the
//! Prometheus text format, `/status` as JSON, and `/` as a small HTML page that shows the
//! processes, the plugins, their generations and counters at a glance.
//!
//! The supervisor serves it, with one worker of its own, so it shares nothing with the hot path.
//! Each server process describes itself in a [`Snapshot`] (sent over the supervisor's channel);
//! the supervisor adds them up, with what processes that ended had counted, into an [`Overview`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crash::Running;
use crate::plugin::{PluginCounts, Registry};
use crate::{BulkheadStats, ServerStats};

mod render;

pub use render::handler;

/// One server process, described by itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its connection counters.
    pub server: ServerStats,
    /// Its plugins, by name.
    pub plugins: Vec<PluginRow>,
    /// Its threads inside plugin code now (the 32 longest).
    pub running: Vec<Running>,
    /// Its drain timeout in force, in milliseconds (it can be reloaded).
    pub drain_timeout_ms: u64,
    /// Its drain delay in force (`[limits] drain_delay_ms`).
    #[serde(default)]
    pub drain_delay_ms: u64,
}

/// One plugin, as a process or the whole server sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginRow {
    /// `/NAME`.
    pub name: String,
    /// The version of the generation serving, if one is.
    pub version: Option<String>,
    /// The generation serving, if one is.
    pub generation: Option<u64>,
    /// The SHA-256 of the file it was loaded from, hex.
    pub sha256: Option<String>,
    /// The file in the plugins folder.
    pub file: Option<String>,
    /// The prefixes it serves.
    pub routes: Vec<String>,
    /// Its counters.
    pub counts: PluginCounts,
    /// Server processes it crashed (filled in by the supervisor).
    pub crashes: u64,
    /// Left unloaded for crashing its processes.
    pub quarantined: bool,
    /// Its bulkhead: calls in flight and queued, timeouts, refusals, stuck workers, its limit.
    pub bulkhead: BulkheadStats,
}

impl Snapshot {
    /// What `registry` and the server's counters say now, with the drain timeout and delay in
    /// force.
    pub fn of(registry: &Registry, server: ServerStats, drain: (Duration, Duration)) -> Snapshot {
        let bulkheads: BTreeMap<String, BulkheadStats> = registry
            .bulkheads()
            .stats()
            .into_iter()
            .map(|b| (b.name.clone(), b))
            .collect();
        let plugins = registry
            .plugins()
            .into_iter()
            .map(|p| {
                let g = p.generation.as_ref();
                PluginRow {
                    bulkhead: bulkheads.get(&p.name).cloned().unwrap_or_default(),
                    version: g.map(|g| g.version.clone()),
                    generation: g.map(|g| g.number),
                    sha256: g.map(|g| g.sha256.clone()),
                    file: p.file.as_ref().map(|f| f.display().to_string()),
                    routes: p.routes,
                    counts: p.counts,
                    crashes: 0,
                    quarantined: p.quarantined,
                    name: p.name,
                }
            })
            .collect();
        Snapshot {
            server,
            plugins,
            running: crate::crash::running(32),
            drain_timeout_ms: drain.0.as_millis() as u64,
            drain_delay_ms: drain.1.as_millis() as u64,
        }
    }
}

/// The whole server: every process, and the figures of them all added up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Connection counters, summed over the processes (counts of ended processes included).
    pub server: ServerStats,
    /// Plugins, by name, with counters summed the same way.
    pub plugins: Vec<PluginRow>,
    /// One row per server process.
    pub processes: Vec<ProcessRow>,
}

/// One server process, as the supervisor sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRow {
    /// Its number, from 1; a replacement keeps the number.
    pub number: usize,
    /// Its process id, while one runs.
    pub pid: Option<u32>,
    /// `starting`, `serving`, `restarting` or `stopping`.
    pub state: String,
    /// When the running one started, in seconds since the Unix epoch.
    pub started: u64,
    /// How many times it was replaced.
    pub restarts: u64,
    /// Its open connections now.
    pub open_connections: usize,
    /// Its threads inside plugin code now, longest first.
    pub running: Vec<Running>,
}

/// Counters of the processes that ended, kept so that totals survive a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    server: ServerStats,
    plugins: BTreeMap<String, (PluginCounts, BulkheadStats)>,
}

impl Totals {
    /// Adds the last snapshot of a process that ended. Gauges (open connections, queue depth)
    /// are not kept: they ended with it.
    pub fn retire(&mut self, last: &Snapshot) {
        self.server.accepted_total += last.server.accepted_total;
        self.server.refused_busy_total += last.server.refused_busy_total;
        for p in &last.plugins {
            let (counts, bulkhead) = self.plugins.entry(p.name.clone()).or_default();
            add(counts, &p.counts);
            add_bulkhead(bulkhead, &p.bulkhead, false);
        }
    }
}

impl Overview {
    /// The sum of `retired` and the `live` snapshots, with the processes' rows and the plugins'
    /// crash counts and quarantine from the supervisor.
    pub fn merge<'a>(
        retired: &Totals,
        live: impl IntoIterator<Item = &'a Snapshot>,
        processes: Vec<ProcessRow>,
        crashes: &BTreeMap<String, (u64, bool)>,
    ) -> Overview {
        let mut server = retired.server;
        let mut plugins: BTreeMap<String, PluginRow> = BTreeMap::new();
        for (name, (counts, bulkhead)) in &retired.plugins {
            let row = plugins.entry(name.clone()).or_default();
            row.name.clone_from(name);
            add(&mut row.counts, counts);
            add_bulkhead(&mut row.bulkhead, bulkhead, false);
        }
        for snapshot in live {
            server.open_connections += snapshot.server.open_connections;
            server.accepted_total += snapshot.server.accepted_total;
            server.queue_depth += snapshot.server.queue_depth;
            server.refused_busy_total += snapshot.server.refused_busy_total;
            server.lost_workers += snapshot.server.lost_workers;
            server.needs_replacement |= snapshot.server.needs_replacement;
            for p in &snapshot.plugins {
                let row = plugins.entry(p.name.clone()).or_default();
                let counts = std::mem::take(&mut row.counts);
                let bulkhead = std::mem::take(&mut row.bulkhead);
                if row.generation.is_none() {
                    // The first live process that serves it tells what is loaded.
                    *row = PluginRow {
                        counts: PluginCounts::default(),
                        bulkhead: BulkheadStats::default(),
                        ..p.clone()
                    };
                }
                row.counts = counts;
                row.bulkhead = bulkhead;
                add(&mut row.counts, &p.counts);
                add_bulkhead(&mut row.bulkhead, &p.bulkhead, true);
            }
        }
        for (name, &(count, quarantined)) in crashes {
            let row = plugins.entry(name.clone()).or_default();
            row.name.clone_from(name);
            row.crashes = count;
            // A file of it is quarantined; it shows so while no process serves another file.
            row.quarantined = quarantined && row.generation.is_none();
        }
        Overview {
            server,
            plugins: plugins.into_values().collect(),
            processes,
        }
    }
}

/// Adds a bulkhead's counters, and with `gauges` (a live process) its gauges; the limit shown is
/// one process's.
fn add_bulkhead(sum: &mut BulkheadStats, more: &BulkheadStats, gauges: bool) {
    sum.timed_out += more.timed_out;
    sum.refused += more.refused;
    if gauges {
        sum.in_flight += more.in_flight;
        sum.queued += more.queued;
        sum.lost_workers += more.lost_workers;
        sum.max_concurrency = sum.max_concurrency.max(more.max_concurrency);
    }
}

fn add(sum: &mut PluginCounts, more: &PluginCounts) {
    sum.requests += more.requests;
    for (s, m) in sum.by_class.iter_mut().zip(more.by_class) {
        *s += m;
    }
    sum.failures += more.failures;
    for (s, m) in sum.latency.iter_mut().zip(more.latency) {
        *s += m;
    }
    sum.latency_sum_us += more.latency_sum_us;
    sum.reloads_ok += more.reloads_ok;
    sum.reloads_failed += more.reloads_failed;
}

#[cfg(test)]
mod tests {
    use super::render::{metrics, page};
    use super::*;

    fn row(name: &str, requests: u64, generation: Option<u64>) -> PluginRow {
        PluginRow {
            name: name.into(),
            generation,
            counts: PluginCounts {
                requests,
                ..PluginCounts::default()
            },
            ..PluginRow::default()
        }
    }

    #[test]
    fn counters_add_up_across_processes_and_survive_a_restart() {
        let one = Snapshot {
            server: ServerStats {
                open_connections: 2,
                accepted_total: 10,
                ..ServerStats::default()
            },
            plugins: vec![row("hello", 5, Some(1)), row("chaos", 1, None)],
            ..Snapshot::default()
        };
        let two = Snapshot {
            server: ServerStats {
                open_connections: 3,
                accepted_total: 7,
                ..ServerStats::default()
            },
            plugins: vec![row("hello", 4, Some(2))],
            ..Snapshot::default()
        };
        let mut retired = Totals::default();
        retired.retire(&Snapshot {
            plugins: vec![row("hello", 100, Some(1))],
            server: ServerStats {
                open_connections: 9,
                accepted_total: 50,
                ..ServerStats::default()
            },
            ..Snapshot::default()
        });
        let mut slow = row("slow", 2, Some(1));
        slow.bulkhead = BulkheadStats {
            in_flight: 2,
            queued: 1,
            timed_out: 4,
            refused: 5,
            lost_workers: 1,
            max_concurrency: 3,
            ..BulkheadStats::default()
        };
        let mut retired_slow = slow.clone();
        retired_slow.bulkhead.timed_out = 10;
        retired.retire(&Snapshot {
            plugins: vec![retired_slow],
            ..Snapshot::default()
        });
        let three = Snapshot {
            plugins: vec![slow],
            ..Snapshot::default()
        };
        let crashes = BTreeMap::from([("chaos".to_owned(), (3, true))]);
        let o = Overview::merge(&retired, [&one, &two, &three], Vec::new(), &crashes);
        let slow = o.plugins.iter().find(|p| p.name == "slow").unwrap();
        let b = &slow.bulkhead;
        assert_eq!(
            (b.timed_out, b.refused),
            (14, 10),
            "counters add up, ended processes too"
        );
        assert_eq!(
            (b.in_flight, b.queued, b.lost_workers),
            (2, 1, 1),
            "gauges: live only"
        );
        assert_eq!(
            o.server.open_connections, 5,
            "gauges of ended processes are gone"
        );
        assert_eq!(o.server.accepted_total, 67);
        let hello = o.plugins.iter().find(|p| p.name == "hello").unwrap();
        assert_eq!(hello.counts.requests, 109);
        assert_eq!(hello.generation, Some(1));
        let chaos = o.plugins.iter().find(|p| p.name == "chaos").unwrap();
        assert_eq!((chaos.crashes, chaos.quarantined), (3, true));
        let text = metrics(&o);
        assert!(
            text.contains("mah_plugin_crashes_total{plugin=\"chaos\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("mah_plugin_quarantined{plugin=\"chaos\"} 1"),
            "{text}"
        );
        assert!(page(&o).contains("<td>chaos</td><td>quarantined</td>"));
        for series in [
            "mah_plugin_in_flight{plugin=\"slow\"} 2",
            "mah_plugin_queued{plugin=\"slow\"} 1",
            "mah_plugin_timeouts_total{plugin=\"slow\"} 14",
            "mah_plugin_refused_total{plugin=\"slow\"} 10",
            "mah_plugin_lost_workers{plugin=\"slow\"} 1",
            "mah_plugin_max_concurrency{plugin=\"slow\"} 3",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
