//! The replicated chat history with its deduplication index.

use std::collections::HashMap;

use ringchat_proto::{ChatEntry, Epoch, Seq};

/// The chat history of one server: entries `1..=last_seq`, contiguous.
///
/// The index on `(client_id, message_id)` is what makes a resent message land once, even
/// when it is resent to a different leader after a failover.
#[derive(Debug, Default, Clone)]
pub struct Log {
    entries: Vec<ChatEntry>,
    index: HashMap<(String, String), Seq>,
    bytes: usize,
}

impl Log {
    /// Sequence number of the newest entry (0 when empty).
    pub fn last_seq(&self) -> Seq {
        self.entries.len() as Seq
    }

    /// Epoch of the newest entry (0 when empty).
    pub fn last_epoch(&self) -> Epoch {
        self.entries.last().map_or(0, |e| e.epoch)
    }

    /// The entry at `seq`.
    pub fn get(&self, seq: Seq) -> Option<&ChatEntry> {
        seq.checked_sub(1)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Epoch of the entry at `seq`; 0 for `seq` 0 (the empty prefix matches everywhere).
    pub fn epoch_at(&self, seq: Seq) -> Option<Epoch> {
        if seq == 0 {
            Some(0)
        } else {
            self.get(seq).map(|e| e.epoch)
        }
    }

    /// Whether this log holds the entry `(seq, epoch)`, and so the same prefix as any log
    /// that holds it.
    pub fn matches(&self, seq: Seq, epoch: Epoch) -> bool {
        self.epoch_at(seq) == Some(epoch)
    }

    /// Where a message already stands, if it was stored before.
    pub fn find(&self, client_id: &str, message_id: &str) -> Option<Seq> {
        // The tuple key needs owned strings; lookups are rare next to appends.
        self.index
            .get(&(client_id.to_owned(), message_id.to_owned()))
            .copied()
    }

    /// Entries after `after`, at most `limit`.
    pub fn range(&self, after: Seq, limit: usize) -> &[ChatEntry] {
        let start = (after as usize).min(self.entries.len());
        let end = start.saturating_add(limit).min(self.entries.len());
        &self.entries[start..end]
    }

    /// Appends an entry whose `sequence_number` must be `last_seq + 1`.
    pub fn append(&mut self, entry: ChatEntry) {
        debug_assert_eq!(entry.sequence_number, self.last_seq() + 1);
        self.bytes += entry.heap_bytes();
        self.index.insert(
            (entry.client_id.clone(), entry.message_id.clone()),
            entry.sequence_number,
        );
        self.entries.push(entry);
    }

    /// Drops every entry after `seq`.
    pub fn truncate(&mut self, seq: Seq) {
        let keep = (seq as usize).min(self.entries.len());
        for e in self.entries.drain(keep..) {
            self.bytes -= e.heap_bytes();
            self.index.remove(&(e.client_id, e.message_id));
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the history is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes of text held (ids, names, contents).
    pub fn text_bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a batch that follows `prev_seq`, keeping entries already held and dropping a
    /// conflicting suffix. Returns false (and changes nothing) when `prev_seq` does not
    /// match, i.e. the batch does not continue this log.
    pub fn accept_batch(&mut self, prev_seq: Seq, prev_epoch: Epoch, batch: &[ChatEntry]) -> bool {
        if !self.matches(prev_seq, prev_epoch) {
            return false;
        }
        for (i, entry) in batch.iter().enumerate() {
            let seq = prev_seq + 1 + i as Seq;
            if entry.sequence_number != seq {
                return false;
            }
            match self.epoch_at(seq) {
                Some(e) if e == entry.epoch => continue,
                Some(_) => self.truncate(seq - 1),
                None => {}
            }
            self.append(entry.clone());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: Seq, epoch: Epoch, id: &str) -> ChatEntry {
        ChatEntry {
            message_id: id.into(),
            sequence_number: seq,
            client_id: "c".into(),
            username: "u".into(),
            content: "x".into(),
            timestamp: 0.0,
            delivered: true,
            epoch,
        }
    }

    #[test]
    fn batches_extend_replace_conflicts_and_refuse_gaps() {
        let mut log = Log::default();
        assert!(log.accept_batch(0, 0, &[e(1, 1, "a"), e(2, 1, "b")]));
        assert_eq!(log.find("c", "b"), Some(2));
        // Retransmission is idempotent.
        assert!(log.accept_batch(1, 1, &[e(2, 1, "b")]));
        assert_eq!(log.last_seq(), 2);
        // A gap is refused.
        assert!(!log.accept_batch(5, 1, &[e(6, 1, "z")]));
        // A conflicting suffix from a later epoch replaces ours.
        assert!(log.accept_batch(1, 1, &[e(2, 7, "q"), e(3, 7, "r")]));
        assert_eq!(log.find("c", "b"), None);
        assert_eq!(log.find("c", "r"), Some(3));
        assert_eq!(log.last_epoch(), 7);
        log.truncate(0);
        assert!(log.is_empty() && log.text_bytes() == 0);
    }
}
