//! A new binary without dropping a connection, as nginx does it: on SIGUSR2 the supervisor
//! executes the binary at the path it was started from (where the new build was installed) with
//! the same arguments, handing it the listening sockets (the service port and the admin listener)
//! and the write end of a pipe. The new supervisor starts its server processes on those sockets
//! and, once all of them serve, writes a byte to the pipe; then this one drains and exits, as on
//! SIGTERM. The sockets are never closed in between, so no connection is refused. Only a
//! supervisor that serves upgrades (not one starting or stopping), and a stop signal during an
//! upgrade kills the new binary first.
//!
//! A new binary that exits, or does not serve within [`START_TIMEOUT`], fails the upgrade: it is
//! killed if it still runs, and this supervisor serves on as if nothing happened.
//!
//! The new supervisor is a child of the old one until the old one exits; then it is reparented
//! (to init, or to the service manager if it is a subreaper). Under systemd (or as a container's
//! PID 1) the exit of the main process ends the service: there, use socket activation (README)
//! and a plain restart for new binaries.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Phase, START_TIMEOUT, Supervisor};

/// The environment variable that hands a new supervisor its sockets and the pipe it says it
/// serves on: `LISTENER,ADMIN,READY` (`ADMIN` is -1 without an admin listener).
pub const UPGRADE_VAR: &str = "MINI_ASYNC_HTTP_UPGRADE";
/// The poll token of the pipe from a new supervisor.
pub(super) const READY: Token = Token(usize::MAX - 1);

/// A new supervisor being started.
pub(super) struct Upgrade {
    child: Child,
    /// The read end of its pipe, registered with the poll.
    ready: File,
    started: Instant,
}

/// What a supervisor started by an upgrade inherited: the sockets to serve and the pipe to say
/// so on.
pub(super) struct Inherited {
    pub listener: TcpListener,
    pub admin: Option<TcpListener>,
    pub ready: File,
}

impl Supervisor {
    /// SIGUSR2: starts the new binary, unless an upgrade or a drain is under way.
    pub(super) fn begin_upgrade(&mut self) {
        if self.upgrade.is_some() || !matches!(self.phase, Phase::Serving) {
            tracing::warn!(
                "SIGUSR2: ignored: an upgrade is under way, or this supervisor is starting or \
                 stopping"
            );
            return;
        }
        let Some(listener) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let admin = self.admin_listener.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        match self.start_new(listener, admin) {
            Ok(upgrade) => {
                tracing::info!(
                    pid = upgrade.child.id(),
                    "SIGUSR2: upgrade: started {} (pid {}); this supervisor serves until it does",
                    self.options.upgrade.0.display(),
                    upgrade.child.id()
                );
                self.upgrade = Some(upgrade);
            }
            Err(e) => tracing::error!(
                "SIGUSR2: upgrade: cannot start {}: {e}; this supervisor serves on",
                self.options.upgrade.0.display()
            ),
        }
    }

