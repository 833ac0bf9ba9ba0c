//! Merging a follower whose history diverged from ours (both sides of a partition took
//! messages): we pull its entries and append, in its order and with new sequence numbers,
//! every message we do not hold yet; then its history is replaced by ours. No message
//! acknowledged on either side is lost, none is stored twice.

use ringchat_proto::peer::PeerBody;
use ringchat_proto::{ChatEntry, NodeId, Seq};

use super::Node;
use crate::replication::FollowerState;

impl Node {
    pub(super) fn start_merge(&mut self, id: NodeId) {
        let now = self.now;
        if let Some(p) = self.followers.get_mut(&id) {
            p.state = FollowerState::Merging;
            p.pull_seq = 1;
            p.waiting_since = Some(now);
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
        if entries
            .first()
            .is_some_and(|e| e.sequence_number != expected)
        {
            return; // an answer to an older request
        }
        let got = entries.len() as Seq;
        for e in entries {
            if self.log.find(&e.client_id, &e.message_id).is_none() {
                let seq = self.log.last_seq() + 1;
                self.log.append(ChatEntry {
                    sequence_number: seq,
                    epoch: self.epoch,
                    ..e
                });
            }
        }
        let next = expected + got;
        let now = self.now;
        let Some(p) = self.followers.get_mut(&from) else {
            return;
        };
        if got > 0 && next <= last_seq {
            p.pull_seq = next;
            p.waiting_since = Some(now);
            return self.request_merge_chunk(from, next);
        }
        // All of its messages are ours now: replace its history with ours.
        p.state = FollowerState::Syncing;
        p.reset = true;
        p.match_seq = 0;
        p.next_seq = 1;
        p.waiting_since = Some(now);
        self.advance_commit();
    }
}
