//! Multicast discovery datagrams: one bare JSON object each, no length prefix.

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, NodeId};

/// Largest datagram we read or send; anything longer is not ours.
pub const MAX_DATAGRAM: usize = 8 * 1024;

/// `discovery_announce` (periodic, or a client's question) or `discovery_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryMessage {
    /// `discovery_announce` or `discovery_response`.
    pub msg_type: String,
    /// `"Server N"`, or a client's id.
    #[serde(default)]
    pub sender_id: String,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub timestamp: f64,
    /// The sender's ring address; empty from a client.
    #[serde(default)]
    pub server_address: String,
    /// The sender's ring port; 0 from a client.
    #[serde(default)]
    pub server_port: u16,
    /// Whether the sender leads.
    #[serde(default)]
    pub is_leader: bool,
    /// The leader the sender knows.
    #[serde(default)]
    pub leader_id: Option<NodeId>,
    /// The leader's client address.
    #[serde(default)]
    pub leader_address: Option<String>,
    /// The leader's client port.
    #[serde(default)]
    pub leader_port: Option<u16>,
    /// The sender's epoch.
    #[serde(default)]
    pub epoch: Epoch,
    /// Cluster name; datagrams of another cluster are ignored. Absent: any cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Our extension: the sender's id as a number (servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    /// Our extension: the sender's client port (servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u16>,
    /// Our extension: the leader's ring port, so that a joining server can reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_ring_port: Option<u16>,
    /// With `cluster.secret`: the sender's proof that it holds the key (servers only).
    /// Last, so that its MAC is the last `"mac"` in the datagram (see `auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<DatagramAuth>,
}

/// The `auth` field of a server's discovery datagram (docs/PROTOCOL.md, "Ring
/// authentication"): without it a keyed server ignores the datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatagramAuth {
    /// Random, hex: a datagram is accepted once.
    pub nonce: String,
    /// Seconds since the Unix epoch when sent.
    pub ts: u64,
    /// HMAC-SHA256 over the datagram as sent with this field's hex replaced by zeros, hex.
    pub mac: String,
}

/// `msg_type` of a periodic announcement or a question.
pub const ANNOUNCE: &str = "discovery_announce";
/// `msg_type` of an answer to a question.
pub const RESPONSE: &str = "discovery_response";

impl DiscoveryMessage {
    /// Whether this datagram is a client looking for the leader rather than a server.
    pub fn is_client_query(&self) -> bool {
        self.msg_type == ANNOUNCE && self.server_port == 0 && self.node_id.is_none()
    }

    /// The sending server's id: our `node_id` field, else parsed from `"Server N"`.
    pub fn server_id(&self) -> Option<NodeId> {
        self.node_id.or_else(|| {
            self.sender_id
                .strip_prefix("Server ")
                .and_then(|n| n.trim().parse().ok())
        })
    }

    /// Parses a datagram; `None` for anything that is not a discovery message.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_DATAGRAM {
            return None;
        }
        let msg: Self = serde_json::from_slice(bytes).ok()?;
        let kind = msg.msg_type.to_ascii_lowercase();
        (kind == ANNOUNCE || kind == RESPONSE).then_some(Self {
            msg_type: kind,
            ..msg
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_query_is_recognised() {
        let q = DiscoveryMessage::parse(br#"{"msg_type":"discovery_announce","sender_id":"abc","timestamp":1,"server_address":"","server_port":0,"is_leader":false}"#).unwrap();
        assert!(q.is_client_query());
        assert_eq!(q.server_id(), None);
    }

    #[test]
    fn server_id_from_sender() {
        let a = DiscoveryMessage::parse(br#"{"msg_type":"discovery_announce","sender_id":"Server 12","server_address":"127.0.0.1","server_port":5012}"#).unwrap();
        assert_eq!(a.server_id(), Some(12));
        assert!(!a.is_client_query());
        assert!(DiscoveryMessage::parse(br#"{"msg_type":"heartbeat"}"#).is_none());
        assert!(DiscoveryMessage::parse(b"\xff\xfe").is_none());
    }
}
