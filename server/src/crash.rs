//! Crash attribution: what each thread is running in plugin code, and the [`Record`] a fatal
//! signal leaves for the supervisor.
//!
//! A server process runs plugin code on its workers (requests) and on its loader (load, init,
//! state hand-over, drop). Before a thread calls into a plugin it writes what it is about to do
//! into its slot of a fixed table ([`enter`]); the returned guard clears the slot afterwards. When
//! the process dies of SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT, a handler running on an
//! alternate signal stack (so that a stack overflow is caught too) finds the crashing thread's slot,
//! writes one fixed-size [`Record`] to the pipe the supervisor reads, and re-raises the signal so
//! that the process still dies of it. An `exit` called while a plugin runs leaves a record the same
//! way, from an `atexit` hook.
//!
//! # Async-signal safety
//! Nothing on the signal path allocates, locks or formats. The table is a `static` array of atomics,
//! a generation's [`Tag`] is leaked (so a pointer to it never dangles), the record is a plain
//! `repr(C)` value on the handler's stack, and the only calls are `gettid`, `write` and `raise`,
//! which POSIX (and Linux, for `gettid`) lists as async-signal-safe.
//!
//! The supervisor's side (`supervisor/`) decodes records with [`Record::decode`].

use std::cell::Cell;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A plugin generation as a crash record names it. Made once per generation and leaked, so a
/// signal handler can read it at any moment.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Tag {
    generation: u64,
    plugin: Text<64>,
    file: Text<64>,
    /// The first 20 hex digits of the file's SHA-256.
    sha: Text<20>,
}

impl Tag {
    /// A tag for generation `generation` of `plugin`, loaded from `file` whose hash is `sha256`.
    pub fn leak(plugin: &str, file: &str, sha256: &str, generation: u64) -> &'static Tag {
        Box::leak(Box::new(Tag {
            plugin: Text::from(plugin.as_bytes()),
            file: Text::from(file.as_bytes()),
            sha: Text::from(sha256.as_bytes()),
            generation,
        }))
    }
}

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
    /// every second, so this is short of the truth by up to a second.
    pub for_ms: u64,
}

/// The threads of this process inside plugin code now, longest first, at most `limit` of them.
pub fn running(limit: usize) -> Vec<Running> {
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

/// Installs the handlers for the fatal signals and the `atexit` hook; records go to `fd` (the
/// write end of the supervisor's crash pipe). Call once, early, in a server process.
///
/// # Errors
/// A `sigaction` or `atexit` call failed.
pub fn install(fd: RawFd) -> std::io::Result<()> {
    CRASH_FD.store(fd, Ordering::Relaxed);
    alt_stack();
    for signal in FATAL {
        // SAFETY: a zeroed `sigaction` is a valid empty one; `on_fatal` has the signature
        // SA_SIGINFO wants and is async-signal-safe (see the module's docs).
        let failed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut()) != 0
        };
        if failed {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: `at_exit` is a plain `extern "C" fn()` that never unwinds.
    if unsafe { libc::atexit(at_exit) } != 0 {
        return Err(std::io::Error::other("atexit failed"));
    }
    Ok(())
}

/// What ended a server process, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A fatal signal.
    Signal(i32),
    /// `exit` was called while plugin code ran on the calling thread.
    Exit,
}

/// One crash, as the dying process wrote it to the supervisor's pipe.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    magic: u32,
    /// 1: a signal, 2: exit.
    kind: u32,
    signal: i32,
    /// 1 when the fault was in the guard area below the thread's stack.
    overflow: u32,
    /// `tag.plugin` is empty when no plugin code ran on the thread.
    tag: Tag,
    what: Text<260>,
}

// The record's bytes go on the pipe whole, so it must have no padding (whose bytes would be
// uninitialised): the fields' sizes add up to the whole.
const _: () = assert!(std::mem::size_of::<Tag>() == 8 + 68 + 68 + 24);
const _: () = assert!(std::mem::size_of::<Record>() == 16 + std::mem::size_of::<Tag>() + 264);

impl Record {
    /// The size of every record on the pipe (well under `PIPE_BUF`, so a write is atomic).
    pub const SIZE: usize = std::mem::size_of::<Record>();
    const MAGIC: u32 = 0x4d41_4843; // "MAHC"

