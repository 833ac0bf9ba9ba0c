//! Synchronous replication: the leader sends every entry to every follower and counts an
//! entry committed (broadcast and acknowledged to its client) only once every caught-up
//! follower holds it.

use ringchat_proto::peer::PeerBody;
use ringchat_proto::{ChatEntry, Epoch, NodeId, Seq};

use super::{Node, Role};
use crate::action::{ElectionTrigger, Notice};

use crate::config::ReplicationMode;
use crate::replication::FollowerState;

impl Node {
    /// Takes a batch from the leader; returns whether it was accepted (our history then
    /// agrees with the leader's up to its end).
    pub(super) fn on_replication_sync(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        prev_seq: Seq,
        prev_epoch: Epoch,
        entries: &[ChatEntry],
        reset: bool,
    ) -> bool {
        if epoch < self.epoch {
            self.stale("replication_sync");
            // Tell the old leader there is a newer epoch, so that it steps down.
            self.send(from, self.state_report(false));
            return false;
        }
        if epoch == self.epoch && self.role == Role::Leader {
            return false;
        }
        if epoch > self.epoch || !self.is_follower_of(from) {
            let Some(leader) = self.ring.get(from).cloned() else {
                return false;
            };
            self.adopt_leader(epoch, leader);
        }
        self.leader_contact = self.now;
        if reset {
            // The leader no longer holds what we would need: take its retained window. Only
            // entries beyond the window's start mean our history really diverged.
            if self.log.last_seq() > prev_seq {
                self.notice(Notice::HistoryReset);
            }
            self.log.reset_to(prev_seq, prev_epoch);
        }
        let ok = self.log.accept_batch(prev_seq, prev_epoch, entries);
        self.awaiting_merge &= !ok;
        self.send(from, self.state_report(ok));
        ok
    }

    fn state_report(&self, ok: bool) -> PeerBody {
        PeerBody::ReplicationAck {
            epoch: self.epoch,
            last_seq: self.log.last_seq(),
            last_epoch: self.log.last_epoch(),
            ok,
            draining: self.draining,
        }
    }

    pub(super) fn on_replication_ack(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        last_seq: Seq,
        last_epoch: Epoch,
        ok: bool,
    ) {
        if epoch > self.epoch {
            if self.role == Role::Leader && from < self.me.id {
                // A lower server in a newer epoch refused our batch: it was cut off and led
                // alone (or we were paused). We outrank it; stepping down would hand our
                // clients to it before it merged our history.
                return self.outrank_newer_epoch(epoch);
            }
            // A newer round exists somewhere: stop leading and find it.
            if self.role != Role::Follower || self.leader.is_some() {
                self.epoch = epoch;
                self.become_leaderless();
            }
            return;
        }
        if self.role != Role::Leader || epoch < self.epoch {
            return;
        }
        let now = self.now;
        let my_last = self.log.last_seq();
        let Some(p) = self.followers.get_mut(&from) else {
            return;
        };
        p.last_ack = now;
        if p.state == FollowerState::Probing {
            p.reported_last = last_seq;
            p.reported_epoch = last_epoch;
            p.state = FollowerState::Reported;
            return self.check_recovery();
        }
        if !p.receives_entries() {
            return;
        }
        if ok {
            p.match_seq = p.match_seq.max(last_seq.min(my_last));
        } else if last_seq <= my_last && self.log.matches(last_seq, last_epoch) {
            p.match_seq = last_seq;
            p.next_seq = last_seq + 1;
        } else {
            // It diverged under us (cannot happen within one epoch, but be safe): merge.
            p.reported_last = last_seq;
            p.reported_epoch = last_epoch;
            return self.start_merge(from);
        }
        p.waiting_since = (p.match_seq < p.next_seq.saturating_sub(1) || p.reset).then_some(now);
        if p.state == FollowerState::Syncing && !p.reset && p.next_seq > my_last {
            p.state = FollowerState::Replicating;
        }
        self.advance_commit();
        if from > self.me.id || self.draining {
            self.maybe_hand_off();
        }
    }

