//! Deterministic simulation of whole rings on an in-memory network.
//!
//! Every test drives real `Node`s with a seeded RNG: random latencies, crashes, restarts,
//! cut links and client resends, then checks DESIGN.md's invariants. A failing case prints
//! its seed, and the same seed replays it exactly.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringchat_core::{
    Action, CoreConfig, Input, Node, Proposal, ProposeOutcome, ReplicationMode, Role,
};
use ringchat_proto::peer::{NodeInfo, PeerBody, PeerMessage};
use ringchat_proto::{Epoch, NodeId, Seq};

const STEP_MS: u64 = 5;

/// Property-test settings: a fixed seed, so that CI runs the same schedules every time
/// (`PROPTEST_RNG_SEED=<n>` and `PROPTEST_CASES=<n>` explore others).
fn config(cases: u32) -> ProptestConfig {
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_125);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

fn info(id: NodeId) -> NodeInfo {
    NodeInfo {
        id,
        address: "sim".into(),
        port: id as u16,
        client_port: 100 + id as u16,
    }
}

struct InFlight {
    at: u64,
    from: NodeId,
    to: NodeId,
    body: PeerBody,
}

/// A message a simulated client wants stored, with what it has been told.
#[derive(Clone)]
struct ClientMsg {
    key: (String, String),
    acked_seq: Option<Seq>,
}

struct Sim {
    rng: SmallRng,
    now: u64,
    cfg: CoreConfig,
    nodes: BTreeMap<NodeId, Option<Node>>,
    queue: Vec<InFlight>,
    cut: HashSet<(NodeId, NodeId)>,
    /// Every (epoch, leader) ever observed.
    leaders: HashMap<Epoch, NodeId>,
    /// Messages clients sent; resent to the current leader until acknowledged.
    msgs: Vec<ClientMsg>,
    /// Votes and announcements sent, per epoch.
    votes: HashMap<Epoch, usize>,
    announcements: HashMap<Epoch, usize>,
    multicast: bool,
    /// Servers that are stopped (SIGSTOP): they neither tick nor read; frames wait for them.
    frozen: HashSet<NodeId>,
    /// Delivery time of the last frame per link: links are FIFO, like TCP.
    link_clock: HashMap<(NodeId, NodeId), u64>,
    /// Messages a side's leader took during a partition: acknowledged once that leader
    /// commits them.
    pending_at: Vec<(NodeId, (String, String), Seq)>,
    /// Every acknowledgement given, by sequence number and with the epoch of the leader
    /// that gave it: in quorum mode no sequence number is ever acknowledged for two
    /// messages.
    acked_at: HashMap<Seq, ((String, String), Epoch)>,
}

