//! Failure detection: heartbeats to both ring neighbours, silence means failure, and a
//! failure is acted on by whoever can: the leader splices the ring, a follower tells the
//! leader, and the leader's loss starts an election.

use ringchat_proto::peer::{LeaveReason, PeerBody};
use ringchat_proto::{Epoch, NodeId};

use super::{Node, Role};
use crate::action::{ElectionTrigger, Notice};

impl Node {
    fn neighbours(&self) -> Vec<NodeId> {
        let me = self.me.id;
        let mut out = Vec::with_capacity(2);
        for n in [self.ring.successor(me), self.ring.predecessor(me)]
            .into_iter()
            .flatten()
        {
            if n.id != me && !out.contains(&n.id) {
                out.push(n.id);
            }
        }
        out
    }

    pub(super) fn tick_heartbeats(&mut self) {
        let neighbours = self.neighbours();
        let due = self
            .last_heartbeat
            .is_none_or(|t| self.now.saturating_sub(t) >= self.cfg.heartbeat_interval);
        // The leader also beats to every member: a follower that stops hearing it (it was
        // spliced out while cut off) asks to be let back in.
        let targets: Vec<NodeId> = if self.role == Role::Leader {
            self.ring
                .ids()
                .into_iter()
                .filter(|id| *id != self.me.id)
                .collect()
        } else {
            neighbours.clone()
        };
        if due && !targets.is_empty() {
            self.last_heartbeat = Some(self.now);
            self.heartbeat_nonce += 1;
            let nonce = self.heartbeat_nonce;
            let leader = self.leader.as_ref().map(|l| l.id);
            for &n in &targets {
                self.heartbeat_sent.insert(n, (nonce, self.now));
                self.send(
                    n,
                    PeerBody::Heartbeat {
                        epoch: self.epoch,
                        nonce,
                        leader,
                    },
                );
            }
        }
        // A server that just became a neighbour is watched from now on: silence before,
        // when nobody expected to hear from it, means nothing.
        for n in &neighbours {
            if !self.watched.contains(n) {
                self.last_heard.insert(*n, self.now);
                self.missed.remove(n);
            }
        }
        self.watched.clone_from(&neighbours);
        self.check_leader_contact();
        for n in neighbours {
            let heard = *self.last_heard.entry(n).or_insert(self.now);
            let silence = self.now.saturating_sub(heard);
            if silence > self.cfg.heartbeat_timeout {
                self.peer_failed(n, "heartbeat_timeout");
            } else if silence > 2 * self.cfg.heartbeat_interval
                && !self.missed.get(&n).copied().unwrap_or(false)
            {
                self.missed.insert(n, true);
                self.notice(Notice::HeartbeatMissed { id: n });
            }
        }
    }

    /// A follower that has not heard its leader for a while (the leader beats to every
    /// member) was probably spliced out while cut off: it asks to join again. A dead leader
    /// is found by the neighbours' heartbeats, or by this request's link failing.
    fn check_leader_contact(&mut self) {
        let Some(leader) = self.leader.clone().filter(|_| self.role == Role::Follower) else {
            return;
        };
        let limit = 2 * self.cfg.heartbeat_timeout;
        let silent = self.now.saturating_sub(self.leader_contact) > limit;
        let due = self
            .last_rejoin
            .is_none_or(|t| self.now.saturating_sub(t) > limit);
        if silent && due {
            self.last_rejoin = Some(self.now);
            self.send_info(&leader, self.join_request());
        }
    }

    pub(super) fn on_heartbeat(
        &mut self,
        from: NodeId,
        nonce: u64,
        epoch: Epoch,
        leader: Option<NodeId>,
    ) {
        if self.is_follower_of(from) {
            if epoch < self.epoch && leader != Some(from) {
                // Our leader no longer knows it leads: it restarted.
                return self.peer_failed(from, "restarted");
            }
            self.leader_contact = self.now;
        } else if epoch < self.epoch && epoch != 0 {
            self.answer_stale(from);
        }
        self.send(
            from,
            PeerBody::HeartbeatAck {
                epoch: self.epoch,
                nonce,
            },
        );
    }

    pub(super) fn on_heartbeat_ack(&mut self, from: NodeId, nonce: u64, epoch: Epoch) {
        if self.is_follower_of(from) && epoch == 0 {
            return self.peer_failed(from, "restarted");
        }
        if let Some((sent_nonce, at)) = self.heartbeat_sent.get(&from).copied()
            && sent_nonce == nonce
        {
            self.heartbeat_sent.remove(&from);
            self.notice(Notice::HeartbeatRtt {
                id: from,
                millis: self.now.saturating_sub(at),
            });
        }
    }

    /// `id` is taken for dead: remove it and do what the role requires.
    pub(crate) fn peer_failed(&mut self, id: NodeId, cause: &'static str) {
        let was_leader = self.leader.as_ref().is_some_and(|l| l.id == id);
        if id == self.me.id || (!self.ring.contains(id) && !was_leader) {
            return;
        }
        self.notice(Notice::PeerFailed { id, cause });
        let removed = self.ring.get(id).cloned();
        self.remove_member(id);
        match self.role {
            Role::Leader => {
                self.after_leader_removed_member();
                // If it is alive after all, it learns it is out and asks to rejoin.
                if let Some(node) = removed {
                    self.send_info(&node, self.ring_update_body());
                }
            }
            _ if was_leader => {
                self.leader = None;
                self.start_election(ElectionTrigger::LeaderLost);
            }
            Role::Candidate => self.start_election(ElectionTrigger::Timeout),
            Role::Follower => {
                if let Some(leader) = self.leader.clone() {
                    self.send_info(
                        &leader,
                        PeerBody::RingLeave {
                            epoch: self.epoch,
                            node: id,
                            reason: LeaveReason::Failed,
                        },
                    );
                }
            }
        }
    }

    pub(super) fn remove_member(&mut self, id: NodeId) {
        if self.ring.remove(id) {
            self.notice(Notice::RingChanged);
        }
        self.last_heard.remove(&id);
        self.missed.remove(&id);
        self.heartbeat_sent.remove(&id);
        self.followers.remove(&id);
    }

    pub(super) fn on_ring_leave(&mut self, from: NodeId, epoch: u64, node: NodeId) {
        if epoch < self.epoch && from != node {
            return self.stale("ring_leave");
        }
        if node == self.me.id {
            return;
        }
        if self.role == Role::Leader || from == node {
            // The leader acts on reports; anyone acts on a goodbye from the leaver itself.
            self.peer_failed(node, "left");
        }
    }
}
