//! The node task: the only owner of the `ringchat_core::Node`. Every socket driver sends it
//! [`Event`]s; it feeds them to the state machine, carries out the actions, and serves
//! clients from the committed history. One owner means no locks, and ordering for free:
//! a client that gets its history and then the broadcasts that follow can never see a gap.

mod clients;
mod control;
mod events;
mod history;
mod links;
mod status;
mod task;

pub use clients::ConnId;
pub use events::{AdminRequest, Event, NodeView};
pub use task::NodeTask;
