//! Wire types of RingChat and the frame codec that carries them.
//!
//! Three protocols share one framing (a 4-byte big-endian length, then UTF-8 JSON):
//! the client protocol of `docs/PROTOCOL.md` ([`client`], [`server`]), the ring protocol
//! between servers ([`peer`]), and the bare-datagram multicast discovery ([`discovery`]).
//! Nothing here opens a socket, so the pure core and the tests can use the same types as
//! the daemon.
#![warn(missing_docs)]

#[cfg(feature = "auth")]
pub mod auth;
pub mod client;
pub mod discovery;
pub mod entry;
pub mod error;
#[cfg(feature = "codec")]
pub mod frame;
pub mod ids;
pub mod limits;
pub mod peer;
#[cfg(feature = "codec")]
pub mod requests;
pub mod server;

pub use entry::{ChatEntry, ChatEntryRef};
pub use error::{ErrorCode, ProtocolError};
pub use ids::{Epoch, NodeId, Seq};
