//! The state machine of one server. Its handlers live in `node/`, one concern per file.

mod election;
mod failure;
mod membership;
mod merge;
mod recovery;
mod replication;

use std::collections::{BTreeMap, HashMap, VecDeque};

use ringchat_proto::peer::{NodeInfo, PeerBody};
use ringchat_proto::{ChatEntry, Epoch, NodeId, Seq};

use crate::Millis;
use crate::action::{
    Action, ElectionTrigger, Input, Notice, Proposal, ProposeError, ProposeOutcome,
};
use crate::config::CoreConfig;
use crate::log::Log;
use crate::replication::{FollowerProgress, FollowerState};
use crate::ring::Ring;

/// What a server does in the ring right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader, or is looking for one.
    Follower,
    /// Takes part in an election round.
    Candidate,
    /// Leads: takes client messages and replicates them.
    Leader,
}

impl Role {
    /// Lower-case name for logs, metrics and the admin socket.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// A new leader's state while it collects its followers' histories before taking writes.
#[derive(Debug, Clone)]
struct Recovery {
    started: Millis,
    nudged: bool,
    deadline: Millis,
    pulling_from: Option<NodeId>,
    recovered: Seq,
    /// Quorum mode: the pull in flight takes the most up-to-date history over ours entry by
    /// entry, and its answer must start at this seq (see `recovery.rs`).
    resync: Option<Seq>,
}

/// One server's view of the ring, the election and the history.
#[derive(Debug)]
pub struct Node {
    cfg: CoreConfig,
    me: NodeInfo,
    now: Millis,
    epoch: Epoch,
    /// The highest epoch heard of from servers we do not follow (yet).
    seen_epoch: Epoch,
    role: Role,
    leader: Option<NodeInfo>,
    leaderless_since: Option<Millis>,
    ring: Ring,
    ring_version: u64,
    log: Log,
    commit_seq: Seq,
    participant: bool,
    /// The highest candidate forwarded in the current round, and to whom.
    forwarded: (NodeId, NodeId),
    election_deadline: Millis,
    last_join_probe: Option<Millis>,
    /// When a follower last asked its silent leader to let it back in.
    last_rejoin: Option<Millis>,
    /// When the leader last spoke to us as our leader (beat, batch, ring update).
    leader_contact: Millis,
    /// When the last tick ran: a long gap means this server itself was paused.
    last_tick: Option<Millis>,
    /// Drained by the operator: a replica that never leads (it campaigns with id 0).
    draining: bool,
    /// The highest commit point a leader told us of: while our history is shorter we are
    /// catching up, and a server catching up must not lead (it would serve a cut history).
    leader_commit: Seq,
    /// The highest seq our history shares with a leader that had committed it (its commit
    /// point, capped at the end of a batch we accepted from it): a new leader in quorum
    /// mode starts from there instead of waiting for a new message to commit it again.
    known_committed: Seq,
    /// We led a ring and handed it to another leader, which has not replicated to us yet:
    /// it may still be merging our history, so our clients wait before they move there.
    awaiting_merge: bool,
    last_heard: HashMap<NodeId, Millis>,
    /// How to reach every server we heard from, members or not: answers to a server we
    /// do not count in the ring (yet) still arrive.
    known: HashMap<NodeId, NodeInfo>,
    /// The neighbours whose silence is being watched.
    watched: Vec<NodeId>,
    missed: HashMap<NodeId, bool>,
    last_heartbeat: Option<Millis>,
    heartbeat_nonce: u64,
    heartbeat_sent: HashMap<NodeId, (u64, Millis)>,
    followers: BTreeMap<NodeId, FollowerProgress>,
    recovery: Option<Recovery>,
    /// Recent merges of diverged histories, `(from, to)`: client views in that range are
    /// no longer valid (see [`Node::view_invalidated`]).
    merges: VecDeque<(Seq, Seq)>,
    actions: Vec<Action>,
}

impl Node {
    /// A server that has just started: alone, without a leader, epoch 0.
    pub fn new(cfg: CoreConfig, me: NodeInfo, now: Millis) -> Self {
        Self {
            ring: Ring::alone(me.clone()),
            cfg,
            me,
            now,
            epoch: 0,
            seen_epoch: 0,
            role: Role::Follower,
            leader: None,
            leaderless_since: Some(now),
            ring_version: 0,
            log: Log::default(),
            commit_seq: 0,
            participant: false,
            forwarded: (0, 0),
            election_deadline: 0,
            last_join_probe: None,
            last_rejoin: None,
            leader_contact: now,
            last_tick: None,
            draining: false,
            leader_commit: 0,
            awaiting_merge: false,
            known_committed: 0,
            last_heard: HashMap::new(),
            known: HashMap::new(),
            watched: Vec::new(),
            missed: HashMap::new(),
            last_heartbeat: None,
            heartbeat_nonce: 0,
            heartbeat_sent: HashMap::new(),
            followers: BTreeMap::new(),
            recovery: None,
            merges: VecDeque::new(),
            actions: Vec::new(),
        }
    }

