//! [`InBuf`]: the read buffer a request is parsed from, lent by a worker to the connection it drives
//! and kept by the connection only while a request is incomplete.

/// A read buffer: `data[start..end]` holds unconsumed bytes; `data` is always initialised, so reads
/// go straight into its tail without zeroing it each time.
#[derive(Default)]
pub(crate) struct InBuf {
    pub data: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl InBuf {
    pub fn with_capacity(n: usize) -> InBuf {
        InBuf {
            data: vec![0; n],
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Makes room for at least `want` more bytes at the end, sliding pending bytes to the front
    /// first and growing (never past `max` in total) only if that is not enough. Returns the room.
    pub fn make_room(&mut self, want: usize, max: usize) -> usize {
        if self.data.len() - self.end >= want {
            return self.data.len() - self.end;
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < want && self.data.len() < max {
            let len = (self.end + want).max(self.data.len() * 2).min(max);
            self.data.resize(len, 0);
        }
        self.data.len() - self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_room_slides_then_grows() {
        let mut buf = InBuf::with_capacity(8);
        buf.data[..8].copy_from_slice(b"abcdefgh");
        buf.start = 6;
        buf.end = 8;
        assert_eq!(buf.make_room(4, 100), 6);
        assert_eq!(buf.pending(), b"gh");
        assert_eq!(buf.make_room(10, 100), 14);
        assert_eq!(buf.pending(), b"gh");
        assert_eq!(buf.make_room(1000, 20), 18);
    }
}
