//! The [`Reaper`]: where retired generations are torn down, off the registry's lock and off every
//! request's path.
//!
//! Dropping a plugin's last generation runs its `on_drop` and closes its library, which takes as
//! long as the plugin makes it. If that happened wherever the last reference went (under the
//! registry's lock, or in the worker whose request was the last on it, before it writes its
//! response), a slow teardown would stall reloads or a client. So the registry hands every
//! generation it retires to the reaper, which keeps it until nothing else holds it and then drops
//! it on a thread of its own. (`arc-swap` turns the guards of requests still running on a
//! generation into real references when it is swapped out, so the count is exact.)

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Generation, pinned};

/// How often retired generations are looked at.
const LOOK_MS: u64 = 50;

/// Tears retired generations down on its own thread; see the module doc.
pub(crate) struct Reaper {
    /// `None` once dropped: the thread tears down what is left and ends.
    retire: Option<Sender<Arc<Generation>>>,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts the reaper's thread.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn spawn() -> std::io::Result<Reaper> {
        let (tx, rx) = mpsc::channel::<Arc<Generation>>();
        let thread = std::thread::Builder::new()
            .name("plugin-reaper".into())
            .spawn(move || {
                let mut retired: Vec<Arc<Generation>> = Vec::new();
                loop {
                    match rx.recv_timeout(Duration::from_millis(LOOK_MS)) {
                        Ok(g) => retired.push(g),
                        Err(RecvTimeoutError::Timeout) => {}
                        // The registry is gone: what is left goes now (its requests ended
                        // with the server).
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    // The last reference is ours: drop it here, `on_drop` and `dlclose` with it.
                    retired.retain(|g| Arc::strong_count(g) > 1);
                    // Libraries kept mapped by thread-local destructors, once the workers that
                    // had them pending were recycled.
                    pinned::sweep();
                }
            })?;
        Ok(Reaper {
            retire: Some(tx),
            thread: Some(thread),
        })
    }

    /// Takes `generation`, which the registry no longer serves; it is torn down on the reaper's
    /// thread once its last request has ended.
    pub fn retire(&self, generation: Arc<Generation>) {
        if let Some(tx) = &self.retire
            && let Err(back) = tx.send(generation)
        {
            // The thread is gone (it panicked): tear down here rather than leak.
            drop(back.0);
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.retire = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