    /// Feeds one input at time `now` (the driver's monotonic milliseconds).
    pub fn step(&mut self, now: Millis, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => self.on_tick(),
            Input::Peer(msg) => {
                if !msg.cluster.is_empty() && msg.cluster != self.cfg.cluster {
                    return;
                }
                if msg.from == self.me.id {
                    return;
                }
                if !crate::plausible::plausible_body(&msg.body) {
                    return self.stale(msg.body.kind());
                }
                if let Some(node) = msg.origin.filter(|n| n.id == msg.from) {
                    self.known.insert(node.id, node);
                }
                self.bound_peer_tables();
                self.heard(msg.from);
                self.on_peer(msg.from, msg.body);
            }
            Input::PeerUnreachable(id) => self.peer_failed(id, "unreachable"),
            Input::Discovered {
                node,
                leader,
                epoch,
            } => {
                if !crate::plausible::plausible_discovered_epoch(epoch) {
                    return;
                }
                self.seen_epoch = self.seen_epoch.max(epoch);
                self.on_discovered(node, leader, epoch)
            }
        }
    }

    /// Asks the leader to store a client message.
    pub fn propose(&mut self, now: Millis, p: Proposal) -> Result<ProposeOutcome, ProposeError> {
        self.now = self.now.max(now);
        match self.role {
            Role::Leader if self.is_serving_leader() => {}
            Role::Leader | Role::Candidate => return Err(ProposeError::NoLeader),
            Role::Follower => {
                return Err(match &self.leader {
                    Some(l) => ProposeError::NotLeader(Some(l.clone())),
                    None => ProposeError::NoLeader,
                });
            }
        }
        if let Some(seq) = self.log.find(&p.client_id, &p.message_id) {
            return Ok(ProposeOutcome::Duplicate(seq));
        }
        let seq = self.log.last_seq() + 1;
        self.log.append(ChatEntry {
            message_id: p.message_id,
            sequence_number: seq,
            client_id: p.client_id,
            username: p.username,
            content: p.content,
            timestamp: p.timestamp,
            delivered: true,
            epoch: self.epoch,
        });
        self.advance_commit();
        Ok(ProposeOutcome::Appended(seq))
    }

    /// Takes new timing and batch sizes (a configuration reload); membership settings such
    /// as the static peers stay as they are.
    pub fn update_config(&mut self, cfg: CoreConfig) {
        self.cfg = CoreConfig {
            seeds: std::mem::take(&mut self.cfg.seeds),
            cluster: std::mem::take(&mut self.cfg.cluster),
            mode: self.cfg.mode,
            ..cfg
        };
    }

    /// Drains or undrains this server. A drained server stays a replica but never leads: if
    /// it leads now, it starts a round it cannot win, so the highest other id takes over.
    pub fn set_draining(&mut self, now: Millis, on: bool) {
        self.now = self.now.max(now);
        if self.draining == on {
            return;
        }
        self.draining = on;
        if on && self.role == Role::Leader && self.ring.len() > 1 {
            self.start_election(ElectionTrigger::Requested);
        }
        // The leader hears of it with our next report (it hands over only to servers that
        // are not drained).
        self.report_to_leader();
    }

    /// Whether this server is drained.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Starts an election round now (`ringchatctl elect`); returns its epoch.
    pub fn force_election(&mut self, now: Millis) -> Epoch {
        self.now = self.now.max(now);
        self.start_election(ElectionTrigger::Requested);
        self.epoch
    }