impl Sim {
    fn new(seed: u64, multicast: bool) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            now: 0,
            cfg: CoreConfig::default(),
            nodes: BTreeMap::new(),
            queue: Vec::new(),
            cut: HashSet::new(),
            leaders: HashMap::new(),
            msgs: Vec::new(),
            votes: HashMap::new(),
            announcements: HashMap::new(),
            multicast,
            link_clock: HashMap::new(),
            frozen: HashSet::new(),
            pending_at: Vec::new(),
            acked_at: HashMap::new(),
        }
    }

    fn start(&mut self, id: NodeId) {
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("t={} START n{id}", self.now);
        }
        let mut cfg = self.cfg.clone();
        if !self.multicast {
            cfg.seeds = self
                .nodes
                .keys()
                .filter(|k| **k != id)
                .map(|k| ("sim".to_string(), *k as u16))
                .collect();
        }
        self.nodes
            .insert(id, Some(Node::new(cfg, info(id), self.now)));
        if self.multicast {
            // The announcement at start, answered by everyone who hears it.
            self.announce(id);
            for other in self.live() {
                if other != id {
                    self.announce_to(other, id);
                }
            }
        }
    }

    /// Whether some other live server holds every acknowledged message: RAM-only history
    /// survives as long as one copy does, and the scenarios respect that.
    fn safe_to_crash(&self, id: NodeId) -> bool {
        self.live().into_iter().filter(|l| *l != id).any(|l| {
            let log = self.node(l).log();
            self.msgs
                .iter()
                .all(|m| m.acked_seq.is_none() || log.find(&m.key.0, &m.key.1).is_some())
        })
    }

    /// SIGCONT: like a real process, the thawed server's timers fire before it has read
    /// what queued up for it.
    fn thaw(&mut self, id: NodeId) {
        self.frozen.remove(&id);
        let now = self.now;
        if let Some(Some(n)) = self.nodes.get_mut(&id) {
            n.step(now, Input::Tick);
        }
        self.flush(id);
    }

    fn crash(&mut self, id: NodeId) {
        self.link_clock.retain(|(a, b), _| *a != id && *b != id);
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("t={} CRASH n{id}", self.now);
        }
        self.nodes.insert(id, None);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[&id].as_ref().expect("live node")
    }

    fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        !self.cut.contains(&(a, b)) && !self.cut.contains(&(b, a))
    }

    fn partition(&mut self, side: &[NodeId]) {
        let all: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &a in side {
            for &b in &all {
                if !side.contains(&b) {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn announce(&mut self, from: NodeId) {
        for to in self.live() {
            if to != from {
                self.announce_to(from, to);
            }
        }
    }

    fn announce_to(&mut self, from: NodeId, to: NodeId) {
        if !self.reachable(from, to) {
            return;
        }
        let leader = self.node(from).leader().cloned();
        let epoch = self.node(from).epoch();
        let now = self.now;
        if let Some(Some(n)) = self.nodes.get_mut(&to) {
            n.step(
                now,
                Input::Discovered {
                    node: info(from),
                    leader,
                    epoch,
                },
            );
        }
        self.flush(to);
    }

    fn flush(&mut self, id: NodeId) {
        let Some(Some(node)) = self.nodes.get_mut(&id) else {
            return;
        };
        let actions = node.take_actions();
        if node.role() == Role::Leader {
            let e = node.epoch();
            let prev = self.leaders.insert(e, id);
            assert!(
                prev.is_none() || prev == Some(id),
                "two leaders in epoch {e}: {prev:?} and {id}"
            );
        }
        for a in actions {
            match a {
                Action::Send { to, body } => self.transmit(id, to.id, body),
                Action::SendToAddress { port, body, .. } => self.transmit(id, port as NodeId, body),
                Action::Notice(n) => {
                    if std::env::var_os("SIM_TRACE").is_some() {
                        let node = self.node(id);
                        eprintln!(
                            "t={} n{id} {:?} e={} leader={:?} last={} commit={} ring={:?}: {n:?}",
                            self.now,
                            node.role(),
                            node.epoch(),
                            node.leader().map(|l| l.id),
                            node.log().last_seq(),
                            node.commit_seq(),
                            node.ring().ids()
                        );
                    }
                }
            }
        }
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, body: PeerBody) {
        match &body {
            PeerBody::ElectionVote { epoch, .. } => *self.votes.entry(*epoch).or_default() += 1,
            PeerBody::ElectionLeader { epoch, .. } => {
                *self.announcements.entry(*epoch).or_default() += 1
            }
            _ => {}
        }
        let alive = matches!(self.nodes.get(&to), Some(Some(_)));
        if !self.reachable(from, to) {
            return; // silently lost: only timeouts notice
        }
        let latency = self.rng.random_range(1..=15);
        if alive {
            let clock = self.link_clock.entry((from, to)).or_default();
            *clock = (*clock).max(self.now + latency);
            let at = *clock;
            self.queue.push(InFlight { at, from, to, body });
        } else if self.nodes.contains_key(&to) {
            // A crashed process's port refuses connections: the link reports it.
            let now = self.now + latency;
            self.queue.push(InFlight {
                at: now,
                from: to,
                to: from,
                body: PeerBody::ElectionStart { epoch: u64::MAX },
            });
        }
    }

    /// Advances time by one step: deliver due messages, tick everyone, resend for clients.
    fn step(&mut self) {
        self.now += STEP_MS;
        let now = self.now;
        let frozen = self.frozen.clone();
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|m| m.at <= now && !frozen.contains(&m.to));
        self.queue = rest;
        for m in due {
            let Some(Some(node)) = self.nodes.get_mut(&m.to) else {
                continue;
            };
            if std::env::var_os("SIM_TRACE_MSG").is_some()
                && !matches!(
                    m.body,
                    PeerBody::Heartbeat { .. }
                        | PeerBody::HeartbeatAck { .. }
                        | PeerBody::ReplicationSync { .. }
                )
            {
                eprintln!("t={now} n{} -> n{}: {:?}", m.from, m.to, m.body);
            }
            let input = match m.body {
                // Marker for "the link to `from` was refused".
                PeerBody::ElectionStart { epoch: u64::MAX } => Input::PeerUnreachable(m.from),
                body => {
                    let msg = PeerMessage {
                        from: m.from,
                        sender_id: String::new(),
                        timestamp: 0.0,
                        cluster: "ringchat".into(),
                        origin: Some(info(m.from)),
                        body,
                    };
                    // Through the wire format, as the daemon does: a message that does not
                    // survive its own encoding fails here, not only in a real cluster.
                    let wire = serde_json::to_vec(&msg).expect("ring message encodes");
                    let back: PeerMessage =
                        serde_json::from_slice(&wire).expect("ring message decodes");
                    assert_eq!(back, msg);
                    Input::Peer(back)
                }
            };
            node.step(now, input);
            self.flush(m.to);
        }
        for id in self.live() {
            if self.frozen.contains(&id) {
                continue;
            }
            if let Some(Some(n)) = self.nodes.get_mut(&id) {
                n.step(now, Input::Tick);
            }
            self.flush(id);
        }
        if self.multicast && now.is_multiple_of(500) {
            for id in self.live() {
                if !self.frozen.contains(&id) {
                    self.announce(id);
                }
            }
        }
        self.record_acks();
    }

    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms / STEP_MS {
            self.step();
        }
    }

    fn serving_leader(&self) -> Option<NodeId> {
        self.live()
            .into_iter()
            .filter(|id| !self.frozen.contains(id) && self.node(*id).is_serving_leader())
            .max()
    }

    /// A client sends a new message to whoever leads now (if anyone).
    fn client_send(&mut self, n: usize) {
        let key = ("client".to_string(), format!("m{n}"));
        self.msgs.push(ClientMsg {
            key,
            acked_seq: None,
        });
        self.resend_pending();
    }

    /// A client on each side of a partition sends a message to the leader it can reach.
    fn client_send_everywhere(&mut self, n: usize) {
        let leaders: Vec<NodeId> = self
            .live()
            .into_iter()
            .filter(|id| self.node(*id).is_serving_leader())
            .collect();
        for (i, leader) in leaders.into_iter().enumerate() {
            self.send_to(leader, &format!("client{i}"), n);
        }
    }

    /// A client of one side sends a new message to that side's leader; it counts as
    /// acknowledged once that leader commits it.
    fn send_to(&mut self, leader: NodeId, client: &str, n: usize) {
        let key = (client.to_string(), format!("m{n}"));
        let now = self.now;
        let Some(Some(node)) = self.nodes.get_mut(&leader) else {
            return;
        };
        let r = node.propose(
            now,
            Proposal {
                client_id: key.0.clone(),
                message_id: key.1.clone(),
                username: "u".into(),
                content: key.1.clone(),
                timestamp: 0.0,
            },
        );
        if let Ok(ProposeOutcome::Appended(seq)) = r {
            self.pending_at.push((leader, key, seq));
        }
        self.flush(leader);
    }

    /// Clients resend every unacknowledged message with its original id.
    fn resend_pending(&mut self) {
        let Some(leader) = self.serving_leader() else {
            return;
        };
        let now = self.now;
        let pending: Vec<(String, String)> = self
            .msgs
            .iter()
            .filter(|m| m.acked_seq.is_none())
            .map(|m| m.key.clone())
            .collect();
        if let Some(Some(node)) = self.nodes.get_mut(&leader) {
            for (client_id, message_id) in pending {
                let r = node.propose(
                    now,
                    Proposal {
                        client_id,
                        message_id: message_id.clone(),
                        username: "u".into(),
                        content: message_id,
                        timestamp: 0.0,
                    },
                );
                assert!(matches!(
                    r,
                    Ok(ProposeOutcome::Appended(_) | ProposeOutcome::Duplicate(_))
                ));
            }
        }
        self.flush(leader);
    }

    fn record_acks(&mut self) {
        // Messages taken by a partition's leader count as acknowledged once it commits them.
        let mut acked = Vec::new();
        let quorum = self.cfg.mode != ReplicationMode::Available;
        self.pending_at
            .retain(|(leader, key, seq)| match self.nodes.get(leader) {
                Some(Some(node)) if node.is_serving_leader() && node.commit_seq() >= *seq => {
                    if node.log().find(&key.0, &key.1) == Some(*seq) {
                        acked.push((key.clone(), *seq, node.epoch()));
                    }
                    false
                }
                Some(Some(node)) => node.is_serving_leader(),
                _ => false,
            });
        for (key, seq, epoch) in acked {
            if quorum {
                self.note_ack(&key, seq, epoch);
            }
            self.msgs.push(ClientMsg {
                key,
                acked_seq: Some(seq),
            });
        }
        let Some(leader) = self.serving_leader() else {
            return;
        };
        let node = self.node(leader);
        let commit = node.commit_seq();
        let mut acks = Vec::new();
        for (i, m) in self.msgs.iter().enumerate() {
            if m.acked_seq.is_none()
                && let Some(seq) = node.log().find(&m.key.0, &m.key.1)
                && seq <= commit
            {
                acks.push((i, seq));
            }
        }
        let epoch = node.epoch();
        for (i, seq) in acks {
            self.msgs[i].acked_seq = Some(seq);
            if quorum {
                let key = self.msgs[i].key.clone();
                self.note_ack(&key, seq, epoch);
            }
        }
    }

    /// Quorum mode: an acknowledgement is final, so no sequence number is ever acknowledged
    /// for two different messages, on whatever side of a partition.
    fn note_ack(&mut self, key: &(String, String), seq: Seq, epoch: Epoch) {
        if let Some((other, other_epoch)) = self.acked_at.get(&seq) {
            assert_eq!(
                other, key,
                "seq {seq} acknowledged for {other:?} (epoch {other_epoch}) and {key:?} (epoch {epoch})"
            );
        }
        self.acked_at.insert(seq, (key.clone(), epoch));
    }

    /// Invariant 3 (and 5): after the ring settled, every acknowledged message is in every
    /// live server's history once, at the sequence number it was acknowledged with, and all
    /// histories are the same.
    fn check_histories(&self) {
        let live = self.live();
        let reference = self.node(live[0]).log();
        for id in &live {
            let log = self.node(*id).log();
            assert_eq!(
                log.last_seq(),
                reference.last_seq(),
                "server {id} has {} entries, server {} has {}",
                log.last_seq(),
                live[0],
                reference.last_seq()
            );
            let mut seen = HashSet::new();
            for seq in 1..=log.last_seq() {
                let e = log.get(seq).unwrap();
                assert_eq!(
                    e,
                    reference.get(seq).unwrap(),
                    "server {id} differs at {seq}"
                );
                assert!(
                    seen.insert((e.client_id, e.message_id)),
                    "duplicate at {seq}"
                );
            }
            for m in &self.msgs {
                if let Some(seq) = m.acked_seq {
                    assert_eq!(
                        log.find(&m.key.0, &m.key.1),
                        Some(seq),
                        "acked message {:?} lost or moved on server {id}",
                        m.key
                    );
                }
            }
        }
    }

    /// Invariant 6: after a partition healed, every server holds the same history and every
    /// message acknowledged on either side is in it exactly once (its sequence number may
    /// have moved when the sides were merged).
    fn check_merged_histories(&self) {
        let live = self.live();
        let reference = self.node(live[0]).log();
        for id in &live {
            let log = self.node(*id).log();
            assert_eq!(
                log.last_seq(),
                reference.last_seq(),
                "server {id} differs in length"
            );
            let mut seen = HashSet::new();
            for seq in 1..=log.last_seq() {
                let e = log.get(seq).unwrap();
                assert_eq!(
                    e,
                    reference.get(seq).unwrap(),
                    "server {id} differs at {seq}"
                );
                assert!(
                    seen.insert((e.client_id, e.message_id)),
                    "duplicate at {seq}"
                );
            }
            for m in self.msgs.iter().filter(|m| m.acked_seq.is_some()) {
                assert!(
                    log.find(&m.key.0, &m.key.1).is_some(),
                    "acked {:?} lost on {id}",
                    m.key
                );
            }
        }
    }

    fn check_one_leader(&self) -> NodeId {
        let live = self.live();
        let leaders: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|id| self.node(*id).role() == Role::Leader)
            .collect();
        assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
        let l = leaders[0];
        let epoch = self.node(l).epoch();
        for id in &live {
            let n = self.node(*id);
            assert_eq!(
                n.leader().map(|x| x.id),
                Some(l),
                "server {id} follows another"
            );
            assert_eq!(n.epoch(), epoch, "server {id} is in another epoch");
            assert_eq!(n.ring().ids(), live, "server {id} has a different ring");
        }
        l
    }

    fn run_until_settled(&mut self, max_ms: u64) -> NodeId {
        let deadline = self.now + max_ms;
        while self.now < deadline {
            self.run_for(50);
            self.resend_pending();
            let live = self.live();
            let settled = self.serving_leader().is_some_and(|l| {
                live.iter().all(|id| {
                    let n = self.node(*id);
                    n.leader().map(|x| x.id) == Some(l)
                        && n.ring().ids() == live
                        && n.log().last_seq() == self.node(l).log().last_seq()
                }) && self.node(l).commit_seq() == self.node(l).log().last_seq()
                    && self.node(l).followers().values().all(|p| {
                        p.state == ringchat_core::FollowerState::Replicating
                            && p.match_seq == self.node(l).log().last_seq()
                    })
                    && self.msgs.iter().all(|m| m.acked_seq.is_some())
            });
            if settled {
                return self.check_one_leader();
            }
        }
        panic!("ring did not settle within {max_ms} ms (t={})", self.now);
    }
}

