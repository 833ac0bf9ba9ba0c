//! The RingChat server: a thin tokio shell around the sans-IO `ringchat-core` state machine.
//!
//! `net/` holds the drivers that talk to the world (ring links, the client listener,
//! multicast discovery), `ops/` what operators touch (logging, the admin socket,
//! signals), and [`node`] the single task that owns the state machine and turns its
//! actions into I/O. [`server::run`] wires them together; `main.rs` only parses flags.

pub mod cli;
pub mod net;
pub mod node;
pub mod ops;
pub mod server;
pub mod settings;
