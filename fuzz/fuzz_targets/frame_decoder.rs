//! Arbitrary byte streams, in arbitrary reads, into the frame decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringchat_fuzz::proto::frame_decoder_bytes(data));