#[test]
fn regression_crash_restart_1() {
    crash_scenario(
        625922761822016606,
        4,
        &[(105, false), (75, true), (125, false)],
    );
}

#[test]
fn regression_crash_restart_2() {
    crash_scenario(
        625922762999548810,
        4,
        &[(105, false), (195, true), (125, true)],
    );
}

#[test]
fn regression_crash_restart_3() {
    crash_scenario(
        906681938262334832,
        4,
        &[
            (115, false),
            (5, false),
            (130, true),
            (320, true),
            (30, true),
        ],
    );
}

#[test]
fn regression_crash_restart_4() {
    crash_scenario(
        15649895194479407506,
        3,
        &[(350, true), (40, true), (190, false)],
    );
}

#[test]
fn regression_crash_restart_5() {
    crash_scenario(
        9174890926512893093,
        4,
        &[(85, true), (155, false), (0, true), (310, false)],
    );
}

#[test]
fn regression_crash_6() {
    crash_scenario(12651806133627251170, 5, &[(95, false), (250, false)]);
}

#[test]
fn regression_crash_restart_7() {
    crash_scenario(
        14792294966732551516,
        3,
        &[
            (160, true),
            (160, true),
            (215, false),
            (120, false),
            (80, false),
        ],
    );
}

#[test]
fn regression_partition_1() {
    partition_scenario(
        12927953085916922953,
        3,
        &[(2, 1140), (1, 1085), (2, 340)],
        true,
    );
}

