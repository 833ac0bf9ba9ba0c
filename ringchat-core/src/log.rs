//! The replicated chat history with its deduplication index.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use ringchat_proto::{ChatEntry, Epoch, Seq};

/// The chat history of one server: entries `base+1..=last_seq`, contiguous.
///
/// Entries up to `base` were dropped by the retention limit (only committed ones ever are);
/// `base` keeps its epoch so that a batch following it can still be checked. The index on
/// `(client_id, message_id)` is what makes a resent message land once, even when it is
/// resent to a different leader after a failover; it covers the retained entries.
#[derive(Debug, Default, Clone)]
pub struct Log {
    entries: Vec<ChatEntry>,
    base: Seq,
    base_epoch: Epoch,
    index: DedupIndex,
    bytes: usize,
}

/// `(client_id, message_id)` -> sequence number, kept small because it holds one slot per
/// stored message: a slot is the key's 64-bit hash and the sequence number (16 bytes),
/// and the ids themselves are read from the entry the slot points to, so a lookup that
/// lands on another key's slot is told apart. A key whose hash slot is taken by another
/// key goes to `overflow` with its ids. The hash is keyed per process (SipHash with random
/// keys), so clients cannot choose ids that collide on purpose; by chance, a collision
/// happens about once in 2^64 / n lookups.
#[derive(Debug, Default, Clone)]
struct DedupIndex {
    slots: HashMap<u64, Seq, BuildHasherDefault<PreHashed>>,
    overflow: HashMap<String, HashMap<String, Seq>>,
    keys: RandomState,
}

/// The index's keys are hashes already: the table uses them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl DedupIndex {
    fn hash(&self, client_id: &str, message_id: &str) -> u64 {
        self.keys.hash_one((client_id, message_id))
    }

    /// Where the key stands; `entry_at` reads the entry a slot points to.
    fn find<'a>(
        &self,
        client_id: &str,
        message_id: &str,
        entry_at: impl Fn(Seq) -> Option<&'a ChatEntry>,
    ) -> Option<Seq> {
        let h = self.hash(client_id, message_id);
        if let Some(&seq) = self.slots.get(&h)
            && entry_at(seq).is_some_and(|e| e.client_id == client_id && e.message_id == message_id)
        {
            return Some(seq);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(client_id)?.get(message_id).copied()
    }

    /// Indexes `e`; `entry_at` reads the entry a taken slot points to.
    fn insert<'a>(&mut self, e: &ChatEntry, entry_at: impl Fn(Seq) -> Option<&'a ChatEntry>) {
        let h = self.hash(&e.client_id, &e.message_id);
        let seq = e.sequence_number;
        match self.slots.get(&h).copied() {
            Some(other)
                if entry_at(other).is_some_and(|o| {
                    o.client_id != e.client_id || o.message_id != e.message_id
                }) =>
            {
                self.overflow
                    .entry(e.client_id.clone())
                    .or_default()
                    .insert(e.message_id.clone(), seq);
            }
            _ => {
                self.slots.insert(h, seq);
            }
        }
    }

    /// Forgets `e` (if the index still points to it).
    fn remove(&mut self, e: &ChatEntry) {
        let h = self.hash(&e.client_id, &e.message_id);
        if self.slots.get(&h) == Some(&e.sequence_number) {
            self.slots.remove(&h);
        } else if let Some(ids) = self.overflow.get_mut(&e.client_id) {
            if ids.get(&e.message_id) == Some(&e.sequence_number) {
                ids.remove(&e.message_id);
            }
            if ids.is_empty() {
                self.overflow.remove(&e.client_id);
            }
        }
    }
}

/// The entry at `seq` in `entries`, which follow `base`.
fn entry_at(entries: &[ChatEntry], base: Seq, seq: Seq) -> Option<&ChatEntry> {
    seq.checked_sub(base + 1)
        .and_then(|i| entries.get(i as usize))
}

impl Log {
    /// Sequence number of the newest entry (0 when empty).
    pub fn last_seq(&self) -> Seq {
        self.base + self.entries.len() as Seq
    }

    /// Epoch of the newest entry (0 when empty).
    pub fn last_epoch(&self) -> Epoch {
        self.entries.last().map_or(self.base_epoch, |e| e.epoch)
    }

    /// The newest entry no longer held (0: nothing was dropped).
    pub fn base(&self) -> Seq {
        self.base
    }

    /// The entry at `seq`, if held.
    pub fn get(&self, seq: Seq) -> Option<&ChatEntry> {
        entry_at(&self.entries, self.base, seq)
    }

