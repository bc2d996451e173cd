//! Watching the plugins folder and the configuration file for changes.
//!
//! The watch is on the *folders*, not the files: a watch on a file dies when the file is replaced
//! by a rename, which is how editors save and how `mv` installs. A file is complete when its
//! writer closes it (inotify's `IN_CLOSE_WRITE`) or when it is renamed into place
//! (`IN_MOVED_TO`): it is read at once (after 10 ms in which no other writer writes to it). A writer that keeps the file open writes it in several
//! steps, so other events for one path are coalesced until the path has been quiet for a while.
//! Then the file is read and hashed, and only a real change is reported. A half-written file that
//! pauses longer than the quiet period is still safe: the loader refuses a truncated library.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::plugin::{PluginFile, plugin_name};

/// A change worth acting on.
pub enum Change {
    /// A plugin file is new or its content changed; here is the content.
    Plugin(PluginFile),
    /// A plugin file is gone.
    PluginRemoved(PathBuf),
    /// The configuration file's content changed.
    Config,
}

/// Watches until dropped.
pub struct Watcher {
    _notify: notify::RecommendedWatcher,
}

/// What the watcher needs to know.
pub struct WatchSpec {
    /// The plugins folder.
    pub plugins_dir: PathBuf,
    /// The configuration file, if there is one to watch.
    pub config: Option<PathBuf>,
    /// How long a path must be quiet before it is read.
    pub quiet: Duration,
    /// Content hashes already known (loaded at start), so that touching a file is not a change.
    pub known: HashMap<PathBuf, String>,
}

/// Starts watching; `on_change` runs on the watcher's thread for each change.
///
/// # Errors
/// The folders cannot be watched (missing, or out of inotify watches).
pub fn watch(
    spec: WatchSpec,
    mut on_change: impl FnMut(Change) + Send + 'static,
) -> notify::Result<Watcher> {
    let plugins_dir = absolute(&spec.plugins_dir);
    let config = spec.config.as_deref().map(absolute);
    let (events, incoming) = mpsc::channel();
    let mut notify = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = events.send(event);
    })?;
    let mut dirs: HashSet<PathBuf> = HashSet::from([plugins_dir.clone()]);
    dirs.extend(config.as_ref().and_then(|c| c.parent().map(Path::to_owned)));
    for dir in &dirs {
        notify.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let mut known: HashMap<PathBuf, String> = spec
        .known
        .into_iter()
        .map(|(path, sha)| (absolute(&path), sha))
        .collect();
    if let Some(config) = &config
        && let Ok(file) = PluginFile::read(config)
    {
        known.insert(config.clone(), file.sha256);
    }
    let quiet = spec.quiet;
    thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let relevant = |path: &Path| {
                Some(path) == config.as_deref()
                    || (path.parent() == Some(&*plugins_dir) && plugin_name(path).is_some())
            };
            let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
            loop {
                let now = Instant::now();
                let timeout = pending
                    .values()
                    .min()
                    .map_or(Duration::from_secs(3600), |due| {
                        due.saturating_duration_since(now)
                    });
                match incoming.recv_timeout(timeout) {
                    Ok(Ok(event)) => {
                        let Some(done) = complete(&event.kind) else {
                            continue;
                        };
                        // A rename's first path is the old name: gone, not complete. It waits
                        // the quiet period like a removal, so that `mv` aside and a copy in
                        // are one reload with the state handed over.
                        let renamed = matches!(
                            event.kind,
                            EventKind::Modify(ModifyKind::Name(RenameMode::Both))
                        );
                        for (i, path) in event.paths.into_iter().enumerate() {
                            if relevant(&path) {
                                let due = if done && !(renamed && i == 0) {
                                    Instant::now() + CLOSE_GRACE
                                } else {
                                    Instant::now() + quiet
                                };
                                pending.insert(path, due);
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("file watch error: {e}"),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let now = Instant::now();
                let due: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in due {
                    pending.remove(&path);
                    if let Some(change) = settle(&path, config.as_deref(), &mut known) {
                        on_change(change);
                    }
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(Watcher { _notify: notify })
}

/// How long a file closed by its writer (or moved in) waits before it is read: a write by another
/// writer meanwhile puts it back on the quiet period.
const CLOSE_GRACE: Duration = Duration::from_millis(10);

/// `Some(true)` for an event after which its file is complete (closed by its writer, or renamed
/// into place), `Some(false)` for another change (more may follow), `None` for reads (ours
/// included: hashing a file opens it), which are not changes.
fn complete(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(true),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => Some(true),
        _ => Some(false),
    }
}

/// What a quiet path amounts to, if anything changed.
fn settle(
    path: &Path,
    config: Option<&Path>,
    known: &mut HashMap<PathBuf, String>,
) -> Option<Change> {
    let is_config = Some(path) == config;
    if !path.is_file() {
        known.remove(path)?;
        return (!is_config).then(|| Change::PluginRemoved(path.to_owned()));
    }
    let file = match PluginFile::read(path) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot read a changed file: {e}");
            return None;
        }
    };
    if known.get(path) == Some(&file.sha256) {
        tracing::debug!(file = %path.display(), "unchanged content: no reload");
        return None;
    }
    known.insert(path.to_owned(), file.sha256.clone());
    Some(if is_config {
        Change::Config
    } else {
        Change::Plugin(file)
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange};

    use super::*;

    #[test]
    fn a_file_is_complete_when_closed_after_writing_or_moved_in() {
        let close_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let moved_in = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        for kind in [close_write, moved_in, renamed] {
            assert_eq!(complete(&kind), Some(true), "{kind:?}");
        }
        let written = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let created = EventKind::Create(CreateKind::File);
        for kind in [
            written,
            created,
            EventKind::Remove(notify::event::RemoveKind::File),
        ] {
            assert_eq!(complete(&kind), Some(false), "{kind:?}");
        }
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert_eq!((complete(&read), complete(&opened)), (None, None));
    }
}
