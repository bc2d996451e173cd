//! The activity table: what each thread of a server process is running in plugin code, written
//! before every call into a plugin and read by the fatal-signal handler (`mod.rs`) and, for the
//! status page, by other threads.

use std::cell::Cell;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::{Tag, Text};

/// What a thread is doing in plugin code: a request (`GET /chaos/segv`) or a lifecycle step
/// (`init`, `drop`). Not `Send`: only the thread that entered may clear its slot.
pub struct Busy {
    slot: Option<&'static Slot>,
    _not_send: PhantomData<*const ()>,
}

impl Busy {
    /// Goes on in the same plugin's code, doing something else (`load`, then `init`).
    pub fn doing(&self, what: &[&[u8]]) {
        if let Some(slot) = self.slot {
            slot.write(|s| s.what.store(what));
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            // One store, outside the sequence lock: a reader that raced it returns the activity
            // that just ended, which was true a moment ago; the next `enter` bumps the sequence.
            slot.tag.store(std::ptr::null_mut(), Ordering::Release);
        }
    }
}

/// Marks the calling thread as running plugin code for `tag`, doing `what` (its parts are joined
/// with spaces: `["GET", "/x"]`), until the guard drops. Inside plugin code already (a generation
/// dropped while another's step runs), the outer activity stays: the guard does nothing.
pub fn enter(tag: &'static Tag, what: &[&[u8]]) -> Busy {
    let slot = MINE.with(|mine| match mine.get() {
        Some(slot) => Some(slot),
        None => {
            let slot = claim();
            mine.set(slot);
            slot
        }
    });
    let slot = slot.filter(|s| s.tag.load(Ordering::Relaxed).is_null());
    if let Some(slot) = slot {
        slot.write(|s| {
            s.what.store(what);
            // Stamped by the first `running` that sees it: no clock read on the request path.
            s.since_ms.store(0, Ordering::Relaxed);
            s.tag
                .store((tag as *const Tag).cast_mut(), Ordering::Relaxed);
        });
    }
    Busy {
        slot,
        _not_send: PhantomData,
    }
}

/// One thread of this process inside plugin code, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Running {
    /// The plugin.
    pub plugin: String,
    /// Its generation.
    pub generation: u64,
    /// What it is doing: `GET /x`, `init`, …
    pub what: String,
    /// For how long, in milliseconds, counted from the first time it was seen: processes report
    /// ten times a second, so this is short of the truth by up to a tenth of a second.
    pub for_ms: u64,
}

/// Held by [`running`] while it reads tags through other threads' slots, and by [`free_tag`]:
/// so a tag is freed only once no reader can still hold a pointer to it.
static READERS: Mutex<()> = Mutex::new(());

/// Frees `owner`, a box holding a tag that no slot points to any more (its generation is gone:
/// every call into it has ended, and with it the activity that named it), once no [`running`] is
/// mid-read. Without that wait, a reader that loaded the pointer just before the slot was cleared
/// could copy freed memory.
///
/// # Safety
/// `owner` came from `Box::leak` (or `into_raw`), the tag in it will not be given to [`enter`]
/// again, and nothing else uses it any more.
pub unsafe fn free_tag<T>(owner: *mut T) {
    let _readers = READERS.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the caller's promise; a reader that finds the pointer holds `READERS`, which we
    // hold, and any later one finds the slot cleared (the clear happened before our lock, which
    // happens before its lock).
    drop(unsafe { Box::from_raw(owner) });
}

/// The threads of this process inside plugin code now, longest first, at most `limit` of them.
pub fn running(limit: usize) -> Vec<Running> {
    let _readers = READERS.lock().unwrap_or_else(|e| e.into_inner());
    let now = coarse_ms();
    let mut out: Vec<Running> = TABLE
        .iter()
        .filter(|s| s.tid.load(Ordering::Relaxed) != 0)
        .filter_map(|s| {
            let (tag, what, since) = s.read()?;
            if since == 0 {
                // First seen now; the owner resets it to 0 for its next activity.
                let _ = s
                    .since_ms
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
            Some(Running {
                plugin: tag.plugin.to_string(),
                generation: tag.generation,
                what,
                for_ms: if since == 0 {
                    0
                } else {
                    now.saturating_sub(since)
                },
            })
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.for_ms));
    out.truncate(limit);
    out
}

/// Threads that can be inside plugin code at once: workers (at most 1024) and a few more.
const SLOTS: usize = 1024 + 64;
/// The alternate signal stack of each thread that runs plugin code.
const ALT_STACK_BYTES: usize = 64 * 1024;

pub(super) static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

thread_local! {
    /// This thread's slot, claimed at its first [`enter`].
    static MINE: Cell<Option<&'static Slot>> = const { Cell::new(None) };
    /// The mapping of this thread's alternate signal stack (its base), 0 when it has none.
    static ALT: Cell<usize> = const { Cell::new(0) };
    /// Gives the slot back when the thread ends, so that a reused thread id never finds it.
    static RELEASE: Release = const { Release };
}

/// Frees the thread's slot at thread exit.
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        // A thread that ends inside plugin code is one that called `exit` there: glibc runs the
        // calling thread's thread-local destructors before the `atexit` hooks, and `at_exit`
        // still needs the slot. It is not freed then (the process is ending anyway).
        if let Some(slot) = MINE.try_with(Cell::get).ok().flatten()
            && slot.tag.load(Ordering::Relaxed).is_null()
        {
            slot.tid.store(0, Ordering::Release);
            // A later destructor on this thread that enters must not write a slot it gave back.
            let _ = MINE.try_with(|mine| mine.set(None));
            // Threads come and go (the pool replaces stuck ones and recycles all after a reload
            // that left a library pinned): each one's stack goes with it.
            free_alt_stack();
        }
    }
}

