//! Untrusted bytes from a SIP socket into the message parser: only a panic fails.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = baton_sip::parse::parse_message(data);
});
