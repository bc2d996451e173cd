//! The layout of every type that crosses, asserted at compile time: a change that moves, resizes
//! or retypes a field fails the build here instead of shifting what a plugin built against an
//! older `plugin-api` reads (see the ABI policy in `abi`). The figures are those of the 64-bit
//! targets the host runs on (x86-64 and AArch64 Linux); `include/mini_async_http.h` asserts the
//! same ones in C.

#![cfg(target_pointer_width = "64")]

use std::mem::{align_of, offset_of, size_of};

use super::*;

/// Asserts a type's size and alignment and the offsets of its fields, at compile time.
macro_rules! layout {
    ($ty:ty: size $size:literal, align $align:literal $(, $field:ident @ $offset:literal)* $(,)?) => {
        const _: () = {
            assert!(size_of::<$ty>() == $size, concat!("size of ", stringify!($ty)));
            assert!(align_of::<$ty>() == $align, concat!("alignment of ", stringify!($ty)));
            $(assert!(
                offset_of!($ty, $field) == $offset,
                concat!("offset of ", stringify!($ty), ".", stringify!($field))
            );)*
        };
    };
}

layout!(RawBytes: size 16, align 8, ptr @ 0, len @ 8);
layout!(Status: size 4, align 4);
layout!(Declaration: size 96, align 8,
    magic @ 0, abi_version @ 8, size @ 12, panic @ 16, name @ 24, version @ 40,
    on_init @ 56, on_handle @ 64, on_drop @ 72, on_save @ 80, on_restore @ 88);
layout!(BytesSink: size 16, align 8, ctx @ 0, callback_write @ 8);
layout!(ResponseSink: size 32, align 8,
    ctx @ 0, callback_respond @ 8, callback_write @ 16, callback_flush @ 24);
layout!(RawResponse: size 64, align 8,
    status @ 0, flags @ 4, headers @ 8, body @ 24, body_kind @ 40, fd @ 44, offset @ 48,
    length @ 56);
layout!(BodySource: size 16, align 8, ctx @ 0, callback_read @ 8);
layout!(HostApi: size 16, align 8, ctx @ 0, callback_log @ 8);
layout!(Request<'static>: size 152, align 8,
    method @ 0, target @ 16, path @ 32, query @ 48, has_query @ 64, version @ 65, mount @ 72,
    headers @ 88, headers_len @ 96, body @ 104, peer @ 120, source @ 144);
layout!(Header<'static>: size 32, align 8, name @ 0, value @ 16);
layout!(RawPeer: size 20, align 2, family @ 0, port @ 2, ip @ 4);

// The required part of a declaration ends with `on_drop`.
const _: () = assert!(
    DECLARATION_MIN_SIZE as usize == offset_of!(Declaration, on_drop) + size_of::<DropFn>()
);
// The fields every version keeps where they are (size: from ABI 4 on).
const _: () = assert!(offset_of!(Declaration, magic) == 0);
const _: () = assert!(offset_of!(Declaration, abi_version) == 8);
const _: () = assert!(offset_of!(Declaration, size) == 12);
