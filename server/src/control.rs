//! The control channel into the event loop: a `UnixDatagram` pair, one end registered with mio.
//!
//! This is the seed's design (and why the server is Unix-only): mio waits on file descriptors, so
//! messages to the loop travel as datagrams on a socket it polls. Each message is a fixed nine
//! bytes; anything bigger would travel in a queue beside it, with the datagram only waking the loop.
//! Workers send [`ControlMsg::Closed`]; [`ServerHandle`](crate::ServerHandle) sends the rest.

use std::io;
use std::os::unix::net::UnixDatagram;

/// A message to the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMsg {
    /// A worker closed the connection with this token; the loop forgets it.
    Closed(usize),
    /// Stop accepting, finish what was received, close, join the workers.
    Shutdown,
    /// Run the reload hook with this tag (the host uses it for plugin reloads).
    Reload(u64),
}

impl ControlMsg {
    /// The size of every encoded message.
    pub const SIZE: usize = 9;

    /// The wire form: a tag byte and a little-endian `u64`.
    pub fn encode(self) -> [u8; Self::SIZE] {
        let (tag, value) = match self {
            ControlMsg::Closed(token) => (1u8, token as u64),
            ControlMsg::Shutdown => (2, 0),
            ControlMsg::Reload(tag) => (3, tag),
        };
        let mut out = [0; Self::SIZE];
        out[0] = tag;
        out[1..].copy_from_slice(&value.to_le_bytes());
        out
    }

    /// Reads a message back; `None` for anything that is not one.
    pub fn decode(bytes: &[u8]) -> Option<ControlMsg> {
        let value = u64::from_le_bytes(bytes.get(1..Self::SIZE)?.try_into().ok()?);
        if bytes.len() != Self::SIZE {
            return None;
        }
        match bytes[0] {
            1 => Some(ControlMsg::Closed(usize::try_from(value).ok()?)),
            2 => Some(ControlMsg::Shutdown),
            3 => Some(ControlMsg::Reload(value)),
            _ => None,
        }
    }
}

/// The sending end, shared by workers and handles. Sends block if the loop falls behind, which is
/// the back-pressure we want: the loop drains it on every wake-up.
#[derive(Debug)]
pub(crate) struct ControlSender(UnixDatagram);

impl ControlSender {
    pub(crate) fn send(&self, msg: ControlMsg) -> io::Result<()> {
        self.0.send(&msg.encode()).map(drop)
    }
}

/// A connected pair: the sender, and the receiver for the loop (non-blocking, for mio).
pub(crate) fn channel() -> io::Result<(ControlSender, mio::net::UnixDatagram)> {
    let (tx, rx) = UnixDatagram::pair()?;
    rx.set_nonblocking(true)?;
    Ok((ControlSender(tx), mio::net::UnixDatagram::from_std(rx)))
}

/// Reads every message waiting on the loop's end.
pub(crate) fn drain(
    rx: &mio::net::UnixDatagram,
    mut each: impl FnMut(ControlMsg),
) -> io::Result<()> {
    let mut buf = [0u8; 16];
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => {
                if let Some(msg) = ControlMsg::decode(&buf[..n]) {
                    each(msg);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for msg in [
            ControlMsg::Closed(0),
            ControlMsg::Closed(123_456),
            ControlMsg::Shutdown,
            ControlMsg::Reload(u64::MAX),
        ] {
            assert_eq!(ControlMsg::decode(&msg.encode()), Some(msg));
        }
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert_eq!(ControlMsg::decode(&[]), None);
        assert_eq!(ControlMsg::decode(&[9; 9]), None);
        assert_eq!(ControlMsg::decode(&[1; 8]), None);
        assert_eq!(ControlMsg::decode(&[2; 10]), None);
    }

    #[test]
    fn the_pair_carries_messages() {
        let (tx, rx) = channel().unwrap();
        tx.send(ControlMsg::Closed(7)).unwrap();
        tx.send(ControlMsg::Shutdown).unwrap();
        let mut got = Vec::new();
        drain(&rx, |m| got.push(m)).unwrap();
        assert_eq!(got, [ControlMsg::Closed(7), ControlMsg::Shutdown]);
    }
}
