//! Loading one plugin file into a [`Generation`]: shadow copy, `dlopen`, checks, init.
//!
//! The file in the plugins folder is never mapped. It is read once, hashed, and written to a
//! private shadow copy (`shadow.rs`) at a path no other load ever used; that copy is what `dlopen`
//! sees, and it is removed as soon as it is mapped. This sidesteps the two classic traps of Rust plugin hosts:
//! glibc's `dlopen` returning the library it already loaded for a path it has seen (so a rebuilt
//! plugin would silently not load), and `SIGBUS` when a mapped `.so` is overwritten in place.
//!
//! Only after the declaration is checked (magic, ABI version, name) and `on_init` succeeded does a
//! generation exist; `registry.rs` decides whether it replaces the one serving.

use std::ffi::c_void;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libloading::Library;
use plugin_api::Request;
use plugin_api::abi::{BytesSink, DECLARATION_SYMBOL, Declaration, HostApi, RawBytes, Status};
use sha2::{Digest, Sha256};

use crate::bulkhead::Call;
use crate::plugin::LoadError;
use crate::plugin::declaration::{self, Hooks};
use crate::plugin::pinned;
use crate::plugin::shadow::Shadow;
use crate::worker::internal_error;
use crate::{crash, reply};

/// One loaded copy of a plugin: its library, its instance, and what it was loaded from.
///
/// Requests hold an `Arc<Generation>` while they run, so a generation is dropped (its instance
/// destroyed and its library closed) only after its last request finished.
pub struct Generation {
    /// The plugin's declared name.
    pub name: String,
    /// The plugin's declared version.
    pub version: String,
    /// 1 for the first load of this name, then one more per successful reload.
    pub number: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The file in the plugins folder it was loaded from.
    pub file: PathBuf,
    /// How long the load took (copy, `dlopen`, checks, init).
    pub load_time: Duration,
    /// The instance made by `on_init`, owned by the plugin.
    instance: *mut c_void,
    /// The plugin's functions, in `library`'s image; valid until the library is closed.
    hooks: Hooks,
    /// The callbacks handed to `on_init`; the plugin may use them until `on_drop` returns.
    _host: Box<HostApi>,
    /// Closed last, after `on_drop`.
    library: Option<Library>,
    /// What the plugin's log lines and crash records are tagged with; `_host` points to it.
    /// Dropped after `library`: freed once the image is unmapped (`pinned.rs`).
    tag: Tag,
}

// SAFETY: the instance is the plugin's `P: Plugin`, which the export macro bounds `Send + Sync`; the
// declaration is an immutable `static` in the image, which stays loaded while `self` exists; the host
// callbacks are thread-safe. So sharing a generation between worker threads is sound.
unsafe impl Send for Generation {}
// SAFETY: as above.
unsafe impl Sync for Generation {}

/// What a generation's log lines and crash records are tagged with. It lives as long as the
/// library's image, not the generation: a plugin's thread-local destructor may still log (or
/// crash) after `on_drop` while glibc keeps the image mapped.
struct GenerationTag {
    plugin: String,
    generation: u64,
    crash: crash::Tag,
}

/// A generation's tag, and the shadow path its library was loaded from. On drop (after the library
/// was closed) the tag is freed, now or once the image is unmapped (`pinned.rs`).
struct Tag {
    tag: &'static GenerationTag,
    image: std::ffi::CString,
}

impl std::ops::Deref for Tag {
    type Target = GenerationTag;
    fn deref(&self) -> &GenerationTag {
        self.tag
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let owner = std::ptr::from_ref(self.tag).cast_mut() as usize;
        let free = Box::new(move || {
            // SAFETY: `owner` is the box `Generation::load` leaked for this tag; the generation
            // is gone and its library closed, and this runs once the image is unmapped, so no
            // code of it runs (logs, crashes) and no activity slot names the tag any more.
            unsafe { crash::free_tag(owner as *mut GenerationTag) }
        });
        let image = std::mem::take(&mut self.image);
        pinned::closed(image, free);
    }
}

/// The bytes of a plugin file, read once: what gets hashed and what gets loaded.
pub struct PluginFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its content.
    pub bytes: Vec<u8>,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

