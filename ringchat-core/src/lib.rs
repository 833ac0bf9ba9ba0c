//! The sans-IO heart of RingChat: ring membership, Chang-Roberts election with epochs,
//! and the replicated chat log.
//!
//! [`Node`] never touches a socket, a clock or a random number generator. The daemon feeds
//! it [`Input`]s (a ring frame, a tick with the current time, a lost peer, a discovered
//! server) and client proposals, and carries out the [`Action`]s it returns. Because of that
//! the whole distributed algorithm runs in tests on an in-memory network, thousands of
//! interleavings a second, with crashes and cut links, deterministically.
#![warn(missing_docs)]

mod action;
mod config;
mod election;
mod log;
mod node;
mod plausible;
mod replication;
mod ring;

pub use action::{Action, ElectionTrigger, Input, Notice, Proposal, ProposeError, ProposeOutcome};
pub use config::{CoreConfig, ReplicationMode};
pub use election::{MAX_NODE_ID, epoch_initiator, epoch_round, next_epoch};
pub use log::{Entries, Log};
pub use node::{Node, Role};
pub use replication::{FollowerProgress, FollowerState};
pub use ring::Ring;

/// Milliseconds on the driver's monotonic clock; the core only ever compares them.
pub type Millis = u64;
