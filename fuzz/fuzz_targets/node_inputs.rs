//! Arbitrary inputs (ring messages from anyone, ticks, proposals) into one Node.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringchat_fuzz::node::node_inputs(data));