#[test]
fn regression_partition_2() {
    partition_scenario(13639750100066727894, 5, &[(2, 115), (3, 1210)], true);
}

#[test]
fn regression_partition_3() {
    partition_scenario(17346271474293107184, 5, &[(1, 635)], true);
}

#[test]
fn regression_partition_static_1() {
    partition_scenario(12730254666988974685, 5, &[(3, 495)], false);
}

#[test]
fn regression_partition_static_2() {
    partition_scenario(134711907976581382, 5, &[(1, 490), (3, 745)], false);
}

#[test]
fn regression_partition_4() {
    partition_scenario(
        14914081919155739397,
        5,
        &[(3, 1400), (2, 1215), (3, 505)],
        true,
    );
}

#[test]
fn three_servers_elect_the_highest_id() {
    let mut sim = Sim::new(1, true);
    for id in [2, 3, 1] {
        sim.start(id);
        sim.run_for(20);
    }
    assert_eq!(sim.run_until_settled(5_000), 3);
}

#[test]
fn leader_crash_keeps_every_acked_message() {
    let mut sim = Sim::new(7, true);
    for id in 1..=3 {
        sim.start(id);
    }
    sim.run_until_settled(5_000);
    for i in 0..50 {
        sim.client_send(i);
        sim.step();
    }
    sim.crash(3);
    for i in 50..80 {
        sim.client_send(i);
        sim.step();
    }
    assert_eq!(sim.run_until_settled(10_000), 2);
    sim.check_histories();
    assert_eq!(
        sim.msgs.iter().filter(|m| m.acked_seq.is_some()).count(),
        80
    );
}

#[test]
fn higher_id_joining_takes_over_with_the_full_history() {
    let mut sim = Sim::new(3, true);
    sim.start(1);
    sim.start(2);
    sim.run_until_settled(5_000);
    for i in 0..250 {
        sim.client_send(i);
        if i % 10 == 0 {
            sim.step();
        }
    }
    sim.run_until_settled(5_000);
    sim.start(9);
    assert_eq!(sim.run_until_settled(10_000), 9);
    sim.check_histories();
    assert_eq!(sim.node(9).log().last_seq(), 250);
}

#[test]
fn a_server_catching_up_never_leads_with_a_cut_history() {
    let mut sim = Sim::new(21, true);
    // One chunk in flight: catching up on 3000 entries takes 30 round trips.
    sim.cfg.max_inflight_entries = 100;
    sim.start(1);
    sim.start(2);
    sim.run_until_settled(5_000);
    for i in 0..3000 {
        sim.client_send(i);
        if i % 50 == 0 {
            sim.step();
        }
    }
    sim.run_until_settled(10_000);
    // The highest id arrives empty and starts catching up; the leader dies meanwhile.
    sim.start(3);
    sim.run_for(60);
    assert!(
        sim.node(3).log().last_seq() < 3000,
        "3 must still be catching up"
    );
    sim.crash(2);
    sim.run_for(300);
    let leader = sim.serving_leader().expect("a leader serves");
    assert_ne!(
        leader, 3,
        "a server catching up must not serve a cut history"
    );
    for i in 3000..3100 {
        sim.client_send(i);
        sim.step();
    }
    // Once caught up, the highest id takes over, with every acknowledged message.
    assert_eq!(sim.run_until_settled(20_000), 3);
    sim.check_histories();
}

#[test]
fn a_paused_leader_rejoins_instead_of_leading_on_its_own() {
    for (seed, multicast) in [(31, true), (32, false), (33, true), (34, false)] {
        let mut sim = Sim::new(seed, multicast);
        for id in 1..=3 {
            sim.start(id);
        }
        assert_eq!(sim.run_until_settled(5_000), 3);
        for i in 0..10 {
            sim.client_send(i);
            sim.step();
        }
        // SIGSTOP the leader long enough for the others to elect without it.
        sim.frozen.insert(3);
        sim.run_for(1_000);
        assert_eq!(sim.serving_leader(), Some(2), "seed {seed}");
        for i in 10..20 {
            sim.client_send(i);
            sim.step();
        }
        sim.thaw(3);
        assert_eq!(sim.run_until_settled(10_000), 3, "seed {seed}");
        sim.check_histories();
    }
}