    /// Epoch of the entry at `seq`; 0 for `seq` 0 (the empty prefix matches everywhere),
    /// and the dropped base entry's epoch for `base`.
    pub fn epoch_at(&self, seq: Seq) -> Option<Epoch> {
        if seq == self.base {
            Some(self.base_epoch)
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
        self.index.find(client_id, message_id, |seq| self.get(seq))
    }

    /// Entries after `after` (or after `base`, if that is later), at most `limit`.
    pub fn range(&self, after: Seq, limit: usize) -> &[ChatEntry] {
        let start = (after.saturating_sub(self.base) as usize).min(self.entries.len());
        let end = start.saturating_add(limit).min(self.entries.len());
        &self.entries[start..end]
    }

    /// Appends an entry whose `sequence_number` must be `last_seq + 1`.
    pub fn append(&mut self, entry: ChatEntry) {
        debug_assert_eq!(entry.sequence_number, self.last_seq() + 1);
        self.bytes += entry.heap_bytes();
        let (entries, base) = (&self.entries, self.base);
        self.index
            .insert(&entry, |seq| entry_at(entries, base, seq));
        self.entries.push(entry);
    }

    /// Drops every entry after `seq`.
    pub fn truncate(&mut self, seq: Seq) {
        let keep = (seq.saturating_sub(self.base) as usize).min(self.entries.len());
        for e in self.entries.drain(keep..) {
            self.bytes -= e.heap_bytes();
            self.index.remove(&e);
        }
    }

    /// Forgets everything and continues after `base` (whose epoch is `base_epoch`): a
    /// follower takes a leader's retained window this way.
    pub fn reset_to(&mut self, base: Seq, base_epoch: Epoch) {
        self.truncate(self.base);
        self.base = base;
        self.base_epoch = base_epoch;
    }

    /// Keeps at most about `keep` entries (0: all), dropping the oldest ones up to `upto`
    /// (never an entry that is not committed). Drops in steps of an eighth, so that the
    /// cost of moving the window is spread.
    pub fn trim(&mut self, keep: usize, upto: Seq) {
        if keep == 0 || self.entries.len() <= keep + keep / 8 {
            return;
        }
        let excess = self.entries.len() - keep;
        let n = excess.min(upto.saturating_sub(self.base) as usize);
        if n == 0 {
            return;
        }
        for e in self.entries.drain(..n) {
            self.bytes -= e.heap_bytes();
            self.index.remove(&e);
            self.base = e.sequence_number;
            self.base_epoch = e.epoch;
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

    #[test]
    fn keys_sharing_a_hash_slot_are_told_apart() {
        let mut log = Log::default();
        log.append(e(1, 1, "a"));
        // Make "b" collide with "a": its hash slot already points to "a"'s entry.
        let h = log.index.hash("c", "b");
        log.index.slots.insert(h, 1);
        log.append(e(2, 1, "b"));
        assert_eq!(log.index.overflow.len(), 1, "b went to the overflow");
        assert_eq!((log.find("c", "a"), log.find("c", "b")), (Some(1), Some(2)));
        assert_eq!(log.find("c", "z"), None);
        log.truncate(1);
        assert_eq!((log.find("c", "a"), log.find("c", "b")), (Some(1), None));
        assert!(log.index.overflow.is_empty());
        log.truncate(0);
        assert_eq!(log.find("c", "a"), None);
    }

    #[test]
    fn retention_keeps_a_checkable_window() {
        let mut log = Log::default();
        let batch: Vec<ChatEntry> = (1..=20).map(|s| e(s, 3, &format!("m{s}"))).collect();
        assert!(log.accept_batch(0, 0, &batch));
        log.trim(8, 5); // only committed entries go: up to 5
        assert_eq!((log.base(), log.last_seq(), log.len()), (5, 20, 15));
        log.trim(8, 20);
        assert_eq!((log.base(), log.last_seq(), log.len()), (12, 20, 8));
        assert!(log.get(12).is_none() && log.get(13).is_some());
        assert_eq!(log.find("c", "m3"), None, "the index covers the window");
        assert!(
            log.matches(12, 3),
            "a batch may follow the dropped base entry"
        );
        assert_eq!(
            log.range(0, 100).first().map(|e| e.sequence_number),
            Some(13)
        );
        assert!(log.accept_batch(20, 3, &[e(21, 4, "n")]));
        log.reset_to(30, 9);
        assert_eq!((log.last_seq(), log.last_epoch(), log.len()), (30, 9, 0));
        assert!(log.accept_batch(30, 9, &[e(31, 9, "x")]));
    }
}
