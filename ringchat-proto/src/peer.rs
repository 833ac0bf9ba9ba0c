//! The ring protocol between servers (documented in `docs/PROTOCOL.md`, "Ring protocol").
//!
//! Every message is addressed to one server and travels on the sender's own outbound link
//! to it; answers travel on the answerer's outbound link. Which side opened a TCP
//! connection therefore never decides whether a reply arrives.

use serde::{Deserialize, Serialize};

use crate::entry::ChatEntry;
use crate::ids::{Epoch, NodeId, Seq};

mod de;

/// How to reach a server: its ring address and its client port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Server id.
    pub id: NodeId,
    /// Host or IP the ring and client ports listen on.
    pub address: String,
    /// Ring port.
    pub port: u16,
    /// Client port (ring port + 100 unless configured otherwise).
    pub client_port: u16,
}

/// One ring frame: who sent it, and what. (Deserialize is written out in `de`, so that
/// a batch's entries are parsed straight into their type.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerMessage {
    /// The sender's id.
    pub from: NodeId,
    /// `"Server N"`, as in the client protocol's envelope.
    #[serde(default)]
    pub sender_id: String,
    /// Seconds since the Unix epoch when sent.
    #[serde(default)]
    pub timestamp: f64,
    /// The cluster name: frames of another cluster are refused.
    #[serde(default)]
    pub cluster: String,
    /// How to reach the sender, so that a server can answer one it does not know yet.
    /// (Not `node`: that name belongs to the join messages' own field.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<NodeInfo>,
    /// The message itself.
    #[serde(flatten)]
    pub body: PeerBody,
}

/// Why a server is no longer in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It said goodbye (SIGTERM, SIGINT).
    Left,
    /// A neighbour or the leader stopped hearing from it.
    Failed,
}

/// The ring messages. Names follow the prototype's message kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", rename_all = "snake_case")]
pub enum PeerBody {
    /// A server asks to be part of the ring (sent to the leader, or to whoever it found).
    RingJoinRequest {
        /// The joining server.
        node: NodeInfo,
        /// Its epoch.
        epoch: Epoch,
        /// Its newest entry, so the leader knows where to start syncing.
        last_seq: Seq,
        /// Epoch of that entry.
        last_epoch: Epoch,
        /// Not a join: the sender leads a ring of its own and asks who leads here (how two
        /// rings find each other after a partition when there is no multicast).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        probe: bool,
    },
    /// The answer to a join request from a server that is not the leader: where to go.
    RingJoinAccept {
        /// The answering server.
        node: NodeInfo,
        /// The leader, if the answering server knows one.
        leader: Option<NodeInfo>,
        /// The answering server's epoch.
        epoch: Epoch,
        /// True when the answering server is the leader and took the joiner in.
        accepted: bool,
    },
    /// The leader's view of the ring, sent to every member whenever it changes.
    RingUpdate {
        /// The leader's epoch.
        epoch: Epoch,
        /// Members ordered by id.
        members: Vec<NodeInfo>,
        /// Bumped on every change within an epoch so that late updates are ignored.
        version: u64,
    },
    /// A server leaves (to its neighbours and the leader), or is reported failed.
    RingLeave {
        /// Sender's epoch.
        epoch: Epoch,
        /// The server that is gone.
        node: NodeId,
        /// Why.
        reason: LeaveReason,
    },
    /// Liveness probe to a ring neighbour.
    Heartbeat {
        /// Sender's epoch.
        epoch: Epoch,
        /// Echoed in the ack to measure the round trip.
        nonce: u64,
        /// The leader the sender follows, so divergent views are noticed.
        leader: Option<NodeId>,
    },
    /// Answer to a heartbeat.
    HeartbeatAck {
        /// Sender's epoch.
        epoch: Epoch,
        /// The heartbeat's nonce.
        nonce: u64,
    },
    /// Asks the receiver to start an election (a higher id is ready to lead).
    ElectionStart {
        /// Sender's epoch.
        epoch: Epoch,
    },
    /// Chang-Roberts vote, passed to the successor.
    ElectionVote {
        /// The round's epoch.
        epoch: Epoch,
        /// The highest id seen so far on the way round.
        candidate: NodeId,
    },
    /// The winner's announcement, passed round the ring.
    ElectionLeader {
        /// The new epoch.
        epoch: Epoch,
        /// The new leader.
        leader: NodeInfo,
    },
    /// Entries from the leader, following `prev_seq` (whose entry has `prev_epoch`).
    ReplicationSync {
        /// The leader's epoch.
        epoch: Epoch,
        /// The entry the batch follows (0: the start of history).
        prev_seq: Seq,
        /// Epoch of that entry (0 with `prev_seq` 0).
        prev_epoch: Epoch,
        /// Entries `prev_seq+1 ..`.
        entries: Vec<ChatEntry>,
        /// Replace the whole history with this batch and what follows.
        reset: bool,
        /// The leader's commit point: a follower below it is still catching up and does
        /// not put itself forward in an election.
        #[serde(default)]
        commit: Seq,
    },
    /// A follower's state: after each batch, and when it learns of a new leader.
    ReplicationAck {
        /// The follower's epoch.
        epoch: Epoch,
        /// Its newest entry.
        last_seq: Seq,
        /// That entry's epoch.
        last_epoch: Epoch,
        /// False: the batch did not follow the follower's log; resend from `last_seq`.
        ok: bool,
        /// The follower is drained by its operator: never hand leadership to it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        draining: bool,
    },
    /// A new leader asks a follower for the entries it lacks (follower is ahead).
    SyncRequest {
        /// The leader's epoch.
        epoch: Epoch,
        /// Entries from this sequence number on (inclusive).
        from_seq: Seq,
        /// At most this many.
        limit: u64,
    },
    /// The follower's answer to a `sync_request`.
    SyncResponse {
        /// The follower's epoch.
        epoch: Epoch,
        /// Entries in ascending order.
        entries: Vec<ChatEntry>,
        /// The follower's newest sequence number.
        last_seq: Seq,
    },
}

