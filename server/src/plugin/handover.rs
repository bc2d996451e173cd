//! Putting a new generation in the place of the one serving a mount, and handing the state over
//! exactly.
//!
//! A plugin that keeps no state (its `on_save` says so) is swapped at once: its requests in flight
//! finish on the old code while new ones reach the new code. A plugin with state cannot be: what
//! a request still running on the old generation changes after `save` (a key stored, a number
//! handed out) would be lost to the new one, or handed out again by it. So the swap is exact:
//!
//! 1. the mount's bulkhead is paused: new requests wait in its queue (`bulkhead/pause.rs`);
//! 2. once the calls in flight have ended (at most [`PAUSE`]), the old generation saves its state
//!    and the new one restores it;
//! 3. the new generation is stored, and the pause ends: the waiting requests run on it.
//!
//! Calls that do not end within [`PAUSE`] (a slow request, a stream) end the try: the pause is
//! lifted, the mount serves for [`BETWEEN`], and the swap is tried again, up to [`TRIES`] times;
//! then the reload is refused and the old generation keeps serving. A save or restore that fails
//! refuses the reload the same way: the old generation serves on, with its state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::Bulkhead;
use crate::plugin::Generation;
use crate::plugin::loader::Saved;

/// How long new requests are held back, at most, while the calls in flight end, per try.
pub const PAUSE: Duration = Duration::from_millis(5);
/// How long the mount serves between two tries.
pub const BETWEEN: Duration = Duration::from_millis(20);
/// Tries before the reload is refused.
pub const TRIES: u32 = 50;

/// How a swap went.
pub(super) enum Swapped {
    /// Nothing served the mount before.
    First,
    /// The old generation keeps no state: swapped at once.
    Stateless,
    /// The state went over exactly.
    Exact {
        /// Its size.
        bytes: usize,
        /// How long new requests were held back in the try that swapped (draining, saving,
        /// restoring).
        held: Duration,
        /// Which try that was.
        tries: u32,
    },
}

/// Why a swap was refused.
#[derive(Debug)]
pub(super) enum Refused {
    Save(String),
    Restore(String),
    /// The calls in flight never all ended within a pause.
    Busy,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Save(e) => write!(f, "saving the state of the generation serving failed: {e}"),
            Refused::Restore(e) => write!(f, "the new generation refused the state: {e}"),
            Refused::Busy => write!(
                f,
                "its requests in flight did not all end within {} ms in {TRIES} tries, so the \
                 state could not be handed over exactly",
                PAUSE.as_millis()
            ),
        }
    }
}

/// Puts `new` in the place of `old` (what `current` holds, if anything), whose requests run in
/// `bulkhead`. On refusal `new` is dropped and `old` keeps serving.
pub(super) fn swap(
    current: &ArcSwapOption<Generation>,
    bulkhead: &Arc<Bulkhead>,
    old: Option<&Arc<Generation>>,
    new: Generation,
) -> Result<Swapped, Refused> {
    let Some(old) = old else {
        current.store(Some(Arc::new(new)));
        return Ok(Swapped::First);
    };
    // Asked once while it serves, to learn whether it keeps state at all.
    match old.save() {
        Err(e) => return Err(Refused::Save(e)),
        Ok(Saved::Nothing) => {
            current.store(Some(Arc::new(new)));
            return Ok(Swapped::Stateless);
        }
        Ok(Saved::State(_)) => {}
    }
    for tries in 1..=TRIES {
        let paused = bulkhead.pause();
        let started = Instant::now();
        if !paused.drained(PAUSE) {
            drop(paused);
            std::thread::sleep(BETWEEN);
            continue;
        }
        let state = match old.save() {
            Ok(Saved::State(state)) => state,
            Ok(Saved::Nothing) => Vec::new(),
            Err(e) => return Err(Refused::Save(e)),
        };
        if !state.is_empty() {
            new.restore(&state).map_err(Refused::Restore)?;
        }
        current.store(Some(Arc::new(new)));
        let held = started.elapsed();
        drop(paused);
        return Ok(Swapped::Exact {
            bytes: state.len(),
            held,
            tries,
        });
    }
    Err(Refused::Busy)
}
