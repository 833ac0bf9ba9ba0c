//! The messages sent but not yet acknowledged, in the order they were typed.
//!
//! Each keeps its encoded frame, so a resend after a reconnect carries the original
//! `message_id` (the server deduplicates on it) and the queue replays in the original order.
//! The bound (`--max-pending`) is enforced before a message gets here, by the slots of
//! [`crate::connection::Client`], because only the input side can wait or refuse.

use std::collections::VecDeque;

use bytes::Bytes;

/// Unacknowledged messages, oldest first.
#[derive(Debug, Default)]
pub struct PendingQueue {
    entries: VecDeque<(String, Bytes)>,
}

impl PendingQueue {
    /// Appends a message with its frame.
    pub fn push(&mut self, message_id: String, frame: Bytes) {
        self.entries.push_back((message_id, frame));
    }

    /// Removes an acknowledged or refused message; false when it was not pending (a
    /// duplicate acknowledgement after a resend).
    pub fn remove(&mut self, message_id: &str) -> bool {
        // Acknowledgements come in sending order, so the search usually stops at the front.
        match self.entries.iter().position(|(id, _)| id == message_id) {
            Some(i) => self.entries.remove(i).is_some(),
            None => false,
        }
    }

    /// The frame of a pending message.
    pub fn frame(&self, message_id: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .find(|(id, _)| id == message_id)
            .map(|(_, frame)| frame)
    }

    /// Every pending frame, oldest first: what a new connection resends.
    pub fn frames(&self) -> impl Iterator<Item = &Bytes> {
        self.entries.iter().map(|(_, frame)| frame)
    }

    /// How many messages wait for an acknowledgement.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(ids: &[&str]) -> PendingQueue {
        let mut q = PendingQueue::default();
        for id in ids {
            q.push(id.to_string(), Bytes::from(id.to_string()));
        }
        q
    }

    fn frames(q: &PendingQueue) -> Vec<&[u8]> {
        q.frames().map(|f| &f[..]).collect()
    }

    #[test]
    fn resend_keeps_the_original_order() {
        let q = queue(&["c:1", "c:2", "c:3"]);
        assert_eq!(frames(&q), [&b"c:1"[..], b"c:2", b"c:3"]);
    }

    #[test]
    fn acknowledgements_remove_once_in_any_order() {
        let mut q = queue(&["c:1", "c:2", "c:3"]);
        assert!(q.remove("c:2"));
        assert!(!q.remove("c:2"), "a duplicate ack finds nothing");
        assert!(!q.remove("other:1"));
        assert_eq!(frames(&q), [&b"c:1"[..], b"c:3"]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.frame("c:3").map(|f| &f[..]), Some(&b"c:3"[..]));
        assert!(q.frame("c:2").is_none());
        assert!(q.remove("c:1") && q.remove("c:3"));
        assert_eq!(q.len(), 0);
    }
}
