//! Server -> client messages. Each carries the envelope (`sender_id`, `timestamp`) itself
//! because `chat_broadcast` shares its `timestamp` with the chat entry it carries.

use serde::{Deserialize, Serialize};

use crate::entry::{ChatEntry, ChatEntryRef};
use crate::error::ErrorCode;
use crate::ids::{Epoch, NodeId, Seq};

/// Every frame a server sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ServerMessage {
    HistoryResponse(HistoryResponse),
    ChatBroadcast(ChatBroadcast),
    MessageDelivered(MessageDelivered),
    LeaderInfo(LeaderInfo),
    ClientPingAck(LeaderInfo),
    Error(ErrorMessage),
}

/// A page of history; long answers span several frames (`more: true` on all but the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryResponse {
    #[serde(default)]
    #[allow(missing_docs)]
    pub sender_id: String,
    #[serde(default)]
    #[allow(missing_docs)]
    pub timestamp: f64,
    /// Entries in ascending sequence order.
    pub messages: Vec<ChatEntry>,
    /// The `from_sequence` the answer starts after.
    pub from_sequence: Seq,
    /// The server's newest sequence number.
    pub last_sequence: Seq,
    /// Further frames of this answer follow.
    pub more: bool,
    /// The client must drop what it holds and take this instead.
    pub reset: bool,
}

/// One stored chat entry pushed to every connected client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatBroadcast {
    #[serde(default)]
    #[allow(missing_docs)]
    pub sender_id: String,
    /// The entry, at the top level of the object.
    #[serde(flatten)]
    pub entry: ChatEntry,
}

/// The acknowledgement of a `client_message`, sent once it is stored on every live server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDelivered {
    #[serde(default)]
    #[allow(missing_docs)]
    pub sender_id: String,
    #[serde(default)]
    #[allow(missing_docs)]
    pub timestamp: f64,
    /// The acknowledged message.
    pub message_id: String,
    /// Where it stands in the global order.
    pub sequence_number: Seq,
    /// The epoch of the leader that assigned it.
    pub epoch: Epoch,
}

/// Where the leader is (`leader_info`, and the body of `client_ping_ack`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderInfo {
    #[serde(default)]
    #[allow(missing_docs)]
    pub sender_id: String,
    #[serde(default)]
    #[allow(missing_docs)]
    pub timestamp: f64,
    /// The leader's id, null while an election runs.
    pub leader_id: Option<NodeId>,
    /// The leader's client address.
    pub leader_address: Option<String>,
    /// The leader's client port.
    pub leader_port: Option<u16>,
    /// False: no leader now, retry soon.
    pub is_available: bool,
    /// Whether the sender is the leader.
    #[serde(default)]
    pub is_leader: bool,
    /// The sender's epoch.
    #[serde(default)]
    pub epoch: Epoch,
}

/// An `error` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMessage {
    #[serde(default)]
    #[allow(missing_docs)]
    pub sender_id: String,
    #[serde(default)]
    #[allow(missing_docs)]
    pub timestamp: f64,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// The message the error refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// The frames the leader sends for every message, borrowing the stored entry: the same
/// JSON as [`ServerMessage`] (tested), without copying the entry's strings first.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "msg_type", rename_all = "snake_case")]
pub enum ServerMessageRef<'a> {
    /// As [`ServerMessage::ChatBroadcast`].
    ChatBroadcast {
        #[allow(missing_docs)]
        sender_id: &'a str,
        /// The entry, at the top level of the object.
        #[serde(flatten)]
        entry: ChatEntryRef<'a>,
    },
    /// As [`ServerMessage::MessageDelivered`], for `entry`.
    MessageDelivered {
        #[allow(missing_docs)]
        sender_id: &'a str,
        #[allow(missing_docs)]
        timestamp: f64,
        #[allow(missing_docs)]
        message_id: &'a str,
        #[allow(missing_docs)]
        sequence_number: Seq,
        #[allow(missing_docs)]
        epoch: Epoch,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ChatEntry {
        ChatEntry {
            message_id: "k3f9a:1".into(),
            sequence_number: 1,
            client_id: "k3f9a".into(),
            username: "Alice".into(),
            content: "Hallo zusammen!".into(),
            timestamp: 1764097426.0,
            delivered: true,
            epoch: 2,
        }
    }

    #[test]
    fn broadcast_matches_the_protocol_example() {
        let msg = ServerMessage::ChatBroadcast(ChatBroadcast {
            sender_id: "Server 3".into(),
            entry: entry(),
        });
        let json: serde_json::Value = serde_json::to_value(&msg).unwrap();
        let expected: serde_json::Value = serde_json::from_str(r#"{"msg_type":"chat_broadcast","sender_id":"Server 3","timestamp":1764097426.0,"message_id":"k3f9a:1","sequence_number":1,"client_id":"k3f9a","username":"Alice","content":"Hallo zusammen!","delivered":true,"epoch":2}"#).unwrap();
        assert_eq!(json, expected);
        let back: ServerMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn borrowed_frames_are_the_same_json() {
        let e = entry();
        let owned = ServerMessage::ChatBroadcast(ChatBroadcast {
            sender_id: "Server 3".into(),
            entry: e.clone(),
        });
        let borrowed = ServerMessageRef::ChatBroadcast {
            sender_id: "Server 3",
            entry: e.borrowed(),
        };
        let json = |v: serde_json::Result<String>| v.unwrap();
        assert_eq!(
            json(serde_json::to_string(&borrowed)),
            json(serde_json::to_string(&owned))
        );
        let owned = ServerMessage::MessageDelivered(MessageDelivered {
            sender_id: "Server 3".into(),
            timestamp: 5.5,
            message_id: e.message_id.clone(),
            sequence_number: 1,
            epoch: 2,
        });
        let borrowed = ServerMessageRef::MessageDelivered {
            sender_id: "Server 3",
            timestamp: 5.5,
            message_id: &e.message_id,
            sequence_number: 1,
            epoch: 2,
        };
        assert_eq!(
            json(serde_json::to_string(&borrowed)),
            json(serde_json::to_string(&owned))
        );
    }

    #[test]
    fn error_codes_are_screaming_snake_case() {
        let msg = ServerMessage::Error(ErrorMessage {
            sender_id: "Server 1".into(),
            timestamp: 1.0,
            code: ErrorCode::FrameTooLarge,
            message: "x".into(),
            message_id: None,
        });
        let s = serde_json::to_string(&msg).unwrap();
        assert!(
            s.contains(r#""msg_type":"error""#) && s.contains(r#""code":"FRAME_TOO_LARGE""#),
            "{s}"
        );
    }

    #[test]
    fn leader_info_round_trips_with_nulls() {
        let s = r#"{"msg_type":"leader_info","sender_id":"Server 1","timestamp":2.0,"leader_id":null,"leader_address":null,"leader_port":null,"is_available":false,"is_leader":false,"epoch":4}"#;
        let msg: ServerMessage = serde_json::from_str(s).unwrap();
        assert!(
            matches!(msg, ServerMessage::LeaderInfo(ref i) if i.leader_id.is_none() && !i.is_available)
        );
    }
}
