//! Reading a plugin's [`Declaration`] out of its image, by the ABI policy (`plugin_api::abi`):
//! magic, ABI version and size first, at the offsets every version keeps; then the panic
//! strategy; then only the fields the declared size covers.

use std::mem::{offset_of, size_of};

use plugin_api::abi::{
    ABI_VERSION, DECLARATION_MIN_SIZE, Declaration, DropFn, HandleFn, InitFn, MAGIC, PANIC_ABORT,
    PANIC_NONE, PANIC_UNWIND, RestoreFn, SaveFn,
};

use super::LoadError;

/// What a checked declaration gives the host: the plugin's name and version, and its hooks (the
/// optional ones `None` when absent, or past the declaration's size).
pub(super) struct Declared {
    pub name: String,
    pub version: String,
    pub hooks: Hooks,
}

/// The functions the host calls, copied out of the declaration.
#[derive(Clone, Copy)]
pub(super) struct Hooks {
    pub on_init: InitFn,
    pub on_handle: HandleFn,
    pub on_drop: DropFn,
    pub on_save: Option<SaveFn>,
    pub on_restore: Option<RestoreFn>,
}

/// The checks made before anything else is read or called.
pub(super) fn check_header(
    magic: u64,
    abi_version: u32,
    size: u32,
    panic: u32,
) -> Result<(), LoadError> {
    if magic != MAGIC {
        return Err(LoadError::BadMagic(magic));
    }
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiMismatch {
            plugin: abi_version,
            host: ABI_VERSION,
        });
    }
    if size < DECLARATION_MIN_SIZE {
        return Err(LoadError::DeclarationTooSmall {
            size,
            min: DECLARATION_MIN_SIZE,
        });
    }
    match panic {
        PANIC_NONE | PANIC_UNWIND => Ok(()),
        PANIC_ABORT => Err(LoadError::PanicAbort),
        other => Err(LoadError::UnknownPanic(other)),
    }
}

/// Reads and checks the declaration at `decl`.
///
/// # Safety
/// `decl` is null, or points to at least 12 readable bytes (magic and version) in a loaded image,
/// and, when they say this ABI version, to a declaration of the size it states, whose strings are
/// valid for as long as the image is loaded.
pub(super) unsafe fn read(decl: *const Declaration) -> Result<Declared, LoadError> {
    if decl.is_null() || !decl.is_aligned() {
        return Err(LoadError::NoDeclaration);
    }
    // SAFETY: the caller promises 12 bytes; magic and version are at 0 and 8 in every version.
    let (magic, abi_version) = unsafe { ((*decl).magic, (*decl).abi_version) };
    if magic != MAGIC || abi_version != ABI_VERSION {
        // Refused on these alone: another version's declaration may have no size or panic.
        check_header(magic, abi_version, DECLARATION_MIN_SIZE, PANIC_NONE)?;
    }
    // SAFETY: this ABI version's declarations have `size` at 12.
    let size = unsafe { (*decl).size };
    check_header(magic, abi_version, size, PANIC_NONE)?;
    // SAFETY: `size` covers `panic` (at 16) and every required hook, checked just above.
    let panic = unsafe { (*decl).panic };
    check_header(magic, abi_version, size, panic)?;
    let covers = |offset: usize, len: usize| offset + len <= size as usize;
    // SAFETY: the size covers every required field, and each optional one is read only when it
    // covers that one too; each read is of one field, through the raw pointer, never a reference
    // to the whole declaration (which may be shorter than this host's). A required hook is read
    // as an `Option` (the same layout) because C can leave it null. The strings are `'static` in
    // the image.
    unsafe {
        let on_init = (&raw const (*decl).on_init).cast::<Option<InitFn>>().read();
        let on_handle = (&raw const (*decl).on_handle)
            .cast::<Option<HandleFn>>()
            .read();
        let on_drop = (&raw const (*decl).on_drop).cast::<Option<DropFn>>().read();
        let (Some(on_init), Some(on_handle), Some(on_drop)) = (on_init, on_handle, on_drop) else {
            return Err(LoadError::MissingHook);
        };
        let on_save = if covers(
            offset_of!(Declaration, on_save),
            size_of::<Option<SaveFn>>(),
        ) {
            (*decl).on_save
        } else {
            None
        };
        let on_restore = if covers(
            offset_of!(Declaration, on_restore),
            size_of::<Option<RestoreFn>>(),
        ) {
            (*decl).on_restore
        } else {
            None
        };
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        Ok(Declared {
            name: text((*decl).name.as_slice()),
            version: text((*decl).version.as_slice()),
            hooks: Hooks {
                on_init,
                on_handle,
                on_drop,
                on_save,
                on_restore,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_checked_and_each_refusal_names_both_sides() {
        let ok = |size, panic| check_header(MAGIC, ABI_VERSION, size, panic);
        assert!(ok(96, PANIC_UNWIND).is_ok());
        assert!(ok(DECLARATION_MIN_SIZE, PANIC_NONE).is_ok());
        assert!(
            ok(4096, PANIC_UNWIND).is_ok(),
            "a newer, longer declaration"
        );
        let refused = |r: Result<(), LoadError>| r.unwrap_err().to_string();
        let small = refused(ok(DECLARATION_MIN_SIZE - 8, PANIC_UNWIND));
        assert!(
            small.contains("72 bytes") && small.contains("at least 80"),
            "{small}"
        );
        let abort = refused(ok(96, PANIC_ABORT));
        assert!(
            abort.contains("panic = \"abort\"") && abort.contains("\"unwind\""),
            "{abort}"
        );
        let unknown = refused(ok(96, 7));
        assert!(unknown.contains('7'), "{unknown}");
        let abi = refused(check_header(MAGIC, ABI_VERSION + 1, 96, PANIC_UNWIND));
        assert!(
            abi.contains(&format!("ABI version {}", ABI_VERSION + 1)),
            "{abi}"
        );
        assert!(abi.contains(&format!("ABI version {ABI_VERSION}")), "{abi}");
        assert!(refused(check_header(1, ABI_VERSION, 96, 1)).contains("magic"));
    }
}
