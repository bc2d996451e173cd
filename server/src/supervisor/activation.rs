//! systemd socket activation: a service manager that listens for us (`ListenStream=` in a socket
//! unit) starts the supervisor with the listening socket as descriptor 3 and says so in
//! `LISTEN_FDS` and `LISTEN_PID` (`sd_listen_fds(3)`). The socket then outlives every process of
//! ours: connections wait in its backlog across a restart of the whole service.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// The listening socket passed by the service manager, if this process was given one: `None`
/// when `LISTEN_PID` is not this process (the variables were meant for another, or are absent).
///
/// # Errors
/// The variables say this process got descriptors, but the first one is not a listening TCP
/// socket.
pub(super) fn take() -> io::Result<Option<TcpListener>> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !ours || count < 1 {
        return Ok(None);
    }
    if count > 1 {
        tracing::warn!(
            "LISTEN_FDS={count}: only the first socket is served (descriptor {FIRST}); the \
             others are left open, not passed on"
        );
        for fd in FIRST + 1..FIRST + count {
            // SAFETY: F_SETFD only sets the close-on-exec flag; on a descriptor that is not
            // open it fails, harmlessly. So no server process inherits the sockets we ignore.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    if !is_listening_tcp(FIRST) {
        return Err(io::Error::other(format!(
            "LISTEN_FDS: descriptor {FIRST} is not a listening TCP socket (is the socket unit's \
             ListenStream= an address?)"
        )));
    }
    // SAFETY: the service manager passed descriptor 3 to this process alone (LISTEN_PID is ours)
    // and nothing else here owns it; it was checked to be an open listening socket.
    let listener = unsafe { TcpListener::from_raw_fd(FIRST) };
    listener.set_nonblocking(true)?;
    // Server processes get it the way they get a socket we bound (`child.rs`), not by chance.
    // SAFETY: F_SETFD only sets the close-on-exec flag of a descriptor we own.
    unsafe { libc::fcntl(FIRST, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(listener))
}

/// Whether `fd` is an open, listening stream socket of an internet family.
fn is_listening_tcp(fd: RawFd) -> bool {
    let int = |level, name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for the call and sized for an int option.
        let ok =
            unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) == 0 };
        ok.then_some(value)
    };
    int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
        && int(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && matches!(
            int(libc::SOL_SOCKET, libc::SO_DOMAIN),
            Some(libc::AF_INET | libc::AF_INET6)
        )
}
