//! Arbitrary datagrams into the discovery parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringchat_fuzz::proto::discovery_datagram(data));