    /// Reads a record back; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() != Self::SIZE {
            return None;
        }
        // SAFETY: the length is right, and every field is an integer or a byte array, so any bit
        // pattern is a valid `Record`; `read_unaligned` needs no alignment.
        let record: Record = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        (record.magic == Self::MAGIC && matches!(record.kind, 1 | 2)).then_some(record)
    }

    /// The record's bytes, as the handler writes them.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Record` is `repr(C)` plain data without padding (asserted above), so all of its
        // bytes are initialised; the slice lives as long as `self`.
        unsafe { std::slice::from_raw_parts((self as *const Record).cast(), Self::SIZE) }
    }

    /// What ended the process.
    pub fn cause(&self) -> Cause {
        match self.kind {
            2 => Cause::Exit,
            _ => Cause::Signal(self.signal),
        }
    }

    /// The plugin whose code ran on the crashing thread, if any.
    pub fn plugin(&self) -> Option<String> {
        let name = self.tag.plugin.to_string();
        (!name.is_empty()).then_some(name)
    }

    /// The plugin's generation.
    pub fn generation(&self) -> u64 {
        self.tag.generation
    }

    /// The plugin's file name.
    pub fn file(&self) -> String {
        self.tag.file.to_string()
    }

    /// The first 20 hex digits of the plugin file's SHA-256.
    pub fn sha(&self) -> String {
        self.tag.sha.to_string()
    }

    /// What the plugin was doing: `GET /x`, `init`, …
    pub fn what(&self) -> String {
        self.what.to_string()
    }

    /// The fault was a stack overflow.
    pub fn stack_overflow(&self) -> bool {
        self.overflow == 1
    }

    fn new(cause: Cause) -> Record {
        let (kind, signal) = match cause {
            Cause::Signal(s) => (1, s),
            Cause::Exit => (2, 0),
        };
        Record {
            magic: Self::MAGIC,
            kind,
            signal,
            overflow: 0,
            tag: Tag {
                generation: 0,
                plugin: Text::EMPTY,
                file: Text::EMPTY,
                sha: Text::EMPTY,
            },
            what: Text::EMPTY,
        }
    }
}

/// The name of a signal: `SIGSEGV`.
pub fn signal_name(signal: i32) -> String {
    let known = [
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    known.iter().find(|(n, _)| *n == signal).map_or_else(
        || format!("signal {signal}"),
        |(_, name)| (*name).to_owned(),
    )
}

/// The signals whose handler writes a record.
const FATAL: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Threads that can be inside plugin code at once: workers (at most 1024) and a few more.
const SLOTS: usize = 1024 + 64;
/// The alternate signal stack of each thread that runs plugin code.
const ALT_STACK_BYTES: usize = 64 * 1024;

/// The write end of the crash pipe; -1 until [`install`].
static CRASH_FD: AtomicI32 = AtomicI32::new(-1);
static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

thread_local! {
    /// This thread's slot, claimed at its first [`enter`].
    static MINE: Cell<Option<&'static Slot>> = const { Cell::new(None) };
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
        }
    }
}

/// One thread's activity. Written only by its thread; read by its signal handler, which
/// interrupts that thread between two of its instructions and so reads the slot as the thread left
/// it (plugin code never runs while the slot is being rewritten), and by [`running`] on other
/// threads, through the sequence lock `seq`.
struct Slot {
    /// The owning thread's id; 0 while free.
    tid: AtomicI32,
    /// Odd while the activity is being rewritten.
    seq: AtomicU32,
    /// The generation whose code runs; null when none does.
    tag: AtomicPtr<Tag>,
    /// When the activity was first seen by [`running`] (coarse clock, ms); 0 until then.
    since_ms: AtomicU64,
    /// The lowest address of the thread's stack, to tell a stack overflow from another fault.
    stack_low: AtomicUsize,
    what: AtomicText<32>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            tid: AtomicI32::new(0),
            seq: AtomicU32::new(0),
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

    /// A consistent copy of the activity, from another thread; `None` when idle.
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
            // SAFETY: non-null tags point to leaked, never-freed `Tag`s.
            return Some((unsafe { *tag }, what.to_string(), since));
        }
        None
    }
}

/// Bytes of text with a length, copied by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct Text<const N: usize> {
    len: u32,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    const EMPTY: Text<N> = Text {
        len: 0,
        bytes: [0; N],
    };

    fn from(source: &[u8]) -> Text<N> {
        let mut text = Self::EMPTY;
        let n = source.len().min(N);
        text.bytes[..n].copy_from_slice(&source[..n]);
        text.len = n as u32;
        text
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(N)]
    }
}

impl<const N: usize> std::fmt::Display for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_slice()))
    }
}

