//! Arbitrary frame payloads into the ring message parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringchat_fuzz::proto::peer_message(data));