impl PluginFile {
    /// Reads and hashes a file.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read(path: &Path) -> Result<PluginFile, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read(e.to_string()))?;
        let digest = Sha256::digest(&bytes);
        let mut sha256 = String::with_capacity(64);
        for b in digest.iter() {
            let _ = write!(sha256, "{b:02x}");
        }
        Ok(PluginFile {
            path: path.to_owned(),
            bytes,
            sha256,
        })
    }
}

impl Generation {
    /// Loads `file` as generation `number` of plugin `name`, initialised with `settings` (TOML) and
    /// handed `state` from the previous generation, if any. Its shadow copy is made under
    /// `shadow_parent` (the system's temporary directory).
    ///
    /// # Errors
    /// Every reason a file is refused: not an ELF shared library, `dlopen` failure, no declaration,
    /// wrong magic or ABI version, another name, init failure.
    pub fn load(
        file: &PluginFile,
        name: &str,
        number: u64,
        settings: &str,
        shadow_parent: &Path,
    ) -> Result<Generation, LoadError> {
        let started = Instant::now();
        check_elf(&file.bytes)?;
        let shadow = Shadow::write(shadow_parent, name, &file.bytes).map_err(LoadError::Shadow)?;
        let file_name = file.path.file_name().unwrap_or_default().to_string_lossy();
        let image = std::ffi::CString::new(shadow.path().as_os_str().as_encoded_bytes())
            .map_err(|_| LoadError::Shadow("its path holds a NUL byte".into()))?;
        // Declared before `busy` and `library`, so that it is dropped after both: a refused
        // library is closed first, and then its tag freed (or kept while the image stays).
        let tag = Tag {
            tag: Box::leak(Box::new(GenerationTag {
                plugin: name.to_owned(),
                generation: number,
                crash: crash::Tag::new(name, &file_name, &file.sha256, number),
            })),
            image,
        };
        // Declared before `library`, so that it outlives it: a refused library is closed (and runs
        // its destructors) while this still says whose code runs.
        let busy = crash::enter(&tag.tag.crash, &[b"load"]);
        // SAFETY: loading a library runs its initialisers; we trust the plugin (the operator put it
        // in the plugins folder). The shadow path is fresh, so glibc maps this very file.
        let opened = unsafe { Library::new(shadow.path()) };
        // Mapped (or failed): the copy is no longer needed, and nothing is left behind on a crash.
        drop(shadow);
        let library = opened.map_err(|e| LoadError::Dlopen(e.to_string()))?;

        // SAFETY: the symbol is a `static Declaration` in plugins built with `export_plugin!`; for
        // anything else `declaration::read` reads the first 12 bytes (magic and version), which
        // every ABI version keeps at the same offsets, before trusting the rest, and then only the
        // fields the declared size covers.
        let declared = unsafe {
            match library.get::<*const Declaration>(DECLARATION_SYMBOL.as_bytes()) {
                Ok(symbol) => declaration::read(*symbol)?,
                Err(_) => return Err(LoadError::NoDeclaration),
            }
        };
        let (declared, version, hooks) = (declared.name, declared.version, declared.hooks);
        if declared != name {
            return Err(LoadError::NameMismatch { declared });
        }

        let host = Box::new(HostApi {
            ctx: std::ptr::from_ref::<GenerationTag>(tag.tag).cast(),
            callback_log,
        });
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut error = Vec::new();
        let sink = bytes_sink(&mut error);
        busy.doing(&[b"init"]);
        // SAFETY: we trust the plugin; `host` lives in the generation until after `on_drop`,
        // `tag` forever, and `settings` and `sink` outlive the call.
        let status = unsafe {
            (hooks.on_init)(
                &*host,
                RawBytes::new(settings.as_bytes()),
                &mut instance,
                &sink,
            )
        };
        if status != Status::OK || instance.is_null() {
            return Err(LoadError::Init(message(error, status)));
        }
        let mut generation = Generation {
            name: declared,
            version,
            number,
            sha256: file.sha256.clone(),
            file: file.path.clone(),
            load_time: Duration::ZERO,
            instance,
            hooks,
            _host: host,
            tag,
            library: Some(library),
        };
        generation.load_time = started.elapsed();
        Ok(generation)
    }

    /// Hands this generation the state its predecessor saved (not called with empty state).
    ///
    /// # Errors
    /// The plugin refused it (its message), or panicked.
    pub fn restore(&self, state: &[u8]) -> Result<(), String> {
        let Some(restore) = self.hooks.on_restore else {
            return Ok(());
        };
        let mut error = Vec::new();
        let sink = bytes_sink(&mut error);
        let _busy = crash::enter(&self.tag.tag.crash, &[b"restore"]);
        // SAFETY: we trust the plugin; the instance is live, `state` and `sink` outlive the call.
        let status = unsafe { restore(self.instance, RawBytes::new(state), &sink) };
        match status {
            Status::OK => Ok(()),
            status => Err(message(error, status)),
        }
    }

