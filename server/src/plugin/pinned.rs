//! Libraries that outlive their generation, and what a generation's tag lives as long as.
//!
//! glibc keeps a library mapped after its `dlclose` while thread-local destructors it registered
//! are pending: a plugin that touched a `thread_local!` value with a destructor on a worker pins
//! its image until that thread exits. Worker threads live long, so without help every reload of
//! such a plugin would leave one more image mapped, for good.
//!
//! So when a generation is torn down ([`closed`]) and its library is still mapped, it is listed
//! here and [`epoch`] moves on; the watchdog sees that and has the pool recycle its workers
//! (`workers.rs`): each one, at its next pop (once it is done with the connection it serves), exits
//! and a fresh thread takes its place. An exiting thread runs its thread-local destructors, in the
//! old image, which is still mapped. The reaper then [`sweep`]s: once no destructor is pending,
//! the listed library is closed for good and its tag (plugin, generation, crash record) freed.
//!
//! What this does not reach: a worker that stays on one connection (a long stream) or in a stuck
//! call exits only when it is done, and plugin code run on the threads that are not recycled (the
//! main thread's loads at start-up, the loader's `on_init`, `save` and `restore`, the reaper's
//! `on_drop`) pins its image the same way if it touches a thread-local: such an image stays listed
//! (`/proc/PID/maps` shows it).

use std::ffi::CString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A library whose generation is gone, with what must live as long as its image.
struct Pinned {
    image: CString,
    /// Freed (with `crash::free_tag`) once the image is unmapped.
    free: Box<dyn FnOnce() + Send>,
}

static PINNED: Mutex<Vec<Pinned>> = Mutex::new(Vec::new());
/// Moves on each time a library is found pinned.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// A generation's library loaded from `image` (its shadow path) has just been closed: `free`
/// (which frees its tag) runs now if the image is gone, or once [`sweep`] finds it gone.
pub(super) fn closed(image: CString, free: Box<dyn FnOnce() + Send>) {
    if !mapped(&image) {
        free();
        return;
    }
    tracing::debug!(
        image = %image.to_string_lossy(),
        "a closed library stays mapped (thread-local destructors pending): recycling the workers"
    );
    lock().push(Pinned { image, free });
    EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// Moves on each time a closed library stayed mapped: the pool recycles its workers when it does.
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::SeqCst)
}

/// Libraries closed but still mapped now.
pub fn count() -> usize {
    lock().len()
}

/// Closes for good each listed library whose destructors have all run, and frees its tag.
/// Returns how many are still listed.
pub(super) fn sweep() -> usize {
    let gone: Vec<Pinned> = {
        let mut list = lock();
        if list.is_empty() {
            return 0;
        }
        let (gone, kept) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|p| !mapped(&p.image));
        *list = kept;
        gone
    };
    for p in gone {
        (p.free)();
    }
    lock().len()
}

/// Whether the library loaded from `image` is mapped. Asking takes a reference (`RTLD_NOLOAD`
/// opens only a library already loaded), and giving it back is a `dlclose`, which unmaps the
/// library now if nothing pins it any more; so the answer is the second ask's.
fn mapped(image: &CString) -> bool {
    ask(image) && ask(image)
}

fn ask(image: &CString) -> bool {
    // SAFETY: `image` is a NUL-terminated path; with RTLD_NOLOAD nothing is loaded (no
    // initialiser runs), and a handle we get is closed once, right away.
    unsafe {
        let handle = libc::dlopen(image.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
        if handle.is_null() {
            // Clears the thread's error state, which the next failing `dl*` call would report.
            libc::dlerror();
            return false;
        }
        libc::dlclose(handle);
        true
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Pinned>> {
    PINNED.lock().unwrap_or_else(|e| e.into_inner())
}