    /// Says goodbye: every member is told at once, so that the ring is spliced (and a new
    /// leader elected, if we led) without waiting for a heartbeat timeout.
    pub fn leave(&mut self) {
        let others: Vec<NodeInfo> = self
            .ring
            .members()
            .filter(|n| n.id != self.me.id)
            .cloned()
            .collect();
        for n in others {
            self.send_info(
                &n,
                PeerBody::RingLeave {
                    epoch: self.epoch,
                    node: self.me.id,
                    reason: ringchat_proto::peer::LeaveReason::Left,
                },
            );
        }
        self.become_leaderless();
        self.ring = Ring::alone(self.me.clone());
    }

    /// The actions produced since the last call. Replication batches are cut here, so that
    /// proposals fed in one go travel in one frame per follower.
    pub fn take_actions(&mut self) -> Vec<Action> {
        if self.leads() {
            self.pump_replication();
        }
        std::mem::take(&mut self.actions)
    }

    /// This server.
    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// The current epoch (the highest seen).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this server follows (itself when leading).
    pub fn leader(&self) -> Option<&NodeInfo> {
        self.leader.as_ref()
    }

    /// Whether this server leads and has finished recovery, and (in quorum mode) its ring
    /// holds a majority of the configured servers: it takes client messages.
    pub fn is_serving_leader(&self) -> bool {
        self.leads() && self.has_majority_view()
    }

    /// Whether we handed the ring we led to another leader that has not replicated to us
    /// yet (it may be merging our history): our clients are sent there only afterwards, so
    /// that it knows whether their view must be reset.
    pub fn is_awaiting_merge(&self) -> bool {
        self.awaiting_merge && self.role == Role::Follower
    }

    /// Quorum mode: whether this server leads a ring that lost its majority. It keeps its
    /// ring and its clients (and serves what is committed), but takes no writes until the
    /// majority is back.
    pub fn is_leader_without_majority(&self) -> bool {
        self.leads() && !self.has_majority_view()
    }

    /// Whether this server leads and has finished recovery. In quorum mode such a leader may
    /// have lost its majority: it still replicates to its ring, but takes no writes.
    fn leads(&self) -> bool {
        self.role == Role::Leader && self.recovery.is_none()
    }

    /// In quorum mode, whether our ring view holds a majority of the configured ring (in
    /// available mode always): only then may we elect, lead, or take writes.
    fn has_majority_view(&self) -> bool {
        self.cfg
            .mode
            .majority()
            .is_none_or(|m| self.ring.len() >= m)
    }

    /// The ring as this server sees it.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The history.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Highest sequence number stored on every live server: the leader's own count, or on a
    /// follower the leader's as last heard (bounded by what we hold).
    pub fn commit_seq(&self) -> Seq {
        if self.role == Role::Leader {
            self.commit_seq
        } else {
            self.leader_commit.min(self.log.last_seq())
        }
    }

    /// The leader's per-follower replication state.
    pub fn followers(&self) -> &BTreeMap<NodeId, FollowerProgress> {
        &self.followers
    }

    /// Milliseconds since a peer was last heard from.
    pub fn silence(&self, id: NodeId) -> Option<Millis> {
        self.last_heard
            .get(&id)
            .map(|t| self.now.saturating_sub(*t))
    }

    fn on_tick(&mut self) {
        let gap = self.now.saturating_sub(self.last_tick.unwrap_or(self.now));
        self.last_tick = Some(self.now);
        if gap > self.cfg.heartbeat_timeout {
            // We were not running (stopped, swapped out, a stalled machine): everyone's
            // silence is ours. Start every clock afresh instead of declaring the world dead.
            self.forgive_own_pause();
        }
        let upto = if self.role == Role::Leader {
            self.commit_seq
        } else {
            self.leader_commit
        };
        self.log
            .trim(self.cfg.history_retention, upto.min(self.log.last_seq()));
        self.tick_membership();
        self.tick_election();
        self.tick_heartbeats();
        if self.role == Role::Leader {
            self.tick_leader();
        }
    }

