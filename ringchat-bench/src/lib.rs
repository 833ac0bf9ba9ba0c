//! `ringchat-bench`: a load generator for a running RingChat cluster that speaks only the
//! client protocol (PROTOCOL.md), as any outside client would.
//!
//! Modes: [`throughput`] (closed loop, N senders with a window each), [`openloop`]
//! (`latency` and `fanout`: fixed-rate sender plus listening clients), and [`failover`]
//! (kill the leader while sending, then check the history with [`verify`]). Reports print
//! as a table or as one JSON object; latencies are hdrhistogram percentiles ([`stats`]).
#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod failover;
pub mod listener;
pub mod openloop;
pub mod report;
pub mod sender;
pub mod session;
pub mod stats;
pub mod throughput;
pub mod verify;
pub mod wire;