/// One thread's activity. Written only by its thread; read by its signal handler, which
/// interrupts that thread between two of its instructions and so reads the slot as the thread left
/// it (plugin code never runs while the slot is being rewritten), and by [`running`] on other
/// threads, through the sequence lock `seq`.
#[repr(align(128))] // one slot per cache line pair: workers never share a line
pub(super) struct Slot {
    /// The owning thread's id; 0 while free.
    pub(super) tid: AtomicI32,
    /// Odd while the activity is being rewritten.
    seq: AtomicU64,
    /// The generation whose code runs; null when none does.
    pub(super) tag: AtomicPtr<Tag>,
    /// When the activity was first seen by [`running`] (coarse clock, ms); 0 until then.
    since_ms: AtomicU64,
    /// The lowest address of the thread's stack, to tell a stack overflow from another fault.
    pub(super) stack_low: AtomicUsize,
    pub(super) what: AtomicText<32>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            tid: AtomicI32::new(0),
            seq: AtomicU64::new(0),
            tag: AtomicPtr::new(std::ptr::null_mut()),
            since_ms: AtomicU64::new(0),
            stack_low: AtomicUsize::new(0),
            what: AtomicText::new(),
        }
    }

    /// Rewrites the activity under the sequence lock. Only the owning thread writes, so plain
    /// stores do (no read-modify-write: this runs on every request).
    fn write(&self, change: impl FnOnce(&Slot)) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Readers that see a field changed must also see `seq` odd.
        std::sync::atomic::fence(Ordering::Release);
        change(self);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// A consistent copy of the activity, from another thread; `None` when idle. Only under
    /// [`READERS`].
    fn read(&self) -> Option<(Tag, String, u64)> {
        for _ in 0..100 {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let tag = self.tag.load(Ordering::Relaxed);
            let mut what = Text::<260>::EMPTY;
            self.what.copy_to(&mut what);
            let since = self.since_ms.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            if tag.is_null() {
                return None;
            }
            // SAFETY: the slot held this tag during the copy above (the sequence did not move), so
            // its generation was live when we read the pointer, and a tag is freed only under
            // `READERS`, which our caller holds (`free_tag`).
            return Some((unsafe { *tag }, what.to_string(), since));
        }
        None
    }
}

/// Text in atomic words, so that another thread may read it while its owner rewrites it.
pub(super) struct AtomicText<const W: usize> {
    len: AtomicUsize,
    words: [AtomicU64; W],
}

impl<const W: usize> AtomicText<W> {
    const fn new() -> Self {
        AtomicText {
            len: AtomicUsize::new(0),
            words: [const { AtomicU64::new(0) }; W],
        }
    }

    /// Stores `parts` joined with spaces (as much as fits), a word at a time.
    fn store(&self, parts: &[&[u8]]) {
        let (mut at, mut word) = (0, 0u64);
        let spaced = parts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| (i > 0).then_some(&b' ').into_iter().chain(p.iter()));
        for &b in spaced.take(W * 8) {
            word |= u64::from(b) << ((at % 8) * 8);
            at += 1;
            if at % 8 == 0 {
                self.words[at / 8 - 1].store(word, Ordering::Relaxed);
                word = 0;
            }
        }
        if at % 8 != 0 {
            self.words[at / 8].store(word, Ordering::Relaxed);
        }
        self.len.store(at, Ordering::Relaxed);
    }

    /// Copies the text into `out` (as much as fits). Async-signal-safe: loads and stores only.
    pub(super) fn copy_to<const N: usize>(&self, out: &mut Text<N>) {
        let len = self.len.load(Ordering::Relaxed).min(W * 8).min(N);
        for i in 0..len {
            let word = self.words[i / 8].load(Ordering::Relaxed);
            out.bytes[i] = (word >> ((i % 8) * 8)) as u8;
        }
        out.len = len as u32;
    }
}

/// Milliseconds of the coarse monotonic clock: a few milliseconds of resolution, read from the
/// vDSO without a system call, cheap enough for every request.
fn coarse_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// Claims a free slot for the calling thread and gives the thread an alternate signal stack.
fn claim() -> Option<&'static Slot> {
    let tid = gettid();
    let slot = TABLE.iter().find(|s| {
        s.tid
            .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    slot.stack_low.store(stack_low(), Ordering::Relaxed);
    alt_stack();
    RELEASE.with(|_| {});
    Some(slot)
}

pub(super) fn gettid() -> i32 {
    // SAFETY: the gettid system call takes no arguments and cannot fail; async-signal-safe.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The lowest address of the calling thread's stack, or 0 when it cannot be known.
fn stack_low() -> usize {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read, and destroyed once.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return 0;
        }
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if got == 0 { addr as usize } else { 0 }
    }
}

