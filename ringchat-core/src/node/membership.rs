//! Who is in the ring. The leader owns the membership and sends every change to every
//! member (`ring_update`), so a failure is known to all servers, not only its neighbours.

use ringchat_proto::peer::{NodeInfo, PeerBody};
use ringchat_proto::{Epoch, NodeId, Seq};

use super::{Node, Role};
use crate::Millis;

/// How often a leader asks static peers outside its ring whether they lead elsewhere.
const SEED_PROBE_INTERVAL: Millis = 2_000;
use crate::action::{ElectionTrigger, Notice};
use crate::replication::{FollowerProgress, FollowerState};

impl Node {
    /// A server without a leader keeps asking its static peers and every server it heard
    /// of to let it in; those that know the leader send it there. A leader keeps asking
    /// the static peers outside its ring (rarely): after a partition heals, that is how two
    /// rings without multicast find each other.
    pub(super) fn tick_membership(&mut self) {
        if self.role == Role::Leader {
            return self.probe_outside_seeds();
        }
        // A candidate asks too: a round that found no leader in time may have missed a
        // ring that exists next door.
        if self.leader.is_some() {
            return;
        }
        let due = self
            .last_join_probe
            .is_none_or(|t| self.now.saturating_sub(t) >= self.cfg.startup_grace / 2);
        if !due {
            return;
        }
        self.last_join_probe = Some(self.now);
        let body = self.join_request();
        for (address, port) in self.cfg.seeds.clone() {
            if address == self.me.address && port == self.me.port {
                continue;
            }
            self.actions.push(crate::Action::SendToAddress {
                address,
                port,
                body: body.clone(),
            });
        }
        let known: Vec<NodeInfo> = self
            .ring
            .members()
            .filter(|n| n.id != self.me.id)
            .filter(|n| {
                !self
                    .cfg
                    .seeds
                    .iter()
                    .any(|(a, p)| *a == n.address && *p == n.port)
            })
            .cloned()
            .collect();
        for n in known {
            self.send_info(&n, body.clone());
        }
    }

    fn probe_outside_seeds(&mut self) {
        let due = self
            .last_join_probe
            .is_none_or(|t| self.now.saturating_sub(t) >= SEED_PROBE_INTERVAL);
        if !due {
            return;
        }
        self.last_join_probe = Some(self.now);
        let outside: Vec<(String, u16)> = self
            .cfg
            .seeds
            .iter()
            .filter(|(a, p)| !self.ring.members().any(|m| m.address == *a && m.port == *p))
            .filter(|(a, p)| !(*a == self.me.address && *p == self.me.port))
            .cloned()
            .collect();
        let body = PeerBody::RingJoinRequest {
            node: self.me.clone(),
            epoch: self.epoch,
            last_seq: self.log.last_seq(),
            last_epoch: self.log.last_epoch(),
            probe: true,
        };
        for (address, port) in outside {
            self.actions.push(crate::Action::SendToAddress {
                address,
                port,
                body: body.clone(),
            });
        }
    }

    /// Another ring's leader asks who leads here: the lower of the two leaders yields.
    pub(super) fn on_probe(&mut self, node: NodeInfo) {
        if node.id == self.me.id || self.ring.contains(node.id) {
            return;
        }
        if self.role == Role::Leader && node.id > self.me.id {
            return self.yield_to(node);
        }
        if self.role == Role::Follower && self.leader.is_none() {
            // We look for a ring (in quorum mode a minority elects nobody): here is one.
            return self.send_info(&node, self.join_request());
        }
        let leader = self.leader.clone();
        self.send_info(&node, self.join_answer(leader, false));
    }

    pub(super) fn on_join_request(
        &mut self,
        node: NodeInfo,
        epoch: Epoch,
        last_seq: Seq,
        last_epoch: Epoch,
    ) {
        if node.id == self.me.id {
            return;
        }
        match self.role {
            Role::Leader => {
                let fresh = self.ring.insert(node.clone());
                if fresh {
                    self.notice(Notice::RingChanged);
                }
                if epoch > self.epoch {
                    // It has seen a newer round (it led elsewhere): hold one above both, and
                    // tell it so, so that it takes part.
                    self.epoch = epoch;
                    self.start_election(ElectionTrigger::HigherId);
                    return self.send_info(&node, self.join_answer(None, false));
                }
                self.send_info(&node, self.join_answer(Some(self.me.clone()), true));
                let mut progress = FollowerProgress::probing(self.now);
                progress.reported_last = last_seq;
                progress.reported_epoch = last_epoch;
                // The join request is its report; a recovering leader aligns it later.
                progress.state = FollowerState::Reported;
                self.followers.insert(node.id, progress);
                if self.recovery.is_none() {
                    self.align(node.id, FollowerState::Syncing);
                }
                self.broadcast_ring();
                self.check_recovery();
                self.maybe_hand_off();
            }
            _ => {
                if self.is_follower_of(node.id) && epoch < self.epoch {
                    // Our leader asks to join: it restarted and lost everything.
                    self.peer_failed(node.id, "restarted");
                }
                let leader = self.leader.clone();
                if leader.is_none() && self.ring.insert(node.clone()) {
                    self.notice(Notice::RingChanged);
                }
                self.send_info(&node, self.join_answer(leader, false));
            }
        }
    }

