//! The messages between the supervisor and a server process.
//!
//! They travel over a `UnixDatagram` pair per process, the seed's control channel stretched across
//! the process boundary: the supervisor keeps one end, the process inherits the other. Each
//! message is one datagram of JSON; a status snapshot is the biggest, a few kilobytes per plugin,
//! so the pair's buffers are raised to [`MAX_DATAGRAM`].

use std::io;
use std::os::unix::net::UnixDatagram;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::admin::Snapshot;
use crate::plugin::Quarantined;

/// From the supervisor to a server process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Down {
    /// Drain and exit (the supervisor got SIGTERM or SIGINT).
    Shutdown,
    /// A drain is coming: report not ready, serve on.
    StopSoon,
    /// Re-read the configuration and rescan the plugins folder (the supervisor got SIGHUP).
    Reload,
    /// Answer with [`Up::Status`] carrying `seq`.
    Status {
        /// Echoed in the answer.
        seq: u64,
    },
    /// The files not to load, replacing the previous list.
    Quarantine {
        /// The whole list.
        files: Vec<Quarantined>,
    },
}

/// From a server process to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Up {
    /// The process serves: its plugins are loaded and its loop runs.
    Ready,
    /// How the process is doing; `seq` is that of the request, or 0 for the periodic report.
    Status {
        /// The request answered.
        seq: u64,
        /// The process's figures.
        snapshot: Snapshot,
    },
}

/// The largest message, and the socket buffers of the pair.
pub const MAX_DATAGRAM: usize = 1 << 20;

/// A connected pair, buffers raised: the supervisor's end and the process's end.
///
/// # Errors
/// The sockets cannot be made.
pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
    let (a, b) = UnixDatagram::pair()?;
    for end in [&a, &b] {
        let sock = socket2::SockRef::from(end);
        // Best effort: the kernel caps it at net.core.wmem_max / rmem_max.
        let _ = sock.set_send_buffer_size(MAX_DATAGRAM);
        let _ = sock.set_recv_buffer_size(MAX_DATAGRAM);
    }
    Ok((a, b))
}

/// One message's bytes.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // These types have string keys and no maps with other keys: serialising cannot fail.
    serde_json::to_vec(msg).unwrap_or_default()
}

/// A message read back; `None` for bytes that are not one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_over_the_pair() {
        let (supervisor, process) = pair().unwrap();
        let down = [
            Down::Shutdown,
            Down::Reload,
            Down::Status { seq: 7 },
            Down::Quarantine {
                files: vec![Quarantined {
                    plugin: "chaos".into(),
                    sha: "0123abcd".into(),
                }],
            },
        ];
        for msg in &down {
            supervisor.send(&encode(msg)).unwrap();
        }
        let mut buf = vec![0; MAX_DATAGRAM];
        for msg in &down {
            let n = process.recv(&mut buf).unwrap();
            assert_eq!(decode::<Down>(&buf[..n]).as_ref(), Some(msg));
        }
        let up = Up::Status {
            seq: 7,
            snapshot: Snapshot::default(),
        };
        process.send(&encode(&up)).unwrap();
        let n = supervisor.recv(&mut buf).unwrap();
        assert_eq!(decode::<Up>(&buf[..n]), Some(up));
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert_eq!(decode::<Down>(b""), None);
        assert_eq!(decode::<Down>(b"\"Nope\""), None);
        assert_eq!(decode::<Up>(&[0xff; 9]), None);
    }
}
