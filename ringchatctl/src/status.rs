//! The daemon's `status` answer, typed: what the waiting commands decide on and what the
//! human output shows. Ids stay strings, exactly as the daemon sends them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::AdminClient;
use crate::error::CtlError;

/// A server as `status` names it (the leader, a ring member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// Server id.
    pub id: String,
    /// Ring address.
    pub address: String,
    /// Ring port.
    pub port: u16,
    /// Client port.
    pub client_port: u16,
}

/// A ring member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// Who and where.
    #[serde(flatten)]
    pub node: NodeRef,
    /// Milliseconds since this node last heard from it (`None`: never, or itself).
    pub silence_ms: Option<u64>,
}

/// A follower's replication state, as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Follower {
    /// Server id.
    pub id: String,
    /// `replicating`, `syncing`, `merging`, `probing` or `reported`.
    pub state: String,
    /// Newest sequence number the follower is known to hold.
    pub match_seq: u64,
    /// Entries it is behind the leader.
    pub lag_entries: u64,
}

/// The answer to `{"cmd":"status"}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Status {
    /// This server's id.
    pub id: String,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// Whether it leads and takes client messages.
    pub serving: bool,
    /// Whether it was drained (takes no clients).
    #[serde(default)]
    pub draining: bool,
    /// Current epoch.
    pub epoch: u64,
    /// The epoch's round (how many elections have been held).
    pub round: u64,
    /// The leader it knows of.
    pub leader: Option<NodeRef>,
    /// Next server in the ring.
    pub successor: Option<String>,
    /// Previous server in the ring.
    pub predecessor: Option<String>,
    /// The ring in ring order.
    pub members: Vec<Member>,
    /// Newest stored sequence number.
    pub last_seq: u64,
    /// Newest sequence number stored on every live server.
    pub commit_seq: u64,
    /// Bytes of chat text held.
    pub history_bytes: u64,
    /// Connected client sessions.
    pub clients: u64,
    /// Clients disconnected for reading too slowly.
    pub slow_client_disconnects: u64,
    /// Per-follower replication state (leader only).
    pub followers: Vec<Follower>,
    /// Seconds since the process started.
    pub uptime_seconds: f64,
}

impl Status {
    /// Asks the daemon; returns the typed status and the answer as it came.
    pub fn fetch(client: &mut AdminClient) -> Result<(Status, Value), CtlError> {
        let raw = client.request(&json!({"cmd": "status"}))?;
        let status = serde_json::from_value(raw.clone()).map_err(|e| {
            CtlError::Failed(format!(
                "ringchatd sent a status this ringchatctl does not understand: {e}"
            ))
        })?;
        Ok((status, raw))
    }

    /// The leader's id, if one is known.
    pub fn leader_id(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.id.as_str())
    }

    /// Whether this node leads (or is recovering as leader).
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    /// Whether this node is the only ring member (nobody could take over from it).
    pub fn is_alone(&self) -> bool {
        self.members.iter().all(|m| m.node.id == self.id)
    }

    /// The leader's view of follower `id`, when this node leads.
    pub fn follower(&self, id: &str) -> Option<&Follower> {
        self.followers.iter().find(|f| f.id == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A leader's status of a three-node ring, as ringchatd sends it.
    pub(crate) fn leader_status() -> Value {
        json!({
            "ok": true, "id": "3", "role": "leader", "serving": true, "draining": false,
            "epoch": 8_589_934_595_u64, "round": 2,
            "leader": {"id": "3", "address": "127.0.0.1", "port": 5003, "client_port": 5103},
            "successor": "1", "predecessor": "2",
            "members": [
                {"id": "1", "address": "127.0.0.1", "port": 5001, "client_port": 5101, "silence_ms": 40},
                {"id": "2", "address": "127.0.0.1", "port": 5002, "client_port": 5102, "silence_ms": 2500},
                {"id": "3", "address": "127.0.0.1", "port": 5003, "client_port": 5103, "silence_ms": null}
            ],
            "last_seq": 42, "commit_seq": 40, "history_bytes": 2048, "clients": 4,
            "slow_client_disconnects": 0,
            "followers": [
                {"id": "1", "state": "replicating", "match_seq": 42, "lag_entries": 0},
                {"id": "2", "state": "syncing", "match_seq": 30, "lag_entries": 12}
            ],
            "uptime_seconds": 3723.5
        })
    }

    #[test]
    fn parses_what_the_daemon_sends() {
        let s: Status = serde_json::from_value(leader_status()).unwrap();
        assert_eq!(s.leader_id(), Some("3"));
        assert!(s.is_leader());
        assert!(!s.is_alone());
        assert_eq!(s.members[1].silence_ms, Some(2500));
        assert_eq!(s.follower("2").map(|f| f.lag_entries), Some(12));
        assert_eq!(s.follower("3"), None);
    }

    #[test]
    fn a_leaderless_status_parses() {
        let mut v = leader_status();
        v["leader"] = Value::Null;
        v["successor"] = Value::Null;
        v["role"] = json!("candidate");
        v.as_object_mut().unwrap().remove("draining");
        let s: Status = serde_json::from_value(v).unwrap();
        assert_eq!(s.leader_id(), None);
        assert!(!s.draining);
    }
}