    /// Sends each follower what it lacks, within its in-flight window.
    pub(super) fn pump_replication(&mut self) {
        let last = self.log.last_seq();
        let base = self.log.base();
        let chunk = self.cfg.sync_chunk_size.max(1) as u64;
        let window = self.cfg.max_inflight_entries.max(chunk);
        let ids: Vec<NodeId> = self.followers.keys().copied().collect();
        for id in ids {
            while let Some(p) = self.followers.get_mut(&id) {
                if !p.receives_entries() {
                    break;
                }
                if p.reset || p.next_seq <= base {
                    // What it needs is gone from our window: send the window from its start.
                    p.reset = true;
                    p.next_seq = base + 1;
                }
                let inflight = p.next_seq.saturating_sub(1).saturating_sub(p.match_seq);
                let reset = p.reset;
                if !(reset || (p.next_seq <= last && inflight < window)) {
                    break;
                }
                let prev_seq = p.next_seq - 1;
                let n = chunk
                    .min(last + 1 - p.next_seq)
                    .min(window - inflight.min(window));
                p.next_seq += n;
                p.reset = false;
                if p.waiting_since.is_none() {
                    p.waiting_since = Some(self.now);
                }
                let body = PeerBody::ReplicationSync {
                    epoch: self.epoch,
                    prev_seq,
                    prev_epoch: self.log.epoch_at(prev_seq).unwrap_or(0),
                    entries: self.log.range(prev_seq, n as usize).to_vec(),
                    reset,
                    commit: self.commit_seq,
                };
                self.send(id, body);
                if n == 0 {
                    break;
                }
            }
        }
    }

    /// Moves the commit point to the highest entry every caught-up follower holds (and, in
    /// quorum mode, a majority of the configured ring).
    pub(super) fn advance_commit(&mut self) {
        if !self.leads() {
            return;
        }
        let mut commit = self.log.last_seq();
        for id in self.replicating_ids().collect::<Vec<_>>() {
            if let Some(p) = self.followers.get(&id) {
                commit = commit.min(p.match_seq);
            }
        }
        if let ReplicationMode::Quorum { cluster_size } = self.cfg.mode {
            commit = commit.min(self.quorum_commit(cluster_size));
        }
        self.commit_seq = self.commit_seq.max(commit);
    }

    /// The highest entry a majority stores that may be counted as committed. As in Raft,
    /// only an entry of our own epoch is counted (older ones commit with it): an older
    /// entry on a majority may still be replaced by a leader whose history ends in a newer
    /// epoch. An entry every configured server stores cannot be replaced, whatever its
    /// epoch: that lets a new leader acknowledge what it adopted without a new message.
    fn quorum_commit(&self, cluster_size: usize) -> Seq {
        let majority = cluster_size / 2 + 1;
        let mut stored: Vec<Seq> = self
            .followers
            .values()
            .filter(|p| p.receives_entries())
            .map(|p| p.match_seq)
            .collect();
        stored.push(self.log.last_seq());
        stored.sort_unstable_by(|a, b| b.cmp(a));
        let counted = stored
            .get(majority - 1)
            .copied()
            .filter(|seq| self.log.epoch_at(*seq) == Some(self.epoch))
            .unwrap_or(0);
        let everywhere = if stored.len() >= cluster_size {
            stored.last().copied().unwrap_or(0)
        } else {
            0
        };
        counted.max(everywhere)
    }

    /// A caught-up member outranks us: let the ring elect it (the seed's rule that the
    /// highest id leads), now that it holds the whole history.
    pub(super) fn maybe_hand_off(&mut self) {
        if self.role != Role::Leader || self.recovery.is_some() {
            return;
        }
        // Only to a server (nearly) caught up, so that its recovery pulls little.
        let last = self.log.last_seq();
        let slack = self.cfg.sync_chunk_size as Seq;
        if self.draining {
            // Drained while alone, we still lead: give way to the first caught-up server
            // that is not drained.
            let replacement = self.followers.values().any(|p| {
                p.state == FollowerState::Replicating && !p.draining && p.match_seq + slack >= last
            });
            if replacement {
                self.start_election(ElectionTrigger::Requested);
            }
            return;
        }
        if let Some(higher) = self.outranked_by()
            && self.followers.get(&higher).is_some_and(|p| {
                p.state == FollowerState::Replicating && !p.draining && p.match_seq + slack >= last
            })
        {
            self.start_election(ElectionTrigger::HigherId);
        }
    }
}
