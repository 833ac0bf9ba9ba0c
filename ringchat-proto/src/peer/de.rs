//! Reading a [`PeerMessage`] without serde's buffering of flattened fields.
//!
//! The derived code for an envelope with a `#[serde(flatten)]` internally tagged body
//! buffers the whole object (every entry of a replication batch) as serde `Content`
//! and walks it again: that made parsing a batch cost a follower ten times what
//! serialising it costs the leader. Here the envelope fields and `entries` are read
//! straight into their types; the body's other (small) fields are collected as JSON
//! values and read by the derived [`PeerBody`] code, so the wire format is the same.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{NodeInfo, PeerBody, PeerMessage};
use crate::entry::ChatEntry;
use crate::ids::NodeId;

impl<'de> Deserialize<'de> for PeerMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

/// The object keys read directly; anything else belongs to the body.
enum Key {
    From,
    SenderId,
    Timestamp,
    Cluster,
    Origin,
    Entries,
    Body(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "from" => Key::From,
            "sender_id" => Key::SenderId,
            "timestamp" => Key::Timestamp,
            "cluster" => Key::Cluster,
            "origin" => Key::Origin,
            "entries" => Key::Entries,
            other => Key::Body(other.to_owned()),
        })
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = PeerMessage;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a ring message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PeerMessage, A::Error> {
        let mut from: Option<NodeId> = None;
        let mut sender_id = String::new();
        let mut timestamp = 0.0;
        let mut cluster = String::new();
        let mut origin: Option<NodeInfo> = None;
        let mut entries: Option<Vec<ChatEntry>> = None;
        let mut body = Map::new();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::From => from = Some(map.next_value()?),
                Key::SenderId => sender_id = map.next_value()?,
                Key::Timestamp => timestamp = map.next_value()?,
                Key::Cluster => cluster = map.next_value()?,
                Key::Origin => origin = map.next_value()?,
                Key::Entries => entries = Some(map.next_value()?),
                Key::Body(name) => {
                    body.insert(name, map.next_value()?);
                }
            }
        }
        let from = from.ok_or_else(|| de::Error::missing_field("from"))?;
        if entries.is_some() {
            // Present for the body's derived code, then replaced by what was read.
            body.insert("entries".into(), Value::Array(Vec::new()));
        }
        let mut body = PeerBody::deserialize(Value::Object(body)).map_err(de::Error::custom)?;
        if let Some(read) = entries {
            match &mut body {
                PeerBody::ReplicationSync { entries, .. }
                | PeerBody::SyncResponse { entries, .. } => *entries = read,
                _ => {}
            }
        }
        Ok(PeerMessage {
            from,
            sender_id,
            timestamp,
            cluster,
            origin,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> PeerMessage {
        let entry = |seq| ChatEntry {
            message_id: format!("c:{seq}"),
            sequence_number: seq,
            client_id: "c".into(),
            username: "Ann".into(),
            content: "hi \"there\"".into(),
            timestamp: 1.5,
            delivered: true,
            epoch: 9,
        };
        PeerMessage {
            from: 3,
            sender_id: "Server 3".into(),
            timestamp: 2.5,
            cluster: "ringchat".into(),
            origin: None,
            body: PeerBody::ReplicationSync {
                epoch: 9,
                prev_seq: 4,
                prev_epoch: 9,
                entries: vec![entry(5), entry(6)],
                reset: false,
                commit: 4,
            },
        }
    }

    #[test]
    fn batches_round_trip_from_bytes_and_from_values() {
        let msg = batch();
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<PeerMessage>(&text).unwrap(), msg);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::from_value::<PeerMessage>(value).unwrap(), msg);
    }

    #[test]
    fn field_order_and_optional_envelope_fields_do_not_matter() {
        let text = r#"{"entries":[],"commit":0,"msg_type":"sync_response","epoch":2,"last_seq":7,"from":1,"origin":null}"#;
        let msg: PeerMessage = serde_json::from_str(text).unwrap();
        assert_eq!(msg.from, 1);
        assert_eq!(
            msg.body,
            PeerBody::SyncResponse {
                epoch: 2,
                entries: vec![],
                last_seq: 7
            }
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let err = |t: &str| {
            serde_json::from_str::<PeerMessage>(t)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"from":1,"msg_type":"nope"}"#).starts_with("unknown variant"));
        assert!(err(r#"{"msg_type":"heartbeat_ack","epoch":1,"nonce":1}"#).contains("from"));
        assert!(
            err(r#"{"from":1,"msg_type":"replication_sync","entries":[{"x":1}]}"#)
                .contains("missing field")
        );
        assert!(err("[1]").contains("ring message object"));
    }
}