    /// Answers a request with the plugin's handler, through `call` while the plugin still owns
    /// the response (no copy). A panic, or a response the host cannot send, becomes a `500` and a
    /// log line; a streamed body its plugin cuts short ends the connection.
    ///
    /// Returns `false` when the plugin failed.
    pub fn handle(&self, request: &Request<'_>, call: &mut Call<'_>) -> bool {
        let sink = reply::sink(call);
        let busy = crash::enter(
            &self.tag.tag.crash,
            &[request.method().as_bytes(), request.target().as_bytes()],
        );
        // SAFETY: we trust the plugin; the instance is live while `self` is, and `request` and
        // `sink` (with the call it points to, unused meanwhile) outlive the call. `hooks` point
        // into the library `self` keeps loaded.
        let status = unsafe { (self.hooks.on_handle)(self.instance, request, &sink) };
        drop(busy);
        let why = match (status, call.take_invalid(), call.answered()) {
            (_, Some(e), _) => format!("invalid response from the plugin: {e}"),
            (Status::OK, None, Some(_)) => return true,
            (_, None, Some(_)) => {
                // The head went out: only ending the connection tells the client.
                call.abort();
                return false;
            }
            // Past its deadline, the client was answered without it.
            (_, None, None) if call.timed_out() => return false,
            (Status::OK, None, None) => "the plugin returned no response".to_owned(),
            // The plugin's glue already logged the panic message through the host.
            (Status::PANICKED, None, None) => String::new(),
            (status, None, None) => {
                format!("the plugin failed (status {}) without answering", status.0)
            }
        };
        if !why.is_empty() {
            tracing::error!(plugin = %self.name, generation = self.number, target = request.target(), "{why}");
        }
        call.respond(internal_error().view());
        false
    }

    /// The instance's state for its successor.
    ///
    /// # Errors
    /// The plugin failed (it logged why) or panicked.
    pub fn save(&self) -> Result<Saved, String> {
        let Some(save) = self.hooks.on_save else {
            return Ok(Saved::Nothing);
        };
        let mut state = Vec::new();
        let sink = bytes_sink(&mut state);
        let _busy = crash::enter(&self.tag.tag.crash, &[b"save"]);
        // SAFETY: we trust the plugin; the instance is live and `sink` outlives the call.
        let status = unsafe { save(self.instance, &sink) };
        match status {
            Status::OK => Ok(Saved::State(state)),
            Status::NOTHING => Ok(Saved::Nothing),
            Status::PANICKED => Err("the plugin panicked".into()),
            // `on_save` has no error sink; the export macro's glue logs the plugin's reason.
            status => Err(format!(
                "the plugin failed (status {}; its log says why)",
                status.0
            )),
        }
    }
}

/// What [`Generation::save`] got.
pub enum Saved {
    /// The plugin keeps no state: it can be swapped at once.
    Nothing,
    /// Its state (possibly empty): the hand-over must be exact.
    State(Vec<u8>),
}

impl Drop for Generation {
    fn drop(&mut self) {
        let busy = crash::enter(&self.tag.tag.crash, &[b"drop"]);
        // SAFETY: no request holds this generation any more (we are in its drop), so `on_drop` runs
        // after the last `on_handle`, once, on the instance `on_init` made.
        unsafe { (self.hooks.on_drop)(self.instance) };
        // Close the library last. `dlclose` is best effort: glibc keeps the image mapped while
        // thread-local destructors it registered are pending; nothing calls into it either way.
        drop(self.library.take());
        drop(busy);
        tracing::debug!(plugin = %self.tag.plugin, generation = self.number, "generation dropped");
    }
}

