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
        self.message_id.len() + self.client_id.len() + self.username.len() + self.content.len()
    }
}
