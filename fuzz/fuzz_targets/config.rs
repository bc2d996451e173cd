//! The configuration parser on arbitrary text: an error with a line, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_async_http::fuzzing::config(data);
});
