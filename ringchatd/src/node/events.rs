//! What the drivers tell the node task, and what it publishes back.

use bytes::Bytes;
use ringchat_core::Role;
use ringchat_proto::client::ClientRequest;
use ringchat_proto::peer::{NodeInfo, PeerMessage};
use ringchat_proto::{Epoch, NodeId};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::ConnId;

/// An input for the node task.
#[derive(Debug)]
pub enum Event {
    /// A ring frame arrived.
    Peer(PeerMessage),
    /// The link to a server broke and could not be re-established.
    PeerUnreachable(NodeId),
    /// Multicast discovery heard of a server.
    Discovered {
        /// The server.
        node: NodeInfo,
        /// The leader it follows.
        leader: Option<NodeInfo>,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A client connected; frames for it go into `outbox`.
    ClientOpened {
        /// Its connection id.
        conn: ConnId,
        /// Frames to write to it, already framed. An empty frame means "close after this".
        outbox: mpsc::Sender<Bytes>,
        /// Cancelled to drop the connection at once (a slow reader).
        kick: CancellationToken,
    },
    /// A client sent a well-formed request.
    ClientRequest {
        /// Its connection id.
        conn: ConnId,
        /// The request.
        req: ClientRequest,
    },
    /// A client's connection ended.
    ClientClosed {
        /// Its connection id.
        conn: ConnId,
    },
    /// A request on the admin socket.
    Admin {
        /// The request.
        req: AdminRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<serde_json::Value>,
    },
}

/// Admin socket requests the node task answers.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Role, epoch, leader, ring, replication state.
    Status,
    /// History entries after `from`, at most `limit`.
    History {
        /// Entries after this sequence number.
        #[serde(default)]
        from: u64,
        /// At most this many.
        #[serde(default = "default_limit")]
        limit: usize,
    },
    /// Start an election round now.
    Elect,
    /// Stop taking clients and never lead (a leader hands over); stay a replica.
    Drain,
    /// Take clients and lead again.
    Undrain,
    /// Leave the ring and stop the process.
    Leave,
    /// Change the log level or filter.
    LogLevel {
        /// A level or filter directive.
        level: String,
    },
    /// Re-read the configuration file and apply what can change at runtime.
    Reload,
}

impl AdminRequest {
    /// Whether the request changes the server (and is audited).
    pub fn mutates(&self) -> bool {
        !matches!(self, AdminRequest::Status | AdminRequest::History { .. })
    }
}

fn default_limit() -> usize {
    1000
}

/// What drivers need to know of the node without asking it: published on every change.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// This server.
    pub me: NodeInfo,
    /// Role.
    pub role: Role,
    /// Epoch.
    pub epoch: Epoch,
    /// The leader, if known.
    pub leader: Option<NodeInfo>,
    /// Whether we lead and take client messages.
    pub serving: bool,
    /// Ring members' ids.
    pub members: Vec<NodeId>,
    /// Drained by the operator.
    pub draining: bool,
}
