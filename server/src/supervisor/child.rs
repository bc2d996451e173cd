//! One server process as the supervisor holds it: started by executing this same binary with the
//! listening socket, its end of the channel and the crash pipe passed as inherited descriptors.
//!
//! Exec, not fork alone: the supervisor runs threads (signals, admin), and a forked copy of a
//! threaded process may inherit a lock some other thread held. Between `fork` and `exec` the child
//! only makes async-signal-safe calls (see [`spawn`]).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Instant, SystemTime};

use crate::admin::Snapshot;
use crate::crash::Record;
use crate::plugin::Quarantined;
use crate::supervisor::channel::{self, Down};

/// The environment variable that tells a server process its inherited descriptors and its
/// supervisor: `LISTENER,CHANNEL,CRASH_PIPE,SUPERVISOR_PID`.
pub const FDS_VAR: &str = "MINI_ASYNC_HTTP_FDS";

/// A running server process.
pub struct Process {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// The supervisor's end of its channel (non-blocking, registered with the supervisor's poll).
    pub channel: mio::net::UnixDatagram,
    /// The read end of its crash pipe.
    crash: File,
    /// When it was started.
    pub started: Instant,
    /// The same, as wall-clock seconds, for the status page.
    pub started_unix: u64,
    /// When it said it was ready.
    pub ready: Option<Instant>,
    /// SIGKILL was sent; its exit is still to be reaped.
    pub killed: bool,
    /// Its latest snapshot.
    pub last: Option<Snapshot>,
}

impl Process {
    /// Sends a message; a process that cannot take it (gone, or its buffer full) misses it, which
    /// its exit or its next report will show.
    pub fn send(&self, msg: &Down) {
        if let Err(e) = self.channel.send(&channel::encode(msg)) {
            tracing::debug!(pid = self.pid, "message to a server process not sent: {e}");
        }
    }

    /// Its exit status, if it has ended (reaps it). A process that cannot be waited for any more
    /// (someone else reaped it) counts as ended, with status 255.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(pid = self.pid, "cannot wait for a server process: {e}");
                Some(ExitStatus::from_raw(255 << 8))
            }
        }
    }

    /// Kills it and waits for it: only for a process that was just started, which cannot be stuck.
    pub fn reap_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends it SIGKILL; [`exited`](Self::exited) reaps it later.
    pub fn kill(&mut self) {
        self.killed = true;
        let _ = self.child.kill();
    }

    /// The crash records it wrote before it died.
    pub fn records(&mut self) -> Vec<Record> {
        let mut bytes = Vec::new();
        // The write end closed with the process (a descendant that inherited it could keep it
        // open, hence non-blocking): what is there is read to the end.
        let _ = self.crash.read_to_end(&mut bytes);
        bytes
            .chunks_exact(Record::SIZE)
            .filter_map(Record::decode)
            .collect()
    }
}

/// Starts server process `number` as `exe server-process --process NUMBER ARGS…`, serving on
/// `listener`, leaving the `quarantined` files unloaded.
///
/// # Errors
/// The pipe, the channel or the process cannot be made.
pub fn spawn(
    exe: &std::path::Path,
    args: &[OsString],
    number: usize,
    listener: RawFd,
    quarantined: &[Quarantined],
) -> io::Result<Process> {
    let (ours, theirs) = channel::pair()?;
    let (crash_read, crash_write) = pipe()?;
    let mut command = Command::new(exe);
    // `ps` shows the name the supervisor was started with, not /proc/self/exe.
    if let Some(name) = std::env::args_os().next() {
        command.arg0(name);
    }
    command
        .arg("server-process")
        .arg("--process")
        .arg(number.to_string())
        .args(args)
        .env(
            FDS_VAR,
            format!(
                "{listener},{},{},{}",
                theirs.as_raw_fd(),
                crash_write.as_raw_fd(),
                std::process::id()
            ),
        )
        .stdin(Stdio::null());
    for q in quarantined {
        command
            .arg("--quarantined")
            .arg(format!("{}={}", q.plugin, q.sha));
    }
    let inherit = [listener, theirs.as_raw_fd(), crash_write.as_raw_fd()];
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before `exec` and makes only async-signal-safe
    // calls (prctl, getppid, fcntl, _exit); it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            // Die with the supervisor, even if it is killed with SIGKILL: a server process must
            // never outlive the process that owns its listening socket and restarts it. (The
            // signal follows the supervisor's main thread, which spawns every process.)
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            for fd in inherit {
                // Keep these three across exec; every other descriptor is close-on-exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    let mut child = command.spawn()?;
    // The process has its ends now; ours would only keep them open after it dies.
    drop(theirs);
    drop(crash_write);
    let made = set_nonblocking(&crash_read).and_then(|()| ours.set_nonblocking(true));
    if let Err(e) = made {
        // Never leave a process running that nobody watches.
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let channel = mio::net::UnixDatagram::from_std(ours);
    Ok(Process {
        pid: child.id(),
        child,
        channel,
        crash: File::from(crash_read),
        started: Instant::now(),
        started_unix: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ready: None,
        killed: false,
        last: None,
    })
}

/// The descriptors a server process inherited, from `MINI_ASYNC_HTTP_FDS`: listener, channel, crash pipe.
/// They become close-on-exec again, so that nothing the process starts inherits them.
///
/// # Errors
/// The variable is missing or malformed: the binary was not started by a supervisor.
///
/// # Safety
/// Call it before the process starts any thread: it removes `MINI_ASYNC_HTTP_FDS` from the environment.
pub unsafe fn inherited() -> io::Result<(std::net::TcpListener, UnixDatagram, RawFd)> {
    let value = std::env::var(FDS_VAR).map_err(|_| {
        io::Error::other(format!(
            "{FDS_VAR} is not set: `server-process` is started by `serve`, not by hand"
        ))
    })?;
    let fds: Vec<RawFd> = value
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::other(format!("{FDS_VAR}={value:?} is malformed")))?;
    let [listener, channel, crash, supervisor] = fds[..] else {
        return Err(io::Error::other(format!(
            "{FDS_VAR}={value:?} is malformed"
        )));
    };
    // The exec cleared the parent-death signal if this binary has file capabilities or is
    // set-user-ID: arm it again, and make sure the supervisor did not die in between.
    // SAFETY: prctl and getppid take no pointers.
    let orphaned = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        libc::getppid() != supervisor
    };
    if orphaned {
        return Err(io::Error::other("the supervisor is gone"));
    }
    for fd in [listener, channel, crash] {
        // SAFETY: F_GETFD only reads the descriptor's flags; it fails for a descriptor that is not
        // open, which is what we check.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(io::Error::other(format!(
                "{FDS_VAR}: descriptor {fd} is not open"
            )));
        }
        // SAFETY: as above; this sets only the close-on-exec flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: the caller promises that no other thread runs yet, so none reads the environment.
    unsafe { std::env::remove_var(FDS_VAR) };
    // SAFETY: the supervisor passed these descriptors to this process alone (they were checked
    // open above), and nothing else in the process owns them.
    unsafe {
        Ok((
            std::net::TcpListener::from_raw_fd(listener),
            UnixDatagram::from_raw_fd(channel),
            crash,
        ))
    }
}

/// A pipe whose ends are close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors that we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes a descriptor we own non-blocking.
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own change only its status flags.
    let failed = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == -1
    };
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
