//! Chang-Roberts: votes travel to the successor; a higher candidate is forwarded, a lower
//! one is replaced (once) by our own id, and the id that comes back to its owner has
//! beaten every server on the way round. The winner announces itself the same way.

use ringchat_proto::peer::{NodeInfo, PeerBody};
use ringchat_proto::{Epoch, NodeId};

use super::{Node, Recovery, Role};
use crate::action::{ElectionTrigger, Notice};
use crate::election::next_epoch;
use crate::replication::FollowerProgress;

impl Node {
    /// Starts a new round with an epoch above every epoch seen.
    pub(crate) fn start_election(&mut self, trigger: ElectionTrigger) {
        if !self.has_majority_view() {
            // Quorum mode: a minority elects nobody (and raises no epoch); it keeps asking
            // to join a ring until it sees a majority. A leader asked to step aside (or
            // whose epoch a joiner raised) steps down instead of leading on.
            if self.role != Role::Follower || self.leader.is_some() {
                self.become_leaderless();
            }
            return;
        }
        let epoch = next_epoch(self.epoch.max(self.seen_epoch), self.me.id);
        self.notice(Notice::ElectionStarted { trigger, epoch });
        self.enter_round(epoch, true);
        if self.ring.len() == 1 {
            self.win(epoch);
        } else {
            // A server catching up starts the round for the others (candidate 0).
            let succ = self.successor_id();
            self.send(
                succ,
                PeerBody::ElectionVote {
                    epoch,
                    candidate: self.campaign_id(),
                },
            );
        }
    }

    /// Becomes a candidate in the round of `epoch`, as its starter (`participant`) or
    /// because a vote of it arrived.
    fn enter_round(&mut self, epoch: Epoch, participant: bool) {
        let was = (self.role, self.leader.as_ref().map(|l| l.id));
        self.epoch = epoch;
        self.awaiting_merge = false;
        self.forwarded = (0, 0);
        self.role = Role::Candidate;
        self.leader = None;
        self.followers.clear();
        self.recovery = None;
        self.participant = participant;
        self.leaderless_since = None;
        self.election_deadline = self.now + self.cfg.election_timeout;
        if was != (Role::Candidate, None) {
            self.notice(Notice::RoleChanged);
        }
    }

    pub(super) fn tick_election(&mut self) {
        match self.role {
            Role::Candidate if self.now >= self.election_deadline => {
                self.start_election(ElectionTrigger::Timeout);
            }
            Role::Follower if self.leader.is_none() => {
                let since = *self.leaderless_since.get_or_insert(self.now);
                if self.now.saturating_sub(since) >= self.cfg.startup_grace {
                    self.start_election(ElectionTrigger::Startup);
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_election_start(&mut self, epoch: Epoch) {
        if epoch < self.epoch {
            return self.stale("election_start");
        }
        if self.role != Role::Leader {
            self.start_election(ElectionTrigger::Requested);
        }
    }

    pub(super) fn on_vote(&mut self, from: NodeId, epoch: Epoch, candidate: NodeId) {
        if epoch < self.epoch {
            self.stale("election_vote");
            return self.answer_stale(from);
        }
        if epoch > self.epoch {
            self.enter_round(epoch, false);
        } else if self.role != Role::Candidate {
            // The round of this epoch is decided already: a late vote.
            return;
        }
        let succ = self.successor_id();
        let me = self.campaign_id();
        if succ == self.me.id && candidate < self.me.id {
            // Nobody else is in our view of the ring: our own vote would come straight back.
            return self.win(epoch);
        }
        if candidate == 0 && me == 0 && self.participant {
            // Every server on the way round is catching up: nobody better exists, so the
            // round's starter leads after all (its recovery pulls what the others hold).
            return self.win(epoch);
        }
        if candidate > me {
            // Forward a candidate once per round and successor: where ring views differ, a
            // vote could otherwise circle for ever between servers that disagree on who is
            // next; when our view changes, it goes on.
            if candidate <= self.forwarded.0 && succ == self.forwarded.1 {
                return;
            }
            self.forwarded = (candidate, succ);
            self.participant = true;
            self.send(succ, PeerBody::ElectionVote { epoch, candidate });
        } else if candidate < me {
            if !self.participant {
                self.participant = true;
                self.send(
                    succ,
                    PeerBody::ElectionVote {
                        epoch,
                        candidate: me,
                    },
                );
            }
        } else if me == 0 {
            // A candidate-0 vote reached a server that is catching up: pass it on.
            if !self.participant {
                self.participant = true;
                self.send(succ, PeerBody::ElectionVote { epoch, candidate });
            }
        } else {
            self.win(epoch);
        }
    }

    fn win(&mut self, epoch: Epoch) {
        if !self.has_majority_view() {
            // Our view shrank during the round (quorum mode): no leader on a minority.
            return self.become_leaderless();
        }
        // The commit point never falls back while we lead, but our history may have been
        // replaced since we last led (a reset from another leader): what we no longer hold
        // cannot count as committed.
        self.commit_seq = self.commit_seq.min(self.log.last_seq());
        self.role = Role::Leader;
        self.leader = Some(self.me.clone());
        self.participant = false;
        self.leaderless_since = None;
        let now = self.now;
        self.followers = self
            .ring
            .ids()
            .into_iter()
            .filter(|id| *id != self.me.id)
            .map(|id| (id, FollowerProgress::probing(now)))
            .collect();
        self.recovery = Some(Recovery {
            started: now,
            nudged: false,
            // Followers that are alive report within a round trip, and dead ones are usually
            // reported by their links at once; the deadline is for silent ones, and a
            // follower dropped for silence may hold what we lack: be patient.
            deadline: now + 2 * self.cfg.replication_timeout,
            pulling_from: None,
            recovered: 0,
            resync: None,
        });
        self.notice(Notice::RoleChanged);
        let succ = self.successor_id();
        self.send(
            succ,
            PeerBody::ElectionLeader {
                epoch,
                leader: self.me.clone(),
            },
        );
        self.check_recovery();
    }

    pub(super) fn on_elected(&mut self, epoch: Epoch, leader: NodeInfo) {
        if epoch < self.epoch {
            return self.stale("election_leader");
        }
        if leader.id == self.me.id {
            // Our announcement came back round: everyone on the way knows.
            return;
        }
        if epoch == self.epoch && self.role == Role::Leader {
            // Two leaders in one epoch cannot arise: epochs carry their initiator.
            return;
        }
        if self.epoch == epoch && self.is_follower_of(leader.id) {
            // Heard before (or a leader's nudge): report again, do not forward again.
            return self.report_to_leader();
        }
        self.adopt_leader(epoch, leader.clone());
        let succ = self.successor_id();
        if succ != leader.id {
            self.send(succ, PeerBody::ElectionLeader { epoch, leader });
        }
    }
}
