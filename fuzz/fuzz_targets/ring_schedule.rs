//! Arbitrary delivery schedules among three honest Nodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringchat_fuzz::node::ring_schedule(data));
