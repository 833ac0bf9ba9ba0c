//! The bodies of RingChat's fuzz targets, as plain functions.
//!
//! `fuzz_targets/*.rs` hand libFuzzer's input to these; the workspace's test suites include
//! the same files (`ringchat-proto/tests/fuzz_bodies.rs`, `ringchat-core/tests/fuzz_bodies.rs`)
//! and run them under proptest, so the bodies build and run in every `cargo test`, also on
//! a stable toolchain without cargo-fuzz. See `README.md`.

pub mod node;
pub mod proto;