#[test]
fn a_drained_leader_hands_over_and_takes_back_when_undrained() {
    let mut sim = Sim::new(41, true);
    for id in 1..=3 {
        sim.start(id);
    }
    assert_eq!(sim.run_until_settled(5_000), 3);
    for i in 0..20 {
        sim.client_send(i);
        sim.step();
    }
    let now = sim.now;
    if let Some(Some(n)) = sim.nodes.get_mut(&3) {
        n.set_draining(now, true);
    }
    sim.flush(3);
    assert_eq!(
        sim.run_until_settled(5_000),
        2,
        "the highest other id leads"
    );
    for i in 20..40 {
        sim.client_send(i);
        sim.step();
    }
    assert_eq!(
        sim.run_until_settled(5_000),
        2,
        "a drained server is not handed the lead"
    );
    let now = sim.now;
    if let Some(Some(n)) = sim.nodes.get_mut(&3) {
        n.set_draining(now, false);
    }
    sim.flush(3);
    for i in 40..45 {
        sim.client_send(i);
        sim.step();
    }
    assert_eq!(
        sim.run_until_settled(5_000),
        3,
        "undrained, the highest id leads again"
    );
    sim.check_histories();
}

/// With a retention limit, servers keep a window of the history; a restarted server is sent
/// the window, and every retained acknowledged message stays where it was acknowledged.
#[test]
fn retention_keeps_a_window_and_restarted_servers_get_it() {
    for seed in [51, 52, 53] {
        let mut sim = Sim::new(seed, seed % 2 == 0);
        sim.cfg.history_retention = 120;
        for id in 1..=3 {
            sim.start(id);
        }
        sim.run_until_settled(5_000);
        let mut msg = 0;
        for round in 0..4u64 {
            for _ in 0..150 {
                sim.client_send(msg);
                msg += 1;
                if msg % 5 == 0 {
                    sim.step();
                }
            }
            // Crash and restart a follower, then (once) the leader.
            let victim = if round == 2 { 3 } else { 1 + round % 2 };
            sim.crash(victim);
            sim.run_for(100);
            sim.start(victim);
            sim.run_until_settled(10_000);
        }
        let live = sim.live();
        let leader = sim.check_one_leader();
        let last = sim.node(leader).log().last_seq();
        let base = live
            .iter()
            .map(|id| sim.node(*id).log().base())
            .max()
            .unwrap();
        assert!(base > 0, "seed {seed}: nothing was ever dropped");
        for id in &live {
            let log = sim.node(*id).log();
            assert_eq!(log.last_seq(), last, "seed {seed}: server {id}");
            assert!(
                log.len() <= 120 + 120 / 8 + 150,
                "seed {seed}: server {id} keeps {}",
                log.len()
            );
            for seq in base + 1..=last {
                assert_eq!(
                    log.get(seq),
                    sim.node(leader).log().get(seq),
                    "seed {seed}: {id} at {seq}"
                );
            }
        }
        for m in &sim.msgs {
            if let Some(seq) = m.acked_seq.filter(|s| *s > base) {
                assert_eq!(
                    sim.node(leader).log().get(seq).map(|e| e.message_id),
                    Some(m.key.1.as_str())
                );
            }
        }
    }
}

#[test]
fn a_lone_drained_leader_gives_way_when_others_return() {
    let mut sim = Sim::new(61, true);
    sim.start(3);
    assert_eq!(sim.run_until_settled(5_000), 3);
    let now = sim.now;
    if let Some(Some(n)) = sim.nodes.get_mut(&3) {
        n.set_draining(now, true);
    }
    sim.flush(3);
    sim.run_for(200);
    assert_eq!(sim.serving_leader(), Some(3), "alone, it keeps leading");
    sim.start(1);
    sim.start(2);
    assert_eq!(
        sim.run_until_settled(10_000),
        2,
        "the highest server not drained leads"
    );
}

#[test]
fn static_peers_form_a_ring_without_multicast() {
    let mut sim = Sim::new(11, false);
    for id in [4, 1, 6, 2] {
        sim.start(id);
        sim.run_for(30);
    }
    // Servers started before a peer existed learn of it when it asks them to join.
    assert_eq!(sim.run_until_settled(10_000), 6);
}

#[test]
fn partition_heals_to_one_leader() {
    let mut sim = Sim::new(5, true);
    for id in 1..=5 {
        sim.start(id);
    }
    sim.run_until_settled(5_000);
    sim.partition(&[1, 2]);
    sim.run_for(3_000);
    let a = sim.node(2);
    assert_eq!(
        a.role(),
        Role::Leader,
        "the minority side elects its own leader"
    );
    assert_ne!(
        a.epoch(),
        sim.node(5).epoch(),
        "two leaders never share an epoch"
    );
    sim.heal();
    assert_eq!(sim.run_until_settled(15_000), 5);
    sim.check_histories();
}

/// Chang-Roberts' bound for one round: at most n(n+1)/2 votes and n announcements.
fn assert_message_bound(sim: &Sim, n: usize) {
    let leader = sim.serving_leader().unwrap();
    let epoch = sim.node(leader).epoch();
    let votes = sim.votes.get(&epoch).copied().unwrap_or(0);
    let ann = sim.announcements.get(&epoch).copied().unwrap_or(0);
    assert!(votes <= n * (n + 1) / 2, "{votes} votes for {n} servers");
    assert!(ann <= n, "{ann} announcements for {n} servers");
}

