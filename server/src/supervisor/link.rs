//! A server process's end of the supervisor's channel.
//!
//! One thread of the process reads the supervisor's messages and turns each into what a signal did
//! when the host ran alone: `Shutdown` drains, `Reload` re-reads the configuration and rescans the
//! plugins (both travel on into the event loop through its own control channel, as before), and
//! `Quarantine` unloads the files named. It answers `Status` with a [`Snapshot`](crate::admin::Snapshot), sends one
//! unasked ten times a second (so that the counters of a process that dies are at most a tenth of
//! a second old),
//! and says `Ready` once the server listens.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::host::HostHandle;
use crate::supervisor::channel::{self, Down, MAX_DATAGRAM, Up};

/// How often a process reports unasked.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// The process's end of the channel.
pub struct Link {
    socket: UnixDatagram,
}

impl Link {
    /// The end the process inherited.
    pub fn new(socket: UnixDatagram) -> Link {
        Link { socket }
    }

    /// Serves the channel for `host` on a thread of its own.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(self, host: HostHandle) -> io::Result<()> {
        std::thread::Builder::new()
            .name("supervisor-link".into())
            .spawn(move || self.run(&host))
            .map(drop)
    }

    fn run(self, host: &HostHandle) {
        if host.ready().is_err() {
            return;
        }
        self.send(&Up::Ready);
        let _ = self.socket.set_read_timeout(Some(REPORT_EVERY));
        let mut buf = vec![0; MAX_DATAGRAM];
        loop {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if !self.send(&status(host, 0)) {
                        return;
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!("the supervisor's channel failed: {e}");
                    return;
                }
            };
            match channel::decode::<Down>(&buf[..n]) {
                Some(Down::Shutdown) => host.begin_shutdown(),
                Some(Down::StopSoon) => host.stop_soon(),
                Some(Down::Reload) => host.reload_everything(),
                Some(Down::Quarantine { files }) => host.set_quarantine(files),
                Some(Down::Status { seq }) => {
                    self.send(&status(host, seq));
                }
                None => tracing::warn!("the supervisor sent a message that is not one"),
            }
        }
    }

    /// Sends a message; `false` once the supervisor is gone.
    fn send(&self, msg: &Up) -> bool {
        match self.socket.send(&channel::encode(msg)) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => false,
            Err(e) => {
                tracing::warn!("message to the supervisor not sent: {e}");
                true
            }
        }
    }
}

fn status(host: &HostHandle, seq: u64) -> Up {
    Up::Status {
        seq,
        snapshot: host.snapshot(),
    }
}
