//! Merging a follower whose history is not a prefix of ours: it is ahead of us (it heard
//! from an old leader what we did not), or it diverged (both sides of a partition took
//! messages). We pull its entries from the start: where they continue our history exactly
//! they are taken as they are; after the first difference, every message we do not hold
//! yet is appended in its order with a new sequence number. Then its history is replaced
//! by ours. No message acknowledged on either side is lost, none is stored twice.

use ringchat_proto::peer::PeerBody;
use ringchat_proto::{ChatEntry, NodeId, Seq};

use super::Node;
use crate::replication::FollowerState;

impl Node {
    pub(super) fn start_merge(&mut self, id: NodeId) {
        let now = self.now;
        if let Some(p) = self.followers.get_mut(&id) {
            p.begin_merge(now);
        }
        self.notice(crate::Notice::FollowerReset { id });
        self.request_merge_chunk(id, 1);
    }

    pub(super) fn request_merge_chunk(&mut self, id: NodeId, from_seq: Seq) {
        self.send(
            id,
            PeerBody::SyncRequest {
                epoch: self.epoch,
                from_seq,
                limit: self.cfg.sync_chunk_size as u64,
            },
        );
    }

    pub(super) fn on_merge_entries(
        &mut self,
        from: NodeId,
        entries: Vec<ChatEntry>,
        last_seq: Seq,
    ) {
        if !self.leads() {
            return;
        }
        let Some(p) = self.followers.get(&from) else {
            return;
        };
        if p.state != FollowerState::Merging {
            return;
        }
        let expected = p.pull_seq;
        // Its answer starts at `expected`, or later when it dropped older entries.
        let start = match entries.first() {
            Some(e) if e.sequence_number != expected && expected != 1 => {
                return; // an answer to an older request
            }
            Some(e) => e.sequence_number,
            None => expected,
        };

        let got = entries.len() as Seq;
        let mut prefix = p.merge_prefix;
        let mut diverged_at = p.diverged_at;
        // An answer from seq 1 shows that the empty prefix is common.
        let mut common = p.merge_common.or((start == 1).then_some(0));
        for e in entries {
            let seq = e.sequence_number;
            let known = self.log.find(&e.client_id, &e.message_id).is_some();
            if prefix {
                match self.log.proven_epoch(seq) {
                    // The same entry (log matching), even if we dropped ours since.
                    Some(epoch) if epoch == e.epoch => {
                        common = Some(seq);
                        continue;
                    }
                    // Below our window and older than our epoch record: it cannot be placed,
                    // and is taken as the common history we dropped (see ARCHITECTURE.md 9).
                    None if seq <= self.log.base() && e.epoch <= self.log.base_epoch() => {
                        common = Some(seq);
                        continue;
                    }
                    None if !known && seq == self.log.last_seq() + 1 => {
                        // It continues our history: take it as it is (same number, epoch).
                        self.log.append(e);
                        common = Some(seq);
                        continue;
                    }
                    _ => {
                        prefix = false;
                        diverged_at = seq;
                    }
                }
            }
            if !known {
                let seq = self.log.last_seq() + 1;
                self.log.append(ChatEntry {
                    sequence_number: seq,
                    epoch: self.epoch,
                    ..e
                });
            }
        }
        let next = start + got;
        let now = self.now;
        let Some(p) = self.followers.get_mut(&from) else {
            return;
        };
        p.merge_prefix = prefix;
        p.diverged_at = diverged_at;
        p.merge_common = common;
        if got > 0 && next <= last_seq {
            p.pull_seq = next;
            p.waiting_since = Some(now);
            return self.request_merge_chunk(from, next);
        }
        // All of its messages are ours now. Where its history is a prefix of ours it just
        // continues; otherwise it is replaced by ours, from where the two agree if that is
        // shown, else from our window's start.
        p.state = FollowerState::Syncing;
        let resume = if prefix {
            common
        } else {
            common.filter(|c| *c + 1 == diverged_at)
        };
        p.reset = resume.is_none();
        p.match_seq = resume.unwrap_or(0);
        p.next_seq = p.match_seq + 1;
        p.waiting_since = Some(now);
        if !p.reset && p.next_seq > self.log.last_seq() {
            p.state = FollowerState::Replicating;
            p.waiting_since = None;
        }
        if !prefix {
            // Clients that hold its history from where it differs hold a view that is gone.
            self.record_merge(resume.map_or(1, |c| c + 1), last_seq);
        }
        self.advance_commit();
        self.maybe_hand_off();
    }

    /// Remembers (a bounded number of) merges: a client whose `from_sequence` lies in
    /// `from..=to` may hold the merged side's history, which was renumbered.
    fn record_merge(&mut self, from: Seq, to: Seq) {
        const MAX_MERGES: usize = 16;
        if from > to {
            return;
        }
        if self.merges.len() >= MAX_MERGES {
            self.merges.pop_front();
        }
        self.merges.push_back((from, to));
        self.notice(crate::Notice::HistoriesMerged { from, to });
    }

    /// Whether a client that holds the history up to `from_sequence` may hold a side's
    /// history that a merge renumbered, so that it must drop it (`reset: true`). Histories
    /// agree below the point where they diverged; from there up to the merged side's
    /// newest entry, a view cannot be told apart from ours by its number alone, and is
    /// replaced to be safe. While a merge runs, every view beyond what is shown common so
    /// far counts as gone.
    pub fn view_invalidated(&self, from_sequence: Seq) -> bool {
        let merging = self.followers.values().any(|p| {
            p.state == FollowerState::Merging && from_sequence > p.merge_common.unwrap_or(0)
        });
        merging
            || self
                .merges
                .iter()
                .any(|(from, to)| (*from..=*to).contains(&from_sequence))
    }
}