    fn start_new(&self, listener: RawFd, admin: RawFd) -> io::Result<Upgrade> {
        let (read, write) = pipe()?;
        let (exe, args) = &self.options.upgrade;
        let mut command = Command::new(exe);
        command
            .args(args)
            .env(
                UPGRADE_VAR,
                format!("{listener},{admin},{}", write.as_raw_fd()),
            )
            .stdin(Stdio::null());
        let inherit = [listener, admin, write.as_raw_fd()];
        // SAFETY: the closure runs in the forked child before `exec` and makes only
        // async-signal-safe calls (fcntl); it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                for fd in inherit.into_iter().filter(|&fd| fd >= 0) {
                    // Keep these across exec; every other descriptor is close-on-exec.
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            })
        };
        let child = command.spawn()?;
        drop(write);
        self.poll.registry().register(
            &mut SourceFd(&read.as_raw_fd()),
            READY,
            Interest::READABLE,
        )?;
        Ok(Upgrade {
            child,
            ready: read,
            started: Instant::now(),
        })
    }

    /// The pipe from the new supervisor is readable: it serves (a byte) or failed (the end).
    pub(super) fn read_upgrade(&mut self) {
        let Some(upgrade) = self.upgrade.as_mut() else {
            return;
        };
        let mut byte = [0u8; 1];
        match upgrade.ready.read(&mut byte) {
            Ok(1) => {
                let pid = upgrade.child.id();
                tracing::info!(
                    pid,
                    "upgrade: the new supervisor (pid {pid}) serves; draining this one"
                );
                let upgrade = self.upgrade.take().expect("checked above");
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&upgrade.ready.as_raw_fd()));
                // Not waited for: it outlives us.
                drop(upgrade);
                // The admin socket is the new one's now: a draining supervisor answering on it
                // would make its probes flap.
                if let Some(admin) = self.admin.take() {
                    admin.shutdown();
                }
                self.begin_drain(libc::SIGUSR2);
            }
            Ok(_) => self.fail_upgrade(
                "it exited (or closed its pipe) before it served; this supervisor serves on",
            ),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                self.fail_upgrade(&format!("its pipe failed: {e}; this supervisor serves on"))
            }
        }
    }

    /// Gives up on a new supervisor that takes too long to serve.
    pub(super) fn check_upgrade(&mut self) {
        if let Some(upgrade) = &self.upgrade
            && upgrade.started.elapsed() > START_TIMEOUT
        {
            self.fail_upgrade(&format!(
                "it did not serve within {} s; this supervisor serves on",
                START_TIMEOUT.as_secs()
            ));
        }
    }

    /// When the loop must look at the upgrade at the latest.
    pub(super) fn upgrade_deadline(&self) -> Option<Instant> {
        self.upgrade.as_ref().map(|u| u.started + START_TIMEOUT)
    }

    /// Gives up on the pending upgrade, if there is one: the new binary is killed.
    pub(super) fn fail_upgrade(&mut self, why: &str) {
        let Some(mut upgrade) = self.upgrade.take() else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&upgrade.ready.as_raw_fd()));
        // A supervisor that did not serve has no server process that served either; its own
        // children die with it (their parent-death signal).
        let _ = upgrade.child.kill();
        let status = upgrade.child.wait();
        tracing::error!(
            "upgrade failed: the new binary {} ({}): {why}",
            self.options.upgrade.0.display(),
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
    }

    /// A supervisor started by an upgrade: once every one of its server processes serves (the
    /// old one's capacity is matched), the old one may go.
    pub(super) fn tell_old(&mut self) {
        let all = self
            .slots
            .iter()
            .all(|slot| matches!(&slot.state, super::State::Running(p) if p.ready.is_some()));
        if !all {
            return;
        }
        if let Some(mut ready) = self.upgraded_from.take()
            && let Err(e) = ready.write_all(b"!")
        {
            tracing::warn!("upgrade: cannot tell the old supervisor that this one serves: {e}");
        }
    }
}

/// The sockets and pipe a new supervisor inherited, if it was started by an upgrade.
///
/// # Errors
/// The variable is set but malformed, or its descriptors are not open.
pub(super) fn inherited() -> io::Result<Option<Inherited>> {
    let Ok(value) = std::env::var(UPGRADE_VAR) else {
        return Ok(None);
    };
    let fds: Vec<RawFd> = value
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::other(format!("{UPGRADE_VAR}={value:?} is malformed")))?;
    let [listener, admin, ready] = fds[..] else {
        return Err(io::Error::other(format!(
            "{UPGRADE_VAR}={value:?} is malformed"
        )));
    };
    for fd in [listener, admin, ready].into_iter().filter(|&fd| fd >= 0) {
        // SAFETY: F_GETFD only reads the descriptor's flags; it fails for one that is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(io::Error::other(format!(
                "{UPGRADE_VAR}: descriptor {fd} is not open"
            )));
        }
        // SAFETY: as above; this sets only the close-on-exec flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: the old supervisor passed these descriptors to this process alone (checked open
    // above), and nothing else here owns them.
    let inherited = unsafe {
        Inherited {
            listener: TcpListener::from_raw_fd(listener),
            admin: (admin >= 0).then(|| TcpListener::from_raw_fd(admin)),
            ready: File::from_raw_fd(ready),
        }
    };
    inherited.listener.set_nonblocking(true)?;
    Ok(Some(inherited))
}

/// A pipe whose read end does not block; both ends close-on-exec.
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just made them; nothing else owns them.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // The write end blocks (one byte into an empty pipe never does anyway).
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, 0) };
    Ok((read, write))
}