/// Gives the calling thread an alternate signal stack of its own, so that the handler runs even
/// when the thread's stack is exhausted. Freed when the thread ends (its slot's release).
pub(super) fn alt_stack() {
    if ALT.try_with(Cell::get).unwrap_or(0) != 0 {
        // Installed already (the main thread: by `install`, then by its first `enter`).
        return;
    }
    // SAFETY: a fresh anonymous mapping is ours alone; its lowest page becomes a guard, and the
    // rest is handed to `sigaltstack`, which copies the descriptor.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_BYTES + PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return;
        }
        libc::mprotect(base, PAGE, libc::PROT_NONE);
        let stack = libc::stack_t {
            ss_sp: base.cast::<u8>().add(PAGE).cast(),
            ss_flags: 0,
            ss_size: ALT_STACK_BYTES,
        };
        if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
            libc::munmap(base, ALT_STACK_BYTES + PAGE);
            return;
        }
    }
    let _ = ALT.try_with(|alt| alt.set(base_of_current()));
}

/// The base of the mapping of the calling thread's alternate stack (its guard page), 0 if none.
fn base_of_current() -> usize {
    // SAFETY: a query only (no new stack); `current` is written by the call.
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut current) != 0 || current.ss_sp.is_null() {
            return 0;
        }
        (current.ss_sp as usize).saturating_sub(PAGE)
    }
}

/// Unmaps the calling thread's alternate stack, disabling it first if it is still the one in use
/// (Rust's runtime may have replaced or disabled it already at thread exit).
fn free_alt_stack() {
    let Ok(base) = ALT.try_with(|alt| alt.replace(0)) else {
        return;
    };
    if base == 0 {
        return;
    }
    // SAFETY: `base` is the mapping `alt_stack` made for this thread; it is no longer the active
    // alternate stack once disabled, and we are not running on it (a thread-local destructor
    // runs on the thread's own stack), so unmapping it cannot pull a stack from under anyone.
    unsafe {
        if base_of_current() == base {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&off, std::ptr::null_mut());
        }
        libc::munmap(base as *mut c_void, ALT_STACK_BYTES + PAGE);
    }
}

const PAGE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(plugin: &str, file: &str, sha: &str, generation: u64) -> &'static Tag {
        Box::leak(Box::new(Tag::new(plugin, file, sha, generation)))
    }

    #[test]
    fn running_shows_what_a_thread_does_until_its_guard_drops() {
        let tag = leaked("slowpoke", "libslowpoke.so", "ffff", 7);
        let (entered, release) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let (e, r) = (entered.clone(), release.clone());
        let worker = std::thread::spawn(move || {
            let busy = enter(tag, &[b"GET", b"/slowpoke/forever"]);
            e.wait();
            r.wait();
            drop(busy);
        });
        entered.wait();
        let now = running(usize::MAX);
        let mine: Vec<_> = now.iter().filter(|r| r.plugin == "slowpoke").collect();
        assert_eq!(mine.len(), 1, "{now:?}");
        assert_eq!(mine[0].what, "GET /slowpoke/forever");
        assert_eq!(mine[0].generation, 7);
        release.wait();
        worker.join().unwrap();
        assert!(!running(usize::MAX).iter().any(|r| r.plugin == "slowpoke"));
    }

    #[test]
    fn a_nested_step_keeps_the_outer_activity_and_doing_renames_it() {
        let outer = leaked("outer", "libouter.so", "1", 1);
        let inner = leaked("inner", "libinner.so", "2", 1);
        std::thread::spawn(move || {
            let busy = enter(outer, &[b"load"]);
            busy.doing(&[b"init"]);
            let nested = enter(inner, &[b"drop"]);
            let mine = |name: &str| running(usize::MAX).into_iter().find(|r| r.plugin == name);
            assert_eq!(mine("outer").map(|r| r.what).as_deref(), Some("init"));
            assert!(mine("inner").is_none());
            drop(nested);
            assert!(
                mine("outer").is_some(),
                "the nested guard leaves the outer one"
            );
            drop(busy);
            assert!(mine("outer").is_none());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn long_text_is_cut_not_overrun() {
        let long = vec![b'x'; 1000];
        let text = Text::<16>::from(&long);
        assert_eq!(text.as_slice().len(), 16);
        let atomic = AtomicText::<2>::new();
        atomic.store(&[&long]);
        let mut out = Text::<260>::EMPTY;
        atomic.copy_to(&mut out);
        assert_eq!(out.as_slice(), &long[..16]);
        atomic.store(&[b"GET", b"/a-target"]);
        atomic.copy_to(&mut out);
        assert_eq!(out.as_slice(), b"GET /a-target");
    }
}
