//! Raw plugin responses through the host's check: whatever passes, sent as the host sends it and
//! parsed back by a lenient client, is exactly the fields that were checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mini_async_http::fuzzing::responses(data);
});
