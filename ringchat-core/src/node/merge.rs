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
        if !self.is_serving_leader() {
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
        for e in entries {
            let seq = e.sequence_number;
            if seq <= self.log.base() {
                continue; // dropped from our window: committed long ago, taken as the same
            }
            if prefix && self.log.matches(seq, e.epoch) {
                continue; // the same entry: our histories agree so far
            }
            let known = self.log.find(&e.client_id, &e.message_id).is_some();
            if prefix && !known && seq == self.log.last_seq() + 1 {
                // It continues our history: take it as it is (same number, same epoch).
                self.log.append(e);
                continue;
            }
            if prefix {
                prefix = false;
                diverged_at = seq;
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
        if got > 0 && next <= last_seq {
            p.pull_seq = next;
            p.waiting_since = Some(now);
            return self.request_merge_chunk(from, next);
        }
        // All of its messages are ours now. Where its history is a prefix of ours it just
        // continues; otherwise it is replaced by ours.
        p.state = FollowerState::Syncing;
        p.reset = false;
        p.match_seq = if prefix {
            (start + got).saturating_sub(1)
        } else {
            // Its history agrees with ours before `diverged_at`: overwrite from there.
            diverged_at.saturating_sub(1)
        };
        p.next_seq = p.match_seq + 1;
        p.waiting_since = Some(now);
        let caught_up = !p.reset && p.next_seq > self.log.last_seq();
        if caught_up {
            p.state = FollowerState::Replicating;
            p.waiting_since = None;
        }
        self.advance_commit();
        self.maybe_hand_off();
    }
}