    pub(super) fn on_join_accept(
        &mut self,
        from: NodeId,
        node: NodeInfo,
        leader: Option<NodeInfo>,
        epoch: Epoch,
        accepted: bool,
    ) {
        if self.leader.is_none() {
            self.seen_epoch = self.seen_epoch.max(epoch);
        }
        if accepted {
            if epoch >= self.epoch && self.role != Role::Leader {
                self.adopt_leader(epoch, node);
            }
            return;
        }
        match leader {
            Some(l) if self.role == Role::Leader && l.id != self.me.id => {
                if l.id > self.me.id && (!self.ring.contains(l.id) || epoch > self.epoch) {
                    // Another ring's leader that outranks us, or a higher member that leads
                    // a newer epoch (we were cut off or paused): take our ring over to it.
                    self.yield_to(l);
                } else if epoch > self.epoch {
                    self.outrank_newer_epoch(epoch);
                }
            }
            Some(l) if l.id != self.me.id => {
                // Either we look for a leader, or our own leader tells us to move to another.
                if self.leader.is_none() || self.is_follower_of(from) {
                    self.send_info(&l, self.join_request());
                }
            }
            Some(_) => {}
            None => {
                if self.role != Role::Leader && self.leader.is_some() && epoch > self.epoch {
                    // Where we were sent, a newer round is running: take part in it.
                    self.become_leaderless();
                }
                if self.leader.is_none() && self.ring.insert(node) {
                    self.notice(Notice::RingChanged);
                }
            }
        }
    }

    pub(super) fn on_ring_update(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        members: Vec<NodeInfo>,
        version: u64,
    ) {
        if epoch < self.epoch {
            self.stale("ring_update");
            return self.answer_stale(from);
        }
        if epoch == self.epoch && self.role == Role::Leader {
            return;
        }
        let Some(leader) = members.iter().find(|m| m.id == from).cloned() else {
            return;
        };
        if self.role == Role::Leader && from < self.me.id {
            // A lower leader in a newer epoch answers our stale frames with its ring.
            return self.outrank_newer_epoch(epoch);
        }
        if epoch > self.epoch || !self.is_follower_of(from) {
            self.adopt_leader(epoch, leader);
        } else if version <= self.ring_version {
            return;
        }
        self.ring_version = version;
        self.leader_contact = self.now;
        let before = self.ring.ids();
        self.ring.replace(members);
        let removed = !self.ring.contains(self.me.id);
        self.ring.insert(self.me.clone());
        if before != self.ring.ids() {
            self.notice(Notice::RingChanged);
        }
        if removed {
            // We were taken for dead; we are not, so ask to be let back in.
            self.send(from, self.join_request());
        }
    }

    pub(super) fn on_discovered(&mut self, node: NodeInfo, leader: Option<NodeInfo>, epoch: Epoch) {
        if node.id == self.me.id {
            return;
        }
        if self.is_follower_of(node.id)
            && epoch < self.epoch
            && leader.as_ref().is_none_or(|l| l.id != node.id)
        {
            // Our leader announces an older epoch and no leadership: it restarted. (A
            // leader that hands over announces a newer epoch instead.)
            return self.peer_failed(node.id, "restarted");
        }
        let leader = leader.filter(|l| l.id != self.me.id);
        match (self.role, &self.leader) {
            (Role::Leader, _) => {
                // Another ring whose leader outranks us: take our ring over to it.
                if let Some(other) =
                    leader.filter(|l| l.id > self.me.id && !self.ring.contains(l.id))
                {
                    self.yield_to(other);
                }
            }
            (_, None) => {
                // Remember every server heard of: if joining its leader fails, we still
                // elect together with it instead of alone.
                if self.ring.insert(node) {
                    self.notice(Notice::RingChanged);
                }
                if let Some(l) = leader {
                    self.send_info(&l, self.join_request());
                }
            }
            _ => {}
        }
    }

    /// A lower leader leads a newer epoch than ours: a follower that was cut off and led
    /// alone, or the ring that went on while we were paused. The highest id still wins:
    /// yielding would send our clients to it before it merged our history, and what we
    /// acknowledged would be renumbered behind what it took meanwhile. So we hold a round
    /// above its epoch instead; it yields to us when it hears of us (announcements, probes,
    /// or the round itself where it is in our ring).
    pub(super) fn outrank_newer_epoch(&mut self, epoch: Epoch) {
        self.seen_epoch = self.seen_epoch.max(epoch);
        self.start_election(ElectionTrigger::HigherId);
    }

    /// Hands our whole ring to a higher leader found after a partition healed.
    fn yield_to(&mut self, other: NodeInfo) {
        self.redirect_followers(&other);
        self.become_leaderless();
        self.send_info(&other, self.join_request());
    }

    /// Tells the members of the ring we led to join `leader`.
    pub(super) fn redirect_followers(&mut self, leader: &NodeInfo) {
        self.awaiting_merge = true;
        let redirect = self.join_answer(Some(leader.clone()), false);
        let members: Vec<NodeId> = self
            .ring
            .ids()
            .into_iter()
            .filter(|id| *id != self.me.id && *id != leader.id)
            .collect();
        for id in members {
            self.send(id, redirect.clone());
        }
    }

    /// The leader's membership changed: tell everyone and re-check commits.
    pub(super) fn after_leader_removed_member(&mut self) {
        self.broadcast_ring();
        self.advance_commit();
        self.check_recovery();
    }

    pub(super) fn ring_update_body(&self) -> PeerBody {
        PeerBody::RingUpdate {
            epoch: self.epoch,
            members: self.ring.members().cloned().collect(),
            version: self.ring_version,
        }
    }

    pub(super) fn broadcast_ring(&mut self) {
        self.ring_version += 1;
        let body = self.ring_update_body();
        for id in self.ring.ids() {
            self.send(id, body.clone());
        }
    }

    /// The highest member that is not drained, if it is higher than us and so should lead
    /// instead.
    pub(super) fn outranked_by(&self) -> Option<NodeId> {
        self.ring
            .ids()
            .into_iter()
            .rev()
            .find(|id| *id == self.me.id || self.followers.get(id).is_none_or(|p| !p.draining))
            .filter(|id| *id > self.me.id)
    }
}
