//! [`Tokens`]: the event loop's connection tokens, and when a freed one may be used again.
//!
//! A token is a connection's key in the loop's table and its mio token. mio reports events by
//! token, and one `poll` returns a batch of them: a connection forgotten in the middle of a batch
//! (its `Closed` message read, or its close timed out) may still have events later in the same
//! batch. If its token went to a connection accepted later in that batch, those events (a
//! hang-up, say) would mark the new connection. So a token freed during a batch is held back
//! until the batch ends ([`Tokens::end_batch`]), and only then handed out again.

/// Allocates tokens; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// Tokens free to hand out now, the newest last.
    free: Vec<usize>,
    /// Tokens freed during the current batch of events.
    held: Vec<usize>,
    /// Tokens ever handed out: the next new one.
    next: usize,
}

impl Tokens {
    /// A token for a new connection: a free one if there is one, else the next new one (the
    /// table grows by one).
    pub fn take(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Gives `token` back; it is not handed out again before [`end_batch`](Self::end_batch).
    pub fn give_back(&mut self, token: usize) {
        self.held.push(token);
    }

    /// The batch of events is done: tokens freed during it may be used again.
    pub fn end_batch(&mut self) {
        self.free.append(&mut self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_freed_in_a_batch_is_not_reused_in_it() {
        let mut t = Tokens::default();
        let (a, b) = (t.take(), t.take());
        assert_eq!((a, b), (0, 1));
        t.give_back(a);
        // Later in the same batch: a new connection must not get `a`, whose events may follow.
        assert_eq!(t.take(), 2);
        t.end_batch();
        assert_eq!(t.take(), a);
        assert_eq!(t.take(), 3);
    }
}
