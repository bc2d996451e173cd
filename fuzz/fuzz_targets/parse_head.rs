//! The request-head parser on arbitrary bytes: no panic, and a head that parses is stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_async_http::fuzzing::parse_head(data);
});