    /// Frames under ever new ids must not grow our memory: beyond a generous bound, forget
    /// every server that is not a member.
    fn bound_peer_tables(&mut self) {
        const MAX_KNOWN: usize = 1024;
        if self.known.len() > MAX_KNOWN || self.last_heard.len() > MAX_KNOWN {
            let ring = &self.ring;
            self.known.retain(|id, _| ring.contains(*id));
            self.last_heard.retain(|id, _| ring.contains(*id));
        }
    }

    fn forgive_own_pause(&mut self) {
        let now = self.now;
        for t in self.last_heard.values_mut() {
            *t = now;
        }
        self.missed.clear();
        self.leader_contact = now;
        self.election_deadline = self.election_deadline.max(now + self.cfg.election_timeout);
        for p in self.followers.values_mut() {
            if p.waiting_since.is_some() {
                p.waiting_since = Some(now);
            }
        }
        if let Some(rec) = &mut self.recovery {
            rec.deadline = rec.deadline.max(now + self.cfg.replication_timeout);
        }
    }

    /// A server spoke to us from an older epoch (it was cut off, or paused): tell it where
    /// the ring is now, so that it follows instead of leading on its own.
    fn answer_stale(&mut self, from: NodeId) {
        match (self.role, self.leader.clone()) {
            (Role::Leader, _) => {
                let body = self.ring_update_body();
                self.send(from, body);
            }
            (Role::Follower, Some(leader)) if leader.id != from => {
                let body = self.join_answer(Some(leader), false);
                self.send(from, body);
            }
            _ => {}
        }
    }

    fn on_peer(&mut self, from: NodeId, body: PeerBody) {
        match body {
            PeerBody::Heartbeat {
                nonce,
                epoch,
                leader,
            } => self.on_heartbeat(from, nonce, epoch, leader),
            PeerBody::HeartbeatAck { nonce, epoch } => self.on_heartbeat_ack(from, nonce, epoch),
            PeerBody::RingJoinRequest {
                node,
                epoch,
                last_seq,
                last_epoch,
                probe,
            } => {
                if probe {
                    self.on_probe(node)
                } else {
                    self.on_join_request(node, epoch, last_seq, last_epoch)
                }
            }
            PeerBody::RingJoinAccept {
                node,
                leader,
                epoch,
                accepted,
            } => self.on_join_accept(from, node, leader, epoch, accepted),
            PeerBody::RingUpdate {
                epoch,
                members,
                version,
            } => self.on_ring_update(from, epoch, members, version),
            PeerBody::RingLeave { epoch, node, .. } => self.on_ring_leave(from, epoch, node),
            PeerBody::ElectionStart { epoch } => self.on_election_start(epoch),
            PeerBody::ElectionVote { epoch, candidate } => self.on_vote(from, epoch, candidate),
            PeerBody::ElectionLeader { epoch, leader } => self.on_elected(epoch, leader),
            PeerBody::ReplicationSync {
                epoch,
                prev_seq,
                prev_epoch,
                entries,
                reset,
                commit,
            } => {
                let accepted =
                    self.on_replication_sync(from, epoch, prev_seq, prev_epoch, &entries, reset);
                // Only a history that agrees with the leader's may take its commit point.
                if accepted && self.is_follower_of(from) {
                    self.leader_commit = self.leader_commit.max(commit);
                    let held = prev_seq + entries.len() as Seq;
                    self.known_committed = self.known_committed.max(commit.min(held));
                }
            }
            PeerBody::ReplicationAck {
                epoch,
                last_seq,
                last_epoch,
                ok,
                draining,
            } => {
                if let Some(p) = self.followers.get_mut(&from) {
                    p.draining = draining;
                }
                self.on_replication_ack(from, epoch, last_seq, last_epoch, ok)
            }
            PeerBody::SyncRequest {
                epoch,
                from_seq,
                limit,
            } => self.on_sync_request(from, epoch, from_seq, limit),
            PeerBody::SyncResponse {
                epoch,
                entries,
                last_seq,
            } => self.on_sync_response(from, epoch, entries, last_seq),
        }
    }

    // ---- helpers shared by the handlers ----

    fn notice(&mut self, n: Notice) {
        self.actions.push(Action::Notice(n));
    }

    fn stale(&mut self, kind: &'static str) {
        self.notice(Notice::StaleMessage { kind });
    }

