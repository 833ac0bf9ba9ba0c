//! The replicated chat history with its deduplication index.

mod index;
mod stored;

use ringchat_proto::{ChatEntry, ChatEntryRef, Epoch, Seq};
use serde::ser::{Serialize, Serializer};

use index::DedupIndex;
use stored::{Senders, Stored};

/// The chat history of one server: entries `base+1..=last_seq`, contiguous.
///
/// Entries up to `base` were dropped by the retention limit (only committed ones ever are);
/// `base` keeps its epoch so that a batch following it can still be checked. The index on
/// `(client_id, message_id)` is what makes a resent message land once, even when it is
/// resent to a different leader after a failover; it covers the retained entries.
///
/// Without a retention limit the history grows with every message, so an entry is held
/// compactly (see [`stored`]) and handed out borrowed, as a [`ChatEntryRef`].
#[derive(Debug, Default)]
pub struct Log {
    entries: Vec<Stored>,
    base: Seq,
    base_epoch: Epoch,
    index: DedupIndex,
    senders: Senders,
    bytes: usize,
    /// Where each epoch's entries start, `(first_seq, epoch)` ascending, back to
    /// `runs_from`. Trimming keeps them (a few bytes per election), so that a merge can
    /// still tell whether an entry numbered below the window is ours: by the log matching
    /// rule, equal `(seq, epoch)` means the same entry and the same history before it.
    runs: Vec<(Seq, Epoch)>,
    /// The first seq the runs cover (a reset window starts after its base).
    runs_from: Seq,
}

/// Epoch runs kept at most; beyond that the oldest are forgotten.
const MAX_EPOCH_RUNS: usize = 4096;

/// Consecutive entries of a [`Log`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Entries<'a> {
    first: Seq,
    stored: &'a [Stored],
}

impl<'a> Entries<'a> {
    /// The entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ChatEntryRef<'a>> + 'a {
        let (first, stored) = (self.first, self.stored);
        stored
            .iter()
            .enumerate()
            .map(move |(i, s)| s.view(first + i as Seq))
    }

    /// Owned copies, for a message that carries them.
    pub fn to_vec(&self) -> Vec<ChatEntry> {
        self.iter().map(|e| e.to_entry()).collect()
    }

    /// The first entry.
    pub fn first(&self) -> Option<ChatEntryRef<'a>> {
        self.iter().next()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }
}

