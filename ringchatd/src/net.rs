//! Socket drivers. Each owns its sockets and talks to the node task through channels.

pub mod accept;
pub mod client_listener;
pub mod client_session;
pub mod discovery;
pub mod peer_link;
pub mod peer_listener;
pub mod ring_auth;