    /// Sends to a member, or to the leader even when it is not (yet) in our ring view.
    fn send(&mut self, to: NodeId, body: PeerBody) {
        if to == self.me.id {
            return;
        }
        let info = self
            .ring
            .get(to)
            .or(self.leader.as_ref().filter(|l| l.id == to))
            .or(self.known.get(&to))
            .cloned();
        if let Some(to) = info {
            self.actions.push(Action::Send { to, body });
        }
    }

    fn send_info(&mut self, to: &NodeInfo, body: PeerBody) {
        if to.id != self.me.id {
            self.actions.push(Action::Send {
                to: to.clone(),
                body,
            });
        }
    }

    /// Whether we know our history to be behind what was committed: then we take part in
    /// elections only as a messenger, never as a candidate.
    fn catching_up(&self) -> bool {
        self.log.last_seq() < self.leader_commit
    }

    /// The id we campaign with: our own, or 0 (below everyone) while catching up or
    /// drained.
    fn campaign_id(&self) -> NodeId {
        if self.catching_up() || self.draining {
            0
        } else {
            self.me.id
        }
    }

    fn successor_id(&self) -> NodeId {
        self.ring.successor(self.me.id).map_or(self.me.id, |n| n.id)
    }

    /// `ring_join_accept` from us: where the leader is (`leader`), and whether we are it and
    /// took the sender in (`accepted`).
    fn join_answer(&self, leader: Option<NodeInfo>, accepted: bool) -> PeerBody {
        PeerBody::RingJoinAccept {
            node: self.me.clone(),
            leader,
            epoch: self.epoch,
            accepted,
        }
    }

    fn join_request(&self) -> PeerBody {
        PeerBody::RingJoinRequest {
            node: self.me.clone(),
            epoch: self.epoch,
            last_seq: self.log.last_seq(),
            last_epoch: self.log.last_epoch(),
            probe: false,
        }
    }

    fn heard(&mut self, from: NodeId) {
        self.last_heard.insert(from, self.now);
        self.missed.remove(&from);
    }

    /// Follows `leader` in `epoch`: the one place where a server stops leading or
    /// campaigning. A new leader is told our history at once, so that it can adopt what it
    /// lacks before it serves.
    fn adopt_leader(&mut self, epoch: Epoch, leader: NodeInfo) {
        let changed = self.role != Role::Follower
            || self.leader.as_ref().map(|l| l.id) != Some(leader.id)
            || self.epoch != epoch;
        if self.role == Role::Leader && leader.id != self.me.id {
            // We led a ring of our own: send its members to the new leader too.
            self.redirect_followers(&leader);
        }
        self.epoch = epoch;
        self.role = Role::Follower;
        self.participant = false;
        self.followers.clear();
        self.recovery = None;
        self.leaderless_since = None;
        self.ring.insert(leader.clone());
        self.leader_contact = self.now;
        self.leader = Some(leader);
        if changed {
            self.ring_version = 0;
            self.notice(Notice::RoleChanged);
            self.report_to_leader();
        }
    }

    /// Sends the leader our newest entry (a `replication_ack` outside any batch).
    fn report_to_leader(&mut self) {
        if let Some(leader) = self.leader.clone().filter(|l| l.id != self.me.id) {
            let report = PeerBody::ReplicationAck {
                epoch: self.epoch,
                last_seq: self.log.last_seq(),
                last_epoch: self.log.last_epoch(),
                ok: true,
                draining: self.draining,
            };
            self.send_info(&leader, report);
        }
    }

    /// Forgets the leader (it failed, or a newer epoch showed up) without starting a round.
    fn become_leaderless(&mut self) {
        let changed = self.role != Role::Follower || self.leader.is_some();
        self.role = Role::Follower;
        self.leader = None;
        self.participant = false;
        self.followers.clear();
        self.recovery = None;
        self.leaderless_since = Some(self.now);
        if changed {
            self.notice(Notice::RoleChanged);
        }
    }

    fn is_follower_of(&self, id: NodeId) -> bool {
        self.role == Role::Follower && self.leader.as_ref().is_some_and(|l| l.id == id)
    }

    fn replicating_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.followers
            .iter()
            .filter(|(_, p)| p.state == FollowerState::Replicating)
            .map(|(id, _)| *id)
    }
}