/// A JSON array of entries, as the admin socket answers.
impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
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
    pub fn get(&self, seq: Seq) -> Option<ChatEntryRef<'_>> {
        self.stored(seq).map(|s| s.view(seq))
    }

    fn stored(&self, seq: Seq) -> Option<&Stored> {
        seq.checked_sub(self.base + 1)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Epoch of the entry at `seq`; 0 for `seq` 0 (the empty prefix matches everywhere),
    /// and the dropped base entry's epoch for `base`.
    pub fn epoch_at(&self, seq: Seq) -> Option<Epoch> {
        if seq == self.base {
            Some(self.base_epoch)
        } else {
            self.stored(seq).map(|e| e.epoch)
        }
    }

    /// Epoch of the entry this log holds or held at `seq`, dropped entries included, when
    /// it still knows it (`None`: beyond the log, or before what its epoch record covers).
    pub fn proven_epoch(&self, seq: Seq) -> Option<Epoch> {
        if seq == 0 || seq >= self.base {
            return self.epoch_at(seq);
        }
        if seq < self.runs_from.max(1) {
            return None;
        }
        let i = self.runs.partition_point(|(first, _)| *first <= seq);
        i.checked_sub(1).map(|i| self.runs[i].1)
    }

    /// Epoch of the newest dropped entry (0: nothing was dropped).
    pub fn base_epoch(&self) -> Epoch {
        self.base_epoch
    }

    /// Whether this log holds the entry `(seq, epoch)`, and so the same prefix as any log
    /// that holds it.
    pub fn matches(&self, seq: Seq, epoch: Epoch) -> bool {
        self.epoch_at(seq) == Some(epoch)
    }

    /// Where a message already stands, if it was stored before.
    pub fn find(&self, client_id: &str, message_id: &str) -> Option<Seq> {
        self.index.find(client_id, message_id, |seq| {
            self.stored(seq)
                .is_some_and(|s| s.is(client_id, message_id))
        })
    }

    /// Entries after `after` (or after `base`, if that is later), at most `limit`.
    pub fn range(&self, after: Seq, limit: usize) -> Entries<'_> {
        let start = (after.saturating_sub(self.base) as usize).min(self.entries.len());
        let end = start.saturating_add(limit).min(self.entries.len());
        Entries {
            first: self.base + start as Seq + 1,
            stored: &self.entries[start..end],
        }
    }

    /// Appends an entry whose `sequence_number` must be `last_seq + 1`.
    pub fn append(&mut self, entry: ChatEntry) {
        let stored = self.senders.store(entry);
        self.push(stored);
    }

    fn push(&mut self, stored: Stored) {
        let seq = self.last_seq() + 1;
        let e = stored.view(seq);
        self.bytes += e.heap_bytes();
        let (entries, base) = (&self.entries, self.base);
        self.index.insert(e.client_id, e.message_id, seq, |other| {
            other
                .checked_sub(base + 1)
                .and_then(|i| entries.get(i as usize))
                .is_some_and(|s| s.is(e.client_id, e.message_id))
        });
        if self
            .runs
            .last()
            .is_none_or(|(_, epoch)| *epoch != stored.epoch)
        {
            if self.runs.len() >= MAX_EPOCH_RUNS {
                self.runs.remove(0);
                self.runs_from = self.runs.first().map_or(seq, |r| r.0);
            }
            self.runs.push((seq, stored.epoch));
        }
        self.entries.push(stored);
    }

    /// Unindexes the entries at `from..to` (indices into `entries`) before they go.
    fn forget(&mut self, from: usize, to: usize) {
        let first = self.base + from as Seq + 1;
        for (i, s) in self.entries[from..to].iter().enumerate() {
            let e = s.view(first + i as Seq);
            self.bytes -= e.heap_bytes();
            self.index
                .remove(e.client_id, e.message_id, e.sequence_number);
            self.senders.release(s);
        }
    }

    /// Drops every entry after `seq`.
    pub fn truncate(&mut self, seq: Seq) {
        let keep = (seq.saturating_sub(self.base) as usize).min(self.entries.len());
        self.forget(keep, self.entries.len());
        self.entries.truncate(keep);
        let last = self.last_seq();
        while self.runs.last().is_some_and(|(first, _)| *first > last) {
            self.runs.pop();
        }
    }

    /// Forgets everything and continues after `base` (whose epoch is `base_epoch`): a
    /// follower takes a leader's retained window this way.
    pub fn reset_to(&mut self, base: Seq, base_epoch: Epoch) {
        self.truncate(self.base);
        self.base = base;
        self.base_epoch = base_epoch;
        self.runs.clear();
        self.runs_from = base + 1;
    }

    /// Gives every entry after `after` the epoch `epoch`, which must be newer than every
    /// epoch held: a new leader in quorum mode re-issues what it cannot know to be
    /// committed, so that a majority may count it (Raft commits by counting only entries
    /// of the leader's own term).
    pub fn restamp(&mut self, after: Seq, epoch: Epoch) {
        let start = (after.saturating_sub(self.base) as usize).min(self.entries.len());
        let first = self.base + start as Seq + 1;
        if start == self.entries.len() {
            return;
        }
        for s in &mut self.entries[start..] {
            s.epoch = epoch;
        }
        while self.runs.last().is_some_and(|(f, _)| *f >= first) {
            self.runs.pop();
        }
        if self.runs.last().is_none_or(|(_, e)| *e != epoch) {
            self.runs.push((first, epoch));
        }
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
        self.forget(0, n);
        self.base_epoch = self.entries[n - 1].epoch;
        self.base += n as Seq;
        self.entries.drain(..n);
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
            let stored = self.senders.store_copy(entry.borrowed());
            self.push(stored);
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
        assert_eq!(log.senders.len(), 1, "one sender, held once");
        assert_eq!((log.find("c", "a"), log.find("c", "b")), (Some(1), Some(2)));
        assert_eq!(log.find("c", "z"), None);
        log.truncate(1);
        assert_eq!((log.find("c", "a"), log.find("c", "b")), (Some(1), None));
        assert!(log.index.overflow.is_empty());
        log.truncate(0);
        assert_eq!(log.find("c", "a"), None);
        assert_eq!(log.senders.len(), 0, "a sender goes with its last entry");
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
        assert_eq!(
            log.proven_epoch(4),
            Some(3),
            "dropped entries keep their epoch"
        );
        assert_eq!(log.proven_epoch(21), Some(4));
        assert_eq!(log.proven_epoch(22), None);
        log.restamp(19, 6);
        assert_eq!(
            (log.proven_epoch(19), log.proven_epoch(20), log.last_epoch()),
            (Some(3), Some(6), 6)
        );
        log.reset_to(30, 9);
        assert_eq!(
            log.proven_epoch(12),
            None,
            "a reset window proves nothing before it"
        );
        assert_eq!(log.proven_epoch(30), Some(9));
        assert_eq!((log.last_seq(), log.last_epoch(), log.len()), (30, 9, 0));
        assert!(log.accept_batch(30, 9, &[e(31, 9, "x")]));
    }
}
