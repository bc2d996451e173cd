//! The body decoders on arbitrary bytes fed in arbitrary splits: no panic, and every split decodes
//! exactly as the whole does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_async_http::fuzzing::bodies(data);
});
