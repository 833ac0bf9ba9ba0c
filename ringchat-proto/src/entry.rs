//! The chat entry: one stored message, identical on every server and in every client view.

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, Seq};

/// One message of the replicated history (PROTOCOL.md, "A chat entry").
///
/// `(sequence_number, epoch)` identifies an entry across servers: only one leader exists
/// per epoch and it assigns each sequence number once, so two logs that agree on it agree
/// on everything before it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatEntry {
    /// Unique per client; with `client_id` the deduplication key.
    pub message_id: String,
    /// Position in the global order, from 1, never reused.
    pub sequence_number: Seq,
    /// The sending client.
    pub client_id: String,
    /// Display name at the time of sending.
    pub username: String,
    /// The text.
    pub content: String,
    /// When the leader accepted it (seconds since the Unix epoch).
    pub timestamp: f64,
    /// Always true: only replicated entries are ever shown to clients.
    #[serde(default = "yes")]
    pub delivered: bool,
    /// Epoch of the leader that assigned the sequence number.
    pub epoch: Epoch,
}

fn yes() -> bool {
    true
}

impl ChatEntry {
    /// Bytes this entry holds in memory beyond the struct itself, for the history-size gauge.
    pub fn heap_bytes(&self) -> usize {
        self.borrowed().heap_bytes()
    }

    /// The same entry, borrowed.
    pub fn borrowed(&self) -> ChatEntryRef<'_> {
        ChatEntryRef {
            message_id: &self.message_id,
            sequence_number: self.sequence_number,
            client_id: &self.client_id,
            username: &self.username,
            content: &self.content,
            timestamp: self.timestamp,
            delivered: self.delivered,
            epoch: self.epoch,
        }
    }
}

/// A [`ChatEntry`] whose strings are borrowed: how a history that stores its entries
/// compactly hands them out, and it serializes to the same JSON (tested) without copying.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct ChatEntryRef<'a> {
    pub message_id: &'a str,
    pub sequence_number: Seq,
    pub client_id: &'a str,
    pub username: &'a str,
    pub content: &'a str,
    pub timestamp: f64,
    pub delivered: bool,
    pub epoch: Epoch,
}

impl ChatEntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> ChatEntry {
        ChatEntry {
            message_id: self.message_id.into(),
            sequence_number: self.sequence_number,
            client_id: self.client_id.into(),
            username: self.username.into(),
            content: self.content.into(),
            timestamp: self.timestamp,
            delivered: self.delivered,
            epoch: self.epoch,
        }
    }

    /// Bytes of text the entry holds (ids, name, content), for the history-size gauge.
    pub fn heap_bytes(&self) -> usize {
        self.message_id.len() + self.client_id.len() + self.username.len() + self.content.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_entry_is_the_same_json() {
        let e = ChatEntry {
            message_id: "k3f9a:1".into(),
            sequence_number: 1,
            client_id: "k3f9a".into(),
            username: "Alice".into(),
            content: "Hallo \"zusammen\"!".into(),
            timestamp: 1764097426.25,
            delivered: true,
            epoch: 2,
        };
        assert_eq!(
            serde_json::to_string(&e.borrowed()).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
        assert_eq!(e.borrowed().to_entry(), e);
    }
}