/// Refuses what is not a complete ELF shared library, before `dlopen` sees it.
///
/// A file still being written can look like a library (its header is written first) while its
/// segments are not all there; mapping it would succeed and the first touch of a missing page would
/// kill the host with `SIGBUS`. So every loadable segment and the section table must lie inside the
/// bytes we have.
fn check_elf(bytes: &[u8]) -> Result<(), LoadError> {
    const ET_DYN: u16 = 3;
    const PT_LOAD: u32 = 1;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    if !bytes.starts_with(b"\x7fELF") {
        return Err(LoadError::NotALibrary);
    }
    // 64-bit, little-endian, a shared object: what this host can load at all.
    if bytes.get(4..6) != Some(&[2, 1]) || u16_at(16) != Some(ET_DYN) {
        return Err(LoadError::NotALibrary);
    }
    let truncated = || LoadError::Truncated(bytes.len());
    let len = bytes.len() as u64;
    let (Some(phoff), Some(shoff), Some(phentsize), Some(phnum), Some(shentsize), Some(shnum)) = (
        u64_at(0x20),
        u64_at(0x28),
        u16_at(0x36),
        u16_at(0x38),
        u16_at(0x3a),
        u16_at(0x3c),
    ) else {
        return Err(truncated());
    };
    let table_end = |off: u64, size: u16, n: u16| off.checked_add(u64::from(size) * u64::from(n));
    if table_end(phoff, phentsize, phnum).is_none_or(|end| end > len)
        || table_end(shoff, shentsize, shnum).is_none_or(|end| end > len)
    {
        return Err(truncated());
    }
    for i in 0..u64::from(phnum) {
        let ph = (phoff + i * u64::from(phentsize)) as usize;
        let (Some(kind), Some(offset), Some(size)) =
            (u32_at(ph), u64_at(ph + 8), u64_at(ph + 0x20))
        else {
            return Err(truncated());
        };
        if kind == PT_LOAD && offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(truncated());
        }
    }
    Ok(())
}

/// A sink that appends to `out`.
fn bytes_sink(out: &mut Vec<u8>) -> BytesSink {
    BytesSink {
        ctx: (out as *mut Vec<u8>).cast(),
        callback_write,
    }
}

fn message(error: Vec<u8>, status: Status) -> String {
    let text = String::from_utf8_lossy(&error).into_owned();
    match (status, text.is_empty()) {
        (_, false) => text,
        (Status::PANICKED, true) => "the plugin panicked".into(),
        _ => format!("failed with status {}", status.0),
    }
}

unsafe extern "C" fn callback_write(ctx: *mut c_void, bytes: RawBytes) {
    // SAFETY: `ctx` is the `Vec<u8>` of `bytes_sink`, alive during the call that was given the
    // sink; the plugin lends `bytes` for this call.
    let (out, bytes) = unsafe { (&mut *ctx.cast::<Vec<u8>>(), bytes.as_slice()) };
    out.extend_from_slice(bytes);
}

unsafe extern "C" fn callback_log(ctx: *const c_void, level: u8, message: RawBytes) {
    // Never unwind into the plugin.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `ctx` is the generation's `GenerationTag`, which is freed only once the image
        // of the plugin calling us is unmapped (`pinned.rs`); the plugin lends `message` for
        // this call.
        let (tag, message) = unsafe { (&*ctx.cast::<GenerationTag>(), message.as_slice()) };
        let message = String::from_utf8_lossy(message);
        let (plugin, generation) = (tag.plugin.as_str(), tag.generation);
        match level {
            1 => tracing::error!(plugin, generation, "{message}"),
            2 => tracing::warn!(plugin, generation, "{message}"),
            3 => tracing::info!(plugin, generation, "{message}"),
            4 => tracing::debug!(plugin, generation, "{message}"),
            _ => tracing::trace!(plugin, generation, "{message}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is a position-independent executable: an ELF `ET_DYN` like a library.
    fn own_image() -> Vec<u8> {
        std::fs::read("/proc/self/exe").expect("read /proc/self/exe")
    }

    #[test]
    fn a_complete_image_passes_and_every_truncation_fails() {
        let image = own_image();
        if image.get(16) != Some(&3) {
            return; // not built as PIE here: nothing to check against
        }
        assert_eq!(check_elf(&image), Ok(()));
        for cut in [
            0,
            4,
            63,
            64,
            200,
            image.len() / 3,
            image.len() / 2,
            image.len() - 1,
        ] {
            let err = check_elf(&image[..cut]).unwrap_err();
            assert!(
                matches!(err, LoadError::Truncated(_) | LoadError::NotALibrary),
                "cut at {cut}: {err}"
            );
        }
        assert_eq!(check_elf(b"#!/bin/sh\n"), Err(LoadError::NotALibrary));
    }
}
