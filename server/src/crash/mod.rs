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
//! a generation's [`Tag`] lives until the generation's library is unmapped (the handler reads only
//! its own thread's slot, whose tag names code running on it, so a live generation), the record is a plain
//! `repr(C)` value on the handler's stack, and the only calls are `gettid`, `write` and `raise`,
//! which POSIX (and Linux, for `gettid`) lists as async-signal-safe.
//!
//! The table is `activity.rs`; the supervisor's side (`supervisor/`) decodes records with
//! [`Record::decode`].

mod activity;

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

pub use activity::{Busy, Running, enter, free_tag, running};
use activity::{TABLE, alt_stack, gettid};

/// A plugin generation as a crash record names it. Made once per generation; freed (with
/// [`free_tag`]) only when no thread can run its code any more.
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
    /// A tag handed to [`enter`] must live while any thread may run the generation's code, and
    /// be freed with [`free_tag`].
    pub fn new(plugin: &str, file: &str, sha256: &str, generation: u64) -> Tag {
        Tag {
            plugin: Text::from(plugin.as_bytes()),
            file: Text::from(file.as_bytes()),
            sha: Text::from(sha256.as_bytes()),
            generation,
        }
    }
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
        (libc::SIGUSR2, "SIGUSR2"),
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

/// The write end of the crash pipe; -1 until [`install`].
static CRASH_FD: AtomicI32 = AtomicI32::new(-1);

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
            // SAFETY: this thread's own slot: its tag names the generation this thread is running
            // code of (or just ran, before the guard's clear), which the thread still holds, so
            // the tag is not freed (that waits for the generation's end and its library's unmap).
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
        let tag = &Tag::new("chaos", "libchaos.so", "0123456789abcdef0123", 3);
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
    fn signals_have_names() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(libc::SIGABRT), "SIGABRT");
        assert_eq!(signal_name(99), "signal 99");
    }
}
