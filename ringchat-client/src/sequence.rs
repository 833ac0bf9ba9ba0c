//! Puts chat entries into the global order before anyone sees them.
//!
//! Entries arrive from history answers and broadcasts, across reconnects, so some are
//! duplicates and some come early (after a gap). This tracker releases each sequence number
//! once, ascending and without holes, holding early entries back until the gap is filled.

use std::collections::BTreeMap;

use ringchat_proto::{ChatEntry, Seq};

/// The highest sequence number released, and entries that arrived ahead of a gap.
#[derive(Debug, Default)]
pub struct SeqTracker {
    last: Option<Seq>,
    ahead: BTreeMap<Seq, ChatEntry>,
}

impl SeqTracker {
    /// The last sequence number released; `None` before the first history answer.
    pub fn last(&self) -> Option<Seq> {
        self.last
    }

    /// Starts over after `base` (the first history answer, or one with `reset`): entries
    /// up to `base` are taken as known, buffered ones after it are released if contiguous.
    pub fn rebase(&mut self, base: Seq, out: &mut Vec<ChatEntry>) {
        self.last = Some(base);
        self.ahead = self.ahead.split_off(&(base + 1));
        self.release(out);
    }

    /// Takes one entry; appends to `out` every entry that is now in order.
    pub fn offer(&mut self, entry: ChatEntry, out: &mut Vec<ChatEntry>) {
        if self.last.is_some_and(|last| entry.sequence_number <= last) {
            return; // seen already: a duplicate after a reconnect
        }
        self.ahead.entry(entry.sequence_number).or_insert(entry);
        self.release(out);
    }

    /// The missing range `(first, last)` when entries wait behind a gap.
    pub fn gap(&self) -> Option<(Seq, Seq)> {
        let last = self.last?;
        let (&next, _) = self.ahead.first_key_value()?;
        Some((last + 1, next - 1))
    }

    /// Gives up on the gap (the server no longer has those entries) and releases what waits.
    pub fn skip_gap(&mut self, out: &mut Vec<ChatEntry>) {
        if let Some((_, end)) = self.gap() {
            self.last = Some(end);
            self.release(out);
        }
    }

    /// Forgets entries held ahead of a gap: a new connection's history brings them again.
    pub fn drop_ahead(&mut self) {
        self.ahead.clear();
    }

    fn release(&mut self, out: &mut Vec<ChatEntry>) {
        let Some(mut last) = self.last else { return };
        while let Some(entry) = self.ahead.remove(&(last + 1)) {
            last += 1;
            out.push(entry);
        }
        self.last = Some(last);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(seq: Seq) -> ChatEntry {
        ChatEntry {
            message_id: format!("c:{seq}"),
            sequence_number: seq,
            client_id: "c".into(),
            username: "Alice".into(),
            content: format!("message {seq}"),
            timestamp: 1_764_097_426.0,
            delivered: true,
            epoch: 1,
        }
    }

    fn seqs(out: &[ChatEntry]) -> Vec<Seq> {
        out.iter().map(|e| e.sequence_number).collect()
    }

    #[test]
    fn nothing_is_released_before_a_base() {
        let mut t = SeqTracker::default();
        let mut out = Vec::new();
        t.offer(entry(5), &mut out);
        assert!(out.is_empty() && t.last().is_none() && t.gap().is_none());
        t.rebase(4, &mut out);
        assert_eq!(seqs(&out), [5]);
        assert_eq!(t.last(), Some(5));
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut t = SeqTracker::default();
        let mut out = Vec::new();
        t.rebase(0, &mut out);
        for seq in [1, 2, 1, 2, 3, 3] {
            t.offer(entry(seq), &mut out);
        }
        assert_eq!(seqs(&out), [1, 2, 3]);
    }

    #[test]
    fn a_gap_holds_later_entries_until_filled() {
        let mut t = SeqTracker::default();
        let mut out = Vec::new();
        t.rebase(1, &mut out);
        t.offer(entry(4), &mut out);
        t.offer(entry(5), &mut out);
        assert!(out.is_empty());
        assert_eq!(t.gap(), Some((2, 3)));
        t.offer(entry(3), &mut out);
        assert!(out.is_empty());
        assert_eq!(t.gap(), Some((2, 2)));
        t.offer(entry(2), &mut out);
        assert_eq!(seqs(&out), [2, 3, 4, 5]);
        assert_eq!(t.gap(), None);
        assert_eq!(t.last(), Some(5));
    }

    #[test]
    fn skipping_a_gap_releases_what_waits() {
        let mut t = SeqTracker::default();
        let mut out = Vec::new();
        t.rebase(1, &mut out);
        t.offer(entry(7), &mut out);
        t.offer(entry(8), &mut out);
        t.skip_gap(&mut out);
        assert_eq!(seqs(&out), [7, 8]);
        assert_eq!(t.gap(), None);
    }

    #[test]
    fn rebase_drops_held_entries_it_covers() {
        let mut t = SeqTracker::default();
        let mut out = Vec::new();
        t.rebase(0, &mut out);
        t.offer(entry(3), &mut out);
        t.offer(entry(6), &mut out);
        t.rebase(4, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.gap(), Some((5, 5)));
        t.drop_ahead();
        assert_eq!(t.gap(), None);
    }
}