proptest! {
    #![proptest_config(config(64))]

    /// Any id set, any start order, any latencies: one leader, the highest id, within
    /// the message bound of its round.
    #[test]
    fn election_elects_the_highest_id(
        ids in proptest::collection::btree_set(1u64..200, 1..8),
        seed in any::<u64>(),
        gaps in proptest::collection::vec(0u64..60, 8),
    ) {
        let mut sim = Sim::new(seed, true);
        let mut order: Vec<NodeId> = ids.iter().copied().collect();
        let mut rng = SmallRng::seed_from_u64(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for (i, id) in order.iter().enumerate() {
            sim.start(*id);
            sim.run_for(gaps[i] / STEP_MS * STEP_MS);
        }
        let leader = sim.run_until_settled(20_000);
        prop_assert_eq!(leader, *ids.iter().max().unwrap());
        assert_message_bound(&sim, ids.len());
    }

    /// Random crashes and restarts under load never lose or duplicate an acked message,
    /// never give two leaders one epoch, and end in identical histories.
    #[test]
    fn replication_survives_random_crashes(
        seed in any::<u64>(),
        n in 2usize..6,
        faults in proptest::collection::vec((0u64..400, any::<bool>()), 1..6),
    ) {
        crash_scenario(seed, n, &faults);
    }

    /// The same in quorum mode: every acknowledged message stays at its sequence number,
    /// and no sequence number is acknowledged for two messages.
    #[test]
    fn quorum_survives_random_crashes(
        seed in any::<u64>(),
        n in 3usize..6,
        faults in proptest::collection::vec((0u64..400, any::<bool>()), 1..6),
    ) {
        crash_scenario_in(ReplicationMode::Quorum { cluster_size: n }, seed, n, &faults);
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Partitions under load, each side serving on its own, then healed: one leader (the
    /// highest id), one history, every acknowledged message in it once.
    #[test]
    fn partitions_heal_into_one_history(
        seed in any::<u64>(),
        n in 3usize..6,
        cuts in proptest::collection::vec((1u64..5, 100u64..1500), 1..4),
        multicast in any::<bool>(),
    ) {
        partition_scenario(seed, n, &cuts, multicast);
    }
}

fn partition_scenario(seed: u64, n: usize, cuts: &[(u64, u64)], multicast: bool) {
    let mut sim = Sim::new(seed, multicast);
    run_partitions(&mut sim, n, cuts);
    sim.check_merged_histories();
}

/// Starts `n` servers, cuts and heals the ring as `cuts` says with clients on every side,
/// and waits until one leader (the highest id) serves one history.
fn run_partitions(sim: &mut Sim, n: usize, cuts: &[(u64, u64)]) {
    let ids: Vec<NodeId> = (1..=n as NodeId).collect();
    for id in &ids {
        sim.start(*id);
    }
    sim.run_until_settled(10_000);
    let mut msg = 0;
    for &(mask, duration) in cuts {
        let side: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|id| (mask >> (id % 3)) & 1 == 1)
            .collect();
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("t={} PARTITION {side:?}", sim.now);
        }
        sim.partition(&side);
        for _ in 0..duration / STEP_MS {
            if msg % 3 == 0 {
                // Clients on both sides: each side's leader takes messages.
                sim.client_send_everywhere(msg);
            }
            msg += 1;
            sim.step();
        }
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("t={} HEAL", sim.now);
        }
        sim.heal();
        sim.run_for(200);
    }
    let leader = sim.run_until_settled(30_000);
    assert_eq!(leader, n as NodeId);
}

fn crash_scenario(seed: u64, n: usize, faults: &[(u64, bool)]) {
    crash_scenario_in(ReplicationMode::Available, seed, n, faults);
}

fn crash_scenario_in(mode: ReplicationMode, seed: u64, n: usize, faults: &[(u64, bool)]) {
    let mut sim = Sim::new(seed, true);
    sim.cfg.mode = mode;
    let ids: Vec<NodeId> = (1..=n as NodeId).collect();
    for id in &ids {
        sim.start(*id);
    }
    sim.run_until_settled(10_000);
    let mut msg = 0;
    for &(delay, restart) in faults {
        for _ in 0..delay / STEP_MS {
            sim.client_send(msg);
            msg += 1;
            sim.step();
        }
        let live = sim.live();
        let v = ids[(seed as usize + msg) % ids.len()];
        if restart {
            // Crash and bring back one server (maybe the leader).
            if !live.contains(&v) {
                sim.start(v);
            } else if sim.safe_to_crash(v) {
                sim.crash(v);
                sim.run_for(50);
                sim.start(v);
            }
        } else {
            let v = live[(seed as usize + msg) % live.len()];
            // In quorum mode a ring that lost its majority for good stops taking writes.
            let keeps_majority = mode.majority().is_none_or(|m| live.len() > m);
            if sim.safe_to_crash(v) && keeps_majority {
                sim.crash(v);
            }
        }
        sim.run_for(20);
    }
    if mode != ReplicationMode::Available {
        // Entries a new leader adopted from an older epoch are acknowledged with the first
        // message of its own epoch (or once every server stores them): a client sends one.
        sim.client_send(msg);
    }
    sim.run_until_settled(30_000);
    sim.check_histories();
}

/// ARCHITECTURE.md section 9's case: with a retention limit, the winner of a partition
/// took far more messages than its window holds, numbered past everything the losing side
/// took. Every message acknowledged on the losing side must still be merged, once.
#[test]
fn regression_retention_merge_keeps_the_losing_side() {
    for (seed, multicast) in [(71, true), (72, false), (73, true), (74, false)] {
        retention_merge_scenario(seed, multicast, 300, 20);
    }
}

/// The losing side took more than its own window after the partition point: what it still
/// holds is merged, and nothing is stored twice.
#[test]
fn retention_merge_with_both_sides_beyond_the_window() {
    retention_merge_scenario(75, true, 400, 100);
    retention_merge_scenario(76, false, 130, 125);
}