impl PeerBody {
    /// The sender's epoch: every ring message carries one.
    pub fn epoch(&self) -> Epoch {
        match self {
            PeerBody::RingJoinRequest { epoch, .. }
            | PeerBody::RingJoinAccept { epoch, .. }
            | PeerBody::RingUpdate { epoch, .. }
            | PeerBody::RingLeave { epoch, .. }
            | PeerBody::Heartbeat { epoch, .. }
            | PeerBody::HeartbeatAck { epoch, .. }
            | PeerBody::ElectionStart { epoch }
            | PeerBody::ElectionVote { epoch, .. }
            | PeerBody::ElectionLeader { epoch, .. }
            | PeerBody::ReplicationSync { epoch, .. }
            | PeerBody::ReplicationAck { epoch, .. }
            | PeerBody::SyncRequest { epoch, .. }
            | PeerBody::SyncResponse { epoch, .. } => *epoch,
        }
    }

    /// The wire name, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerBody::RingJoinRequest { .. } => "ring_join_request",
            PeerBody::RingJoinAccept { .. } => "ring_join_accept",
            PeerBody::RingUpdate { .. } => "ring_update",
            PeerBody::RingLeave { .. } => "ring_leave",
            PeerBody::Heartbeat { .. } => "heartbeat",
            PeerBody::HeartbeatAck { .. } => "heartbeat_ack",
            PeerBody::ElectionStart { .. } => "election_start",
            PeerBody::ElectionVote { .. } => "election_vote",
            PeerBody::ElectionLeader { .. } => "election_leader",
            PeerBody::ReplicationSync { .. } => "replication_sync",
            PeerBody::ReplicationAck { .. } => "replication_ack",
            PeerBody::SyncRequest { .. } => "sync_request",
            PeerBody::SyncResponse { .. } => "sync_response",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_wire_format() {
        let msg = PeerMessage {
            from: 2,
            sender_id: "Server 2".into(),
            timestamp: 1.5,
            cluster: "ringchat".into(),
            origin: None,
            body: PeerBody::ElectionVote {
                epoch: 7,
                candidate: 3,
            },
        };
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["msg_type"], "election_vote");
        assert_eq!(v["candidate"], 3);
        assert_eq!(v["from"], 2);
        let back: PeerMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn join_messages_round_trip_with_an_origin() {
        let me = NodeInfo {
            id: 4,
            address: "10.0.0.4".into(),
            port: 5004,
            client_port: 5104,
        };
        let msg = PeerMessage {
            from: 4,
            sender_id: "Server 4".into(),
            timestamp: 1.0,
            cluster: "ringchat".into(),
            origin: Some(me.clone()),
            body: PeerBody::RingJoinRequest {
                node: me,
                epoch: 3,
                last_seq: 9,
                last_epoch: 2,
                probe: false,
            },
        };
        let text = serde_json::to_string(&msg).unwrap();
        let back: PeerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn unknown_type_is_an_error_not_a_panic() {
        assert!(serde_json::from_str::<PeerMessage>(r#"{"from":1,"msg_type":"nope"}"#).is_err());
        assert!(
            serde_json::from_str::<PeerMessage>(
                r#"{"from":"x","msg_type":"heartbeat","epoch":1,"nonce":1}"#
            )
            .is_err()
        );
    }
}
