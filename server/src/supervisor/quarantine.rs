//! Quarantine: which plugin files crashed their server processes too often to be loaded again.
//!
//! The supervisor counts the crashes each plugin is implicated in. When one file (a plugin name
//! and its hash) has crashed `threshold` processes within `window`, it is quarantined: every server
//! process leaves it unloaded and its routes answer 503. A new file for that plugin (another hash)
//! loads as usual, since only that hash is named; the entry stays (should the same file come back,
//! it stays unloaded) until SIGHUP lifts every quarantine.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::plugin::Quarantined;

/// The crashes of every plugin, and the files under quarantine.
#[derive(Debug)]
pub struct Quarantine {
    /// Crashes that quarantine a file; 0 turns quarantine off.
    threshold: u32,
    /// The time those crashes must fall within.
    window: Duration,
    plugins: BTreeMap<String, Crashes>,
}

#[derive(Debug, Default)]
struct Crashes {
    /// Every crash of the plugin, whatever its file.
    total: u64,
    /// Per file (a prefix of its hash): its recent crashes, newest last, within the window, and
    /// whether it is quarantined.
    files: BTreeMap<String, (VecDeque<Instant>, bool)>,
}

impl Quarantine {
    /// No crashes yet.
    pub fn new(threshold: u32, window: Duration) -> Quarantine {
        Quarantine {
            threshold,
            window,
            plugins: BTreeMap::new(),
        }
    }

    /// Counts a crash of `plugin`, loaded from a file whose hash starts with `sha`, at `now`.
    /// Returns `true` when this crash puts the file in quarantine (the list changed).
    pub fn crashed(&mut self, plugin: &str, sha: &str, now: Instant) -> bool {
        let c = self.plugins.entry(plugin.to_owned()).or_default();
        c.total += 1;
        if sha.is_empty() {
            // Not a file we can name: counted, never quarantined.
            return false;
        }
        let (recent, quarantined) = c.files.entry(sha.to_owned()).or_default();
        recent.push_back(now);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            recent.pop_front();
        }
        let due = self.threshold > 0 && recent.len() >= self.threshold as usize;
        let newly = due && !*quarantined;
        *quarantined |= due;
        newly
    }

    /// Lifts every quarantine (SIGHUP); returns the plugins it lifted.
    pub fn lift_all(&mut self) -> Vec<String> {
        let mut lifted = Vec::new();
        for (name, c) in &mut self.plugins {
            if c.files.values().any(|(_, q)| *q) {
                lifted.push(name.clone());
            }
            c.files.clear();
        }
        lifted
    }

    /// The files under quarantine, for the server processes.
    pub fn list(&self) -> Vec<Quarantined> {
        let mut list = Vec::new();
        for (name, c) in &self.plugins {
            for (sha, (_, quarantined)) in &c.files {
                if *quarantined {
                    list.push(Quarantined {
                        plugin: name.clone(),
                        sha: sha.clone(),
                    });
                }
            }
        }
        list
    }

    /// Every plugin that ever crashed: its crashes, and whether a file of it is quarantined.
    pub fn counts(&self) -> BTreeMap<String, (u64, bool)> {
        self.plugins
            .iter()
            .map(|(name, c)| (name.clone(), (c.total, c.files.values().any(|(_, q)| *q))))
            .collect()
    }

    /// The threshold and the window, for log lines.
    pub fn rule(&self) -> (u32, Duration) {
        (self.threshold, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_third_crash_in_the_window_quarantines_once() {
        let mut q = Quarantine::new(3, 60 * S);
        let t = Instant::now();
        assert!(!q.crashed("chaos", "aaaa", t));
        assert!(!q.crashed("chaos", "aaaa", t + S));
        assert!(q.list().is_empty());
        assert!(q.crashed("chaos", "aaaa", t + 2 * S));
        assert!(!q.crashed("chaos", "aaaa", t + 3 * S), "only once");
        assert_eq!(
            q.list(),
            [Quarantined {
                plugin: "chaos".into(),
                sha: "aaaa".into()
            }]
        );
        assert_eq!(q.counts()["chaos"], (4, true));
    }

    #[test]
    fn crashes_outside_the_window_do_not_add_up() {
        let mut q = Quarantine::new(3, 60 * S);
        let t = Instant::now();
        assert!(!q.crashed("chaos", "aaaa", t));
        assert!(!q.crashed("chaos", "aaaa", t + 50 * S));
        assert!(!q.crashed("chaos", "aaaa", t + 100 * S));
        assert!(q.crashed("chaos", "aaaa", t + 101 * S));
    }

    #[test]
    fn a_new_build_counts_from_zero_and_the_old_file_stays_quarantined() {
        let mut q = Quarantine::new(3, 60 * S);
        let t = Instant::now();
        for i in 0..3 {
            q.crashed("chaos", "aaaa", t + i * S);
        }
        assert!(!q.crashed("chaos", "bbbb", t + 4 * S));
        assert_eq!(q.list().len(), 1);
        assert_eq!(q.list()[0].sha, "aaaa");
        assert_eq!(q.counts()["chaos"], (4, true));
    }

    #[test]
    fn files_count_apart_and_a_crash_of_another_build_lifts_nothing() {
        let mut q = Quarantine::new(2, 60 * S);
        let t = Instant::now();
        q.crashed("chaos", "new", t);
        assert!(q.crashed("chaos", "new", t + S));
        // The old build, still dropping in some process, crashes once: "new" stays quarantined.
        assert!(!q.crashed("chaos", "old", t + 2 * S));
        assert_eq!(q.list().len(), 1);
        assert_eq!(q.list()[0].sha, "new");
        assert!(
            !q.crashed("chaos", "", t),
            "no hash: counted, never quarantined"
        );
        assert_eq!(q.counts()["chaos"], (4, true));
    }

    #[test]
    fn sighup_lifts_everything_and_zero_turns_it_off() {
        let mut q = Quarantine::new(1, 60 * S);
        assert!(q.crashed("a", "1", Instant::now()));
        assert!(q.crashed("b", "2", Instant::now()));
        assert_eq!(q.lift_all(), ["a", "b"]);
        assert!(q.list().is_empty());
        let mut off = Quarantine::new(0, 60 * S);
        for _ in 0..10 {
            assert!(!off.crashed("a", "1", Instant::now()));
        }
    }
}