fn retention_merge_scenario(seed: u64, multicast: bool, winner_msgs: usize, loser_msgs: usize) {
    let mut sim = Sim::new(seed, multicast);
    sim.cfg.history_retention = 120;
    for id in 1..=3 {
        sim.start(id);
    }
    assert_eq!(sim.run_until_settled(5_000), 3);
    for i in 0..30 {
        sim.client_send(i);
        sim.step();
    }
    sim.run_until_settled(5_000);
    sim.partition(&[1, 2]);
    sim.run_for(3_000);
    assert!(
        sim.node(2).is_serving_leader(),
        "seed {seed}: side {{1, 2}} leads"
    );
    assert!(
        sim.node(3).is_serving_leader(),
        "seed {seed}: side {{3}} leads"
    );
    for i in 0..winner_msgs.max(loser_msgs) {
        if i < winner_msgs {
            sim.send_to(3, "winner", i);
        }
        if i < loser_msgs {
            sim.send_to(2, "loser", i);
        }
        if i % 5 == 0 {
            sim.step();
        }
    }
    sim.run_for(500);
    let loser_acked: Vec<(String, String)> = sim
        .msgs
        .iter()
        .filter(|m| m.key.0 == "loser" && m.acked_seq.is_some())
        .map(|m| m.key.clone())
        .collect();
    assert_eq!(
        loser_acked.len(),
        loser_msgs,
        "seed {seed}: all acked on {{1, 2}}"
    );
    // What the losing side still holds at the heal is what can be merged.
    let held: Vec<(String, String)> = loser_acked
        .iter()
        .filter(|k| sim.node(2).log().find(&k.0, &k.1).is_some())
        .cloned()
        .collect();
    sim.heal();
    assert_eq!(sim.run_until_settled(20_000), 3, "seed {seed}");
    let live = sim.live();
    let leader_log = sim.node(3).log();
    let base = live
        .iter()
        .map(|id| sim.node(*id).log().base())
        .max()
        .unwrap();
    for id in &live {
        let log = sim.node(*id).log();
        assert_eq!(log.last_seq(), leader_log.last_seq(), "seed {seed}: {id}");
        let mut seen = HashSet::new();
        for seq in base + 1..=log.last_seq() {
            let e = log.get(seq).unwrap();
            assert_eq!(Some(e), leader_log.get(seq), "seed {seed}: {id} at {seq}");
            assert!(seen.insert((e.client_id, e.message_id)), "twice");
        }
        // The merged messages come last; the window of the merged history (120) then holds
        // the newest of them at least.
        for k in held.iter().rev().take(100) {
            assert!(
                log.find(&k.0, &k.1).is_some(),
                "seed {seed}: {k:?}, acked on the losing side, lost on {id}"
            );
        }
    }
    if loser_msgs < 120 {
        assert_eq!(
            held.len(),
            loser_msgs,
            "seed {seed}: the losing side kept them all"
        );
    }
}

/// After a merge the winner knows which client views are gone: a client of the losing side
/// that holds messages past the point where the sides diverged must be reset, a client that
/// holds only the common history must not.
#[test]
fn a_merge_invalidates_the_losing_sides_views_only() {
    let mut sim = Sim::new(81, true);
    for id in 1..=3 {
        sim.start(id);
    }
    sim.run_until_settled(5_000);
    for i in 0..10 {
        sim.client_send(i);
        sim.step();
    }
    sim.run_until_settled(5_000);
    let common = sim.node(3).log().last_seq();
    sim.partition(&[1, 2]);
    sim.run_for(3_000);
    for i in 0..30 {
        sim.send_to(3, "winner", i);
        if i < 20 {
            sim.send_to(2, "loser", i);
        }
        sim.step();
    }
    sim.run_for(500);
    let loser_view = sim.node(2).commit_seq();
    assert_eq!(loser_view, common + 20);
    assert!(!sim.node(3).view_invalidated(loser_view), "no merge yet");
    sim.heal();
    // While the merge runs, a view beyond the common part shown so far is already gone.
    let merging = |sim: &Sim| {
        sim.node(3)
            .followers()
            .values()
            .any(|p| p.state == ringchat_core::FollowerState::Merging)
    };
    let deadline = sim.now + 10_000;
    while !merging(&sim) && sim.now < deadline {
        sim.step();
    }
    assert!(merging(&sim), "the winner merges the losing side");
    assert!(sim.node(3).view_invalidated(loser_view));
    assert_eq!(sim.run_until_settled(20_000), 3);
    sim.check_merged_histories();
    let winner = sim.node(3);
    assert!(winner.view_invalidated(loser_view));
    assert!(winner.view_invalidated(common + 1));
    assert!(
        !winner.view_invalidated(common),
        "the common history is still valid"
    );
    assert!(
        !winner.view_invalidated(common + 30),
        "the winner's own clients' views beyond the merged side stay valid"
    );
}

fn quorum_sim(seed: u64, multicast: bool, n: usize) -> Sim {
    let mut sim = Sim::new(seed, multicast);
    sim.cfg.mode = ReplicationMode::Quorum { cluster_size: n };
    for id in 1..=n as NodeId {
        sim.start(id);
    }
    sim
}

/// Quorum mode: a leader whose followers are stopped takes no writes and gives no
/// acknowledgement; once they are back it serves again, with nothing lost.
#[test]
fn quorum_leader_without_a_majority_refuses_writes() {
    for (seed, multicast) in [(91, true), (92, false)] {
        let mut sim = quorum_sim(seed, multicast, 3);
        assert_eq!(sim.run_until_settled(5_000), 3);
        for i in 0..10 {
            sim.client_send(i);
            sim.step();
        }
        sim.run_until_settled(5_000);
        sim.frozen.insert(1);
        sim.frozen.insert(2);
        // Sent just as the followers stop: stored on the leader only, never acknowledged.
        sim.send_to(3, "late", 0);
        sim.run_for(2_000);
        assert!(!sim.node(3).is_serving_leader(), "seed {seed}");
        assert_eq!(
            sim.node(3).role(),
            Role::Leader,
            "seed {seed}: it keeps its ring"
        );
        assert!(sim.msgs.iter().all(|m| m.key.0 != "late"), "seed {seed}");
        let now = sim.now;
        let r = sim.nodes.get_mut(&3).unwrap().as_mut().unwrap().propose(
            now,
            Proposal {
                client_id: "c".into(),
                message_id: "x".into(),
                username: "u".into(),
                content: "x".into(),
                timestamp: 0.0,
            },
        );
        assert_eq!(r, Err(ringchat_core::ProposeError::NoLeader), "seed {seed}");
        sim.thaw(1);
        sim.thaw(2);
        for i in 10..20 {
            sim.client_send(i);
            sim.step();
        }
        assert_eq!(sim.run_until_settled(10_000), 3, "seed {seed}");
        sim.check_histories();
    }
}

