//! The private shadow copy a plugin is loaded from.
//!
//! `dlopen` needs a path, and the file in the plugins folder must never be mapped (see
//! `loader.rs`), so each load writes the plugin's bytes to a copy of its own. Nobody else may touch
//! that copy between the write and the `dlopen`, or they could get their own code loaded into the
//! server. So each load makes a directory of its own with `mkdtemp(3)` (created atomically, mode
//! 0700, a fresh random name: never a directory that existed before, whoever made it), writes the
//! copy inside it with `O_CREAT | O_EXCL | O_NOFOLLOW` (mode 0600), and removes both as soon as
//! the library is mapped. Between loads nothing of the host is on disk, so a process killed with
//! `SIGKILL` leaves nothing behind (except during the milliseconds of a load).
//!
//! Every path also carries the process id and a serial, so it is never the same twice in one
//! process: glibc's `dlopen` hands back a library it already has for a path it has seen, and a
//! library whose unloading is deferred (thread-local destructors) is still "had".
//!
//! (`memfd_create` and `/proc/self/fd/N` would leave nothing on disk at all, but descriptor
//! numbers are reused, so that path would repeat while a deferred library still holds it.)

use std::ffi::{CString, OsString};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes every shadow path of this process unique.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A shadow copy on disk; dropping it removes the copy and its directory.
pub(crate) struct Shadow {
    dir: PathBuf,
    file: PathBuf,
}

impl Shadow {
    /// Writes `bytes` as `name.so` in a new private directory under `parent` (the system's
    /// temporary directory, in the server).
    ///
    /// # Errors
    /// The directory or the file cannot be made or written; the message names the path.
    pub fn write(parent: &Path, name: &str, bytes: &[u8]) -> Result<Shadow, String> {
        check_parent(parent)?;
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let template = parent.join(format!(
            "mini-async-http-{}-{serial}-XXXXXX",
            std::process::id()
        ));
        let dir =
            make_private_dir(&template).map_err(|e| format!("{}: {e}", template.display()))?;
        // From here on, `Drop` cleans up whatever was made.
        let shadow = Shadow {
            file: dir.join(format!("{name}.so")),
            dir,
        };
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&shadow.file)
            .and_then(|mut f| f.write_all(bytes));
        written.map_err(|e| format!("{}: {e}", shadow.file.display()))?;
        Ok(shadow)
    }

    /// The copy's path, for `dlopen`.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes what a process that died during a load (killed, or crashed in a plugin's
/// constructors) left of its shadow copies under `parent`: the directories named for `pid` that
/// belong to this user, and the one file in each. Called by the supervisor for each server
/// process that ends.
pub fn sweep(parent: &Path, pid: u32) {
    use std::os::unix::fs::MetadataExt;
    let prefix = format!("mini-async-http-{pid}-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let dir = entry.path();
        // Not followed if it is a link; only our own directories.
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !ours {
            continue;
        }
        for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(file.path());
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Refuses a parent anyone may write to that is not sticky: there another user could rename our
/// private directory away and put theirs in its place between the write and the `dlopen`
/// (`O_NOFOLLOW` guards only the last component). `/tmp` is sticky.
fn check_parent(parent: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "{}: anyone may write to it and it is not sticky, so another user could replace the \
             copy; set TMPDIR to a private directory",
            parent.display()
        ));
    }
    Ok(())
}

/// `mkdtemp(3)`: replaces the trailing `XXXXXX` of `template` and creates that directory, mode
/// 0700, failing rather than reusing one that exists.
fn make_private_dir(template: &Path) -> io::Result<PathBuf> {
    let template = CString::new(template.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    let mut bytes = template.into_bytes_with_nul();
    // SAFETY: `bytes` is a NUL-terminated, writable buffer that lives across the call; mkdtemp
    // writes only the six `X` before the NUL.
    let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(io::Error::last_os_error());
    }
    bytes.pop();
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn a_copy_is_private_unique_and_gone_when_dropped() {
        let parent = std::env::temp_dir();
        let a = Shadow::write(&parent, "demo", b"bytes").unwrap();
        let b = Shadow::write(&parent, "demo", b"bytes").unwrap();
        assert_ne!(a.path(), b.path());
        let dir = a.path().parent().unwrap().to_owned();
        let dir_meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(dir_meta.is_dir());
        assert_eq!(dir_meta.permissions().mode() & 0o777, 0o700);
        let file_meta = std::fs::symlink_metadata(a.path()).unwrap();
        assert_eq!(file_meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(file_meta.uid(), dir_meta.uid());
        assert_eq!(std::fs::read(a.path()).unwrap(), b"bytes");
        drop(a);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn a_parent_anyone_may_write_to_must_be_sticky() {
        let parent = std::env::temp_dir().join(format!("mah-shadow-test-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Shadow::write(&parent, "demo", b"x").err().unwrap();
        assert!(err.contains("not sticky"), "{err}");
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Shadow::write(&parent, "demo", b"x").is_ok());
        std::fs::remove_dir(&parent).unwrap();
    }

    #[test]
    fn the_copies_of_a_dead_process_are_swept() {
        let parent = std::env::temp_dir();
        // A copy left as a process killed during its load would leave it.
        let left = Shadow::write(&parent, "demo", b"x").unwrap();
        let dir = left.path().parent().unwrap().to_owned();
        std::mem::forget(left);
        assert!(dir.exists());
        sweep(&parent, std::process::id());
        assert!(!dir.exists(), "{} not swept", dir.display());
    }

    #[test]
    fn a_missing_parent_is_an_error_naming_it() {
        let parent = Path::new("/nonexistent-mah-parent");
        let err = Shadow::write(parent, "demo", b"x").err().unwrap();
        assert!(err.starts_with("/nonexistent-mah-parent: "), "{err}");
    }
}