/// Text in atomic words, so that another thread may read it while its owner rewrites it.
struct AtomicText<const W: usize> {
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
    fn copy_to<const N: usize>(&self, out: &mut Text<N>) {
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

fn gettid() -> i32 {
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
/// when the thread's stack is exhausted. The stack is never freed: threads that run plugin code
/// live as long as their process.
fn alt_stack() {
    let page = 4096;
    // SAFETY: a fresh anonymous mapping is ours alone; its lowest page becomes a guard, and the
    // rest is handed to `sigaltstack`, which copies the descriptor.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_BYTES + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return;
        }
        libc::mprotect(base, page, libc::PROT_NONE);
        let stack = libc::stack_t {
            ss_sp: base.cast::<u8>().add(page).cast(),
            ss_flags: 0,
            ss_size: ALT_STACK_BYTES,
        };
        libc::sigaltstack(&stack, std::ptr::null_mut());
    }
}

/// Writes the calling thread's record to the crash pipe; `fault_addr` is the address of a memory
/// fault (SIGSEGV, SIGBUS), if that is what this is. Async-signal-safe (see the module docs).
fn write_record(cause: Cause, fault_addr: Option<usize>) {
    let fd = CRASH_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let tid = gettid();
    let mut record = Record::new(cause);
    if let Some(slot) = TABLE.iter().find(|s| s.tid.load(Ordering::Relaxed) == tid) {
        let tag = slot.tag.load(Ordering::Relaxed);
        if !tag.is_null() {
            // SAFETY: non-null tags point to leaked, never-freed `Tag`s.
            record.tag = unsafe { *tag };
            slot.what.copy_to(&mut record.what);
        }
        let low = slot.stack_low.load(Ordering::Relaxed);
        // The guard page sits just below the stack; a fault a little above it is still a frame
        // that did not fit.
        if let Some(addr) = fault_addr
            && low != 0
            && addr >= low.saturating_sub(1 << 20)
            && addr < low + (64 << 10)
        {
            record.overflow = 1;
        }
    }
    let bytes = record.as_bytes();
    // SAFETY: `write` is async-signal-safe; `bytes` is valid for its length.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

extern "C" fn on_fatal(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    // `si_addr` is a faulting address only for a memory fault raised by the kernel (si_code > 0);
    // for a signal sent by `raise` or `kill` those bytes are the sender's pid and uid.
    let fault = (signal == libc::SIGSEGV || signal == libc::SIGBUS) && !info.is_null();
    // SAFETY: the kernel hands a valid `siginfo_t` to an SA_SIGINFO handler.
    let addr = fault
        .then(|| unsafe { ((*info).si_code > 0).then(|| (*info).si_addr() as usize) })
        .flatten();
    write_record(Cause::Signal(signal), addr);
    // SA_RESETHAND put the default action back on entry; on Linux the signal stays blocked until
    // we return (SA_RESETHAND does not imply SA_NODEFER there), so `raise` leaves it pending and
    // the process dies of it as it would have without us (a hardware fault would also recur when
    // the instruction runs again).
    // SAFETY: `raise` is async-signal-safe.
    unsafe { libc::raise(signal) };
}

extern "C" fn at_exit() {
    let tid = gettid();
    let busy = TABLE
        .iter()
        .any(|s| s.tid.load(Ordering::Relaxed) == tid && !s.tag.load(Ordering::Relaxed).is_null());
    if busy {
        write_record(Cause::Exit, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_garbage_does_not_decode() {
        let tag = Tag::leak("chaos", "libchaos.so", "0123456789abcdef0123", 3);
        let mut record = Record::new(Cause::Signal(libc::SIGSEGV));
        record.tag = *tag;
        record.what = Text::from(b"GET /chaos/segv");
        let back = Record::decode(record.as_bytes()).unwrap();
        assert_eq!(back.cause(), Cause::Signal(libc::SIGSEGV));
        assert_eq!(back.plugin().as_deref(), Some("chaos"));
        assert_eq!(back.generation(), 3);
        assert_eq!(back.file(), "libchaos.so");
        assert_eq!(back.sha(), "0123456789abcdef0123");
        assert_eq!(back.what(), "GET /chaos/segv");
        assert!(!back.stack_overflow());
        assert!(Record::decode(&record.as_bytes()[1..]).is_none());
        assert!(Record::decode(&vec![0u8; Record::SIZE]).is_none());
        const { assert!(Record::SIZE <= 512) };
    }

    #[test]
    fn running_shows_what_a_thread_does_until_its_guard_drops() {
        let tag = Tag::leak("slowpoke", "libslowpoke.so", "ffff", 7);
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
        let outer = Tag::leak("outer", "libouter.so", "1", 1);
        let inner = Tag::leak("inner", "libinner.so", "2", 1);
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

    #[test]
    fn signals_have_names() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(libc::SIGABRT), "SIGABRT");
        assert_eq!(signal_name(99), "signal 99");
    }
}
