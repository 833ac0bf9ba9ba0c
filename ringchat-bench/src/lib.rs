//! `ringchat-bench`: a load generator for a running RingChat cluster that speaks only the
//! client protocol (PROTOCOL.md), as any outside client would.
//!
//! Modes: [`throughput`] (closed loop, N senders with a window each), [`openloop`]
//! (`latency` and `fanout`: fixed-rate sender plus listening clients), [`failover`]
//! (kill the leader while sending, then check the history with [`verify`]), and [`sync`]
//! (a new server catches up on a history of M messages). `throughput`, `latency` and
//! `fanout` can drive a Redis server's pub/sub instead ([`redis`], over [`resp`]), for a
//! comparison with the same load. Reports print as a table or as one JSON object;
//! latencies are hdrhistogram percentiles ([`stats`]).
#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod failover;
pub mod listener;
pub mod openloop;
pub mod redis;
pub mod report;
pub mod resp;
pub mod sender;
pub mod session;
pub mod stats;
pub mod sync;
pub mod throughput;
pub mod verify;
pub mod wire;
