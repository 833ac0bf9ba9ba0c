//! Arbitrary frame payloads into the client request parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (limit, payload) = data.split_first().map_or((0, data), |(b, rest)| (*b, rest));
    ringchat_fuzz::proto::client_request(payload, 1 + usize::from(limit) * 32);
});