/// Quorum mode: a server cut off alone never leads, whatever its id.
#[test]
fn quorum_minority_elects_no_leader() {
    let mut sim = quorum_sim(93, true, 5);
    assert_eq!(sim.run_until_settled(5_000), 5);
    sim.partition(&[4, 5]);
    sim.run_for(4_000);
    assert!(!sim.node(5).is_serving_leader() && !sim.node(4).is_serving_leader());
    assert!(
        sim.node(3).is_serving_leader(),
        "the majority {{1, 2, 3}} leads"
    );
    for i in 0..20 {
        sim.send_to(3, "majority", i);
        sim.step();
    }
    sim.run_for(500);
    sim.heal();
    assert_eq!(sim.run_until_settled(20_000), 5);
    sim.check_histories();
}

proptest! {
    #![proptest_config(config(32))]

    /// Quorum mode under partitions and heals: no sequence number is acknowledged for two
    /// messages, and every acknowledged message keeps its sequence number on every server
    /// (so no merge ever had to renumber an acknowledged message).
    #[test]
    fn quorum_partitions_never_reconcile_acked_messages(
        seed in any::<u64>(),
        n in 3usize..6,
        cuts in proptest::collection::vec((1u64..5, 100u64..1500), 1..4),
        multicast in any::<bool>(),
    ) {
        quorum_partition_scenario(seed, n, &cuts, multicast);
    }
}

/// Followers that rejoin caught up complete the leader's majority: the commit point must
/// move then, not only on the next acknowledgement.
#[test]
fn regression_quorum_partition_1() {
    quorum_partition_scenario(1652977559667763460, 4, &[(3, 410)], true);
}

/// A leader on a minority whose epoch a joiner raised must step down, not lead on in the
/// joiner's epoch (two leaders in one epoch).
#[test]
fn regression_quorum_partition_2() {
    quorum_partition_scenario(
        3821207231170431738,
        4,
        &[(1, 165), (3, 395), (2, 460)],
        false,
    );
}

/// The side that took the highest id's majority away acknowledged messages; the old
/// leader, back with a longer history from an older epoch, must take theirs, not merge it.
#[test]
fn regression_quorum_partition_3() {
    quorum_partition_scenario(473117079165898642, 5, &[(2, 185), (3, 1140)], true);
}

/// A leader that re-issued entries an earlier leader had committed: the old leader, back,
/// takes the re-issued copies over its own, so every server ends with the same entries.
#[test]
fn regression_quorum_partition_4() {
    quorum_partition_scenario(0, 3, &[(2, 120), (1, 545)], true);
}

fn quorum_partition_scenario(seed: u64, n: usize, cuts: &[(u64, u64)], multicast: bool) {
    let mut sim = Sim::new(seed, multicast);
    sim.cfg.mode = ReplicationMode::Quorum { cluster_size: n };
    run_partitions(&mut sim, n, cuts);
    sim.check_histories();
}

/// A follower cut off alone leads a ring of one in a newer epoch. When it is back, the
/// established, higher leader must not yield to it (the chaos suite's follower-flap saw it
/// do so: its clients went to the flapper before the flapper had merged it, and the
/// majority's acknowledged messages were renumbered behind what the flapper took
/// meanwhile). Every message the majority committed keeps its sequence number, and the
/// highest id leads.
#[test]
fn a_cut_follower_that_led_alone_does_not_renumber_the_majority() {
    for (seed, multicast) in [(91, true), (92, false), (93, true), (94, false)] {
        let mut sim = Sim::new(seed, multicast);
        for id in 1..=5 {
            sim.start(id);
        }
        assert_eq!(sim.run_until_settled(5_000), 5);
        for i in 0..10 {
            sim.client_send(i);
            sim.step();
        }
        sim.run_until_settled(5_000);
        sim.partition(&[2]);
        sim.run_for(3_000);
        assert_eq!(
            sim.node(2).role(),
            Role::Leader,
            "seed {seed}: 2 leads alone"
        );
        assert!(sim.node(2).epoch() > sim.node(5).epoch(), "seed {seed}");
        for i in 10..40 {
            sim.send_to(5, "majority", i);
            sim.step();
        }
        sim.run_for(500);
        let committed: Vec<(Seq, String)> = {
            let log = sim.node(5).log();
            (1..=sim.node(5).commit_seq())
                .filter_map(|s| log.get(s).map(|e| (s, e.message_id.to_string())))
                .collect()
        };
        assert!(committed.len() >= 40, "seed {seed}: the majority committed");
        sim.heal();
        // A link's queue delivers what the leader sent before it took 2 for failed: 2,
        // leading a newer epoch, refuses it and answers with its own ring (to a heartbeat)
        // or its own state (to a batch). Both tell 5 of a newer epoch.
        let epoch = sim.node(5).epoch();
        let stale = if seed % 2 == 0 {
            PeerBody::Heartbeat {
                epoch,
                nonce: 1,
                leader: Some(5),
            }
        } else {
            PeerBody::ReplicationSync {
                epoch,
                prev_seq: 0,
                prev_epoch: 0,
                entries: Vec::new(),
                reset: false,
                commit: 0,
            }
        };
        sim.transmit(5, 2, stale);
        // Clients keep writing to whoever serves while the two leaders meet.
        for i in 40..400 {
            sim.client_send(i);
            sim.step();
        }
        assert_eq!(sim.run_until_settled(15_000), 5, "seed {seed}");
        // What the flapper took on its own may move (it lost the merge); what the
        // majority committed may not.
        sim.check_merged_histories();
        for id in sim.live() {
            let log = sim.node(id).log();
            for (seq, message_id) in &committed {
                assert_eq!(
                    log.get(*seq).map(|e| e.message_id),
                    Some(message_id.as_str()),
                    "seed {seed}: server {id} moved the committed message at {seq}"
                );
            }
        }
    }
}
