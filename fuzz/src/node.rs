//! Fuzz bodies for the state machine of `ringchat-core`: arbitrary inputs into one
//! [`Node`], and arbitrary delivery schedules among a few honest ones.
//!
//! The input bytes are read as a script ([`Script`]): each step takes a few bytes and
//! becomes a tick, a ring message with arbitrary fields from an arbitrary (often unknown)
//! sender, a discovery, a lost peer or a client proposal. After every step the node's own
//! invariants are checked. `ringchat-core/tests/fuzz_bodies.rs` includes this file and runs
//! it under proptest; `fuzz/fuzz_targets/node_inputs.rs` and `ring_schedule.rs` run it under
//! libFuzzer.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ringchat_core::{Action, CoreConfig, Input, Node, Proposal, ProposeOutcome, Role};
use ringchat_proto::peer::{LeaveReason, NodeInfo, PeerBody, PeerMessage};
use ringchat_proto::{ChatEntry, Epoch, NodeId, Seq};

/// The id of the node under test in [`node_inputs`]: ids below and above it both occur.
const ME: NodeId = 5;

/// Steps per script at most, so that one input stays fast.
const MAX_STEPS: usize = 400;

/// Reads values out of fuzz input; once the bytes run out every read is 0.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn done(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// True about once in `n` reads.
    fn one_in(&mut self, n: u8) -> bool {
        self.byte().is_multiple_of(n)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.byte()))
    }

    /// Mostly a small id (the node itself and its neighbours), sometimes any `u64`.
    fn id(&mut self) -> NodeId {
        match self.byte() {
            b @ 0..=239 => NodeId::from(b % 12),
            240..=247 => 1000 + NodeId::from(self.byte()),
            _ => self.u64(),
        }
    }

    /// Near `around` (equal, a little above or below), at the top of the range, or any
    /// `u64`: the interesting cases are "same", "newer", "older" and "absurd".
    fn near(&mut self, around: u64) -> u64 {
        let d = u64::from(self.byte() % 8);
        match self.byte() % 16 {
            0..=4 => around,
            5..=8 => around.saturating_add(d),
            9..=12 => around.saturating_sub(d),
            13 => u64::MAX - d,
            _ => self.u64(),
        }
    }

    fn info(&mut self) -> NodeInfo {
        info(self.id())
    }

    fn entries(&mut self, after: Seq, epoch: Epoch) -> Vec<ChatEntry> {
        let n = self.byte() % 5;
        let mut seq = self.near(after).saturating_add(1);
        (0..n)
            .map(|_| {
                let e = entry(seq, self.near(epoch), self.byte() % 4);
                seq = if self.one_in(8) {
                    self.near(seq)
                } else {
                    seq.saturating_add(1)
                };
                e
            })
            .collect()
    }

    /// A ring message of any kind, its numbers near the receiver's own.
    fn body(&mut self, node: &Node) -> PeerBody {
        let epoch = self.near(node.epoch());
        let last = node.log().last_seq();
        match self.byte() % 13 {
            0 => PeerBody::RingJoinRequest {
                node: self.info(),
                epoch,
                last_seq: self.near(last),
                last_epoch: self.near(node.log().last_epoch()),
                probe: self.bool(),
            },
            1 => PeerBody::RingJoinAccept {
                node: self.info(),
                leader: self.bool().then(|| self.info()),
                epoch,
                accepted: self.bool(),
            },
            2 => PeerBody::RingUpdate {
                epoch,
                members: (0..self.byte() % 6).map(|_| self.info()).collect(),
                version: self.near(0),
            },
            3 => PeerBody::RingLeave {
                epoch,
                node: self.id(),
                reason: if self.bool() {
                    LeaveReason::Left
                } else {
                    LeaveReason::Failed
                },
            },
            4 => PeerBody::Heartbeat {
                epoch,
                nonce: self.near(0),
                leader: self.bool().then(|| self.id()),
            },
            5 => PeerBody::HeartbeatAck {
                epoch,
                nonce: self.near(0),
            },
            6 => PeerBody::ElectionStart { epoch },
            7 => PeerBody::ElectionVote {
                epoch,
                candidate: self.id(),
            },
            8 => PeerBody::ElectionLeader {
                epoch,
                leader: self.info(),
            },
            9 => {
                let prev_seq = self.near(last);
                PeerBody::ReplicationSync {
                    epoch,
                    prev_seq,
                    prev_epoch: self.near(node.log().last_epoch()),
                    entries: self.entries(prev_seq, epoch),
                    reset: self.one_in(4),
                    commit: self.near(last),
                }
            }
            10 => PeerBody::ReplicationAck {
                epoch,
                last_seq: self.near(last),
                last_epoch: self.near(node.log().last_epoch()),
                ok: self.bool(),
                draining: self.one_in(8),
            },
            11 => PeerBody::SyncRequest {
                epoch,
                from_seq: self.near(last),
                limit: self.near(100),
            },
            _ => {
                let from = self.near(0);
                PeerBody::SyncResponse {
                    epoch,
                    entries: self.entries(from, epoch),
                    last_seq: self.near(last),
                }
            }
        }
    }
}

fn info(id: NodeId) -> NodeInfo {
    NodeInfo {
        id,
        address: "fuzz".into(),
        port: id as u16,
        client_port: (id as u16).wrapping_add(100),
    }
}

fn entry(seq: Seq, epoch: Epoch, client: u8) -> ChatEntry {
    ChatEntry {
        message_id: format!("m{seq}"),
        sequence_number: seq,
        client_id: format!("c{client}"),
        username: "u".into(),
        content: "x".into(),
        timestamp: 0.0,
        delivered: true,
        epoch,
    }
}

fn proposal(client: u8, message: u8) -> Proposal {
    Proposal {
        client_id: format!("c{client}"),
        message_id: format!("p{message}"),
        username: "u".into(),
        content: "x".into(),
        timestamp: 0.0,
    }
}

fn config(script: &mut Script<'_>) -> CoreConfig {
    CoreConfig {
        history_retention: [0, 4, 16][usize::from(script.byte() % 3)],
        sync_chunk_size: 1 + usize::from(script.byte() % 8),
        max_inflight_entries: 1 + u64::from(script.byte() % 16),
        ..CoreConfig::default()
    }
}

/// What is checked of one node after every step, given the epoch it had before.
fn check_node(node: &Node, epoch_before: Epoch) {
    let log = node.log();
    let me = node.me().id;
    assert!(
        node.epoch() >= epoch_before,
        "node {me}: epoch went back from {epoch_before} to {}",
        node.epoch()
    );
    assert!(
        node.commit_seq() <= log.last_seq(),
        "node {me}: commit {} beyond its last entry {}",
        node.commit_seq(),
        log.last_seq()
    );
    assert!(log.base() <= log.last_seq(), "node {me}: base beyond last");
    assert_eq!(
        log.len() as u64,
        log.last_seq() - log.base(),
        "node {me}: log length"
    );
    for seq in log.base().saturating_add(1)..=log.last_seq() {
        let e = log
            .get(seq)
            .expect("an entry between base and last is held");
        assert_eq!(e.sequence_number, seq, "node {me}: entry out of place");
        assert_eq!(
            log.find(e.client_id, e.message_id),
            Some(seq),
            "node {me}: dedup index out of step"
        );
    }
    if node.role() == Role::Leader {
        assert_eq!(
            node.leader().map(|l| l.id),
            Some(me),
            "node {me}: a leader follows another"
        );
    }
    assert!(node.ring().contains(me), "node {me}: not in its own ring");
}

/// Checks what a node asks its driver to do: it never sends to itself.
fn check_actions(me: NodeId, actions: &[Action]) {
    for a in actions {
        if let Action::Send { to, .. } = a {
            assert_ne!(to.id, me, "node {me} sends to itself");
        }
    }
}

/// Feeds one node (id 5) the script in `data`: ticks, arbitrary ring messages from
/// arbitrary senders (unknown ids, absurd epochs and sequence numbers, out of order),
/// discoveries, lost peers and client proposals. It must never panic and must keep its
/// invariants after every step (epoch never decreases, commit never beyond the last entry,
/// a contiguous and indexed history, a leader leads itself).
pub fn node_inputs(data: &[u8]) {
    let mut script = Script { data };
    let cfg = config(&mut script);
    let mut now = 0;
    let mut node = Node::new(cfg, info(ME), now);
    let mut last_input;
    for _ in 0..MAX_STEPS {
        if script.done() {
            break;
        }
        let before = node.epoch();
        match script.byte() % 8 {
            0 | 1 => {
                now += u64::from(script.byte()) * 8;
                last_input = format!("t={now} tick");
                node.step(now, Input::Tick);
            }
            2..=4 => {
                let from = script.id();
                let body = script.body(&node);
                let msg = PeerMessage {
                    from,
                    sender_id: String::new(),
                    timestamp: 0.0,
                    cluster: if script.one_in(16) {
                        "other".into()
                    } else {
                        "ringchat".into()
                    },
                    origin: script.bool().then(|| script.info()),
                    body,
                };
                last_input = format!("t={now} {msg:?}");
                node.step(now, Input::Peer(msg));
            }
            5 => {
                let input = Input::Discovered {
                    node: script.info(),
                    leader: script.bool().then(|| script.info()),
                    epoch: script.near(node.epoch()),
                };
                last_input = format!("t={now} {input:?}");
                node.step(now, input);
            }
            6 => {
                let id = script.id();
                last_input = format!("t={now} unreachable {id}");
                node.step(now, Input::PeerUnreachable(id));
            }
            _ => {
                last_input = format!("t={now} propose");
                let serving = node.is_serving_leader();
                let last = node.log().last_seq();
                let p = proposal(script.byte() % 4, script.byte() % 32);
                match node.propose(now, p) {
                    Ok(ProposeOutcome::Appended(seq)) => {
                        assert!(serving, "a node that does not serve took a proposal");
                        assert_eq!(seq, last + 1, "a new message is appended at the end");
                    }
                    Ok(ProposeOutcome::Duplicate(seq)) => assert!(seq <= last),
                    Err(_) => assert!(!serving, "a serving leader refused a proposal"),
                }
            }
        }
        trace(&node, &last_input);
        check_node(&node, before);
        check_actions(ME, &node.take_actions());
    }
}

/// With `FUZZ_TRACE` set, prints each step and the state after it (to replay a failure).
fn trace(node: &Node, what: &dyn std::fmt::Debug) {
    if std::env::var_os("FUZZ_TRACE").is_some() {
        eprintln!(
            "{what:?}\n  -> n{} {:?} e={} leader={:?} last={} commit={} ring={:?}",
            node.me().id,
            node.role(),
            node.epoch(),
            node.leader().map(|l| l.id),
            node.log().last_seq(),
            node.commit_seq(),
            node.ring().ids()
        );
    }
}

/// A frame in flight between two honest nodes.
struct Frame {
    from: NodeId,
    body: PeerBody,
}

/// Runs three honest nodes (ids 1, 2, 3) whose every delivery the script decides: which
/// link delivers its next frame, which loses it (a broken connection), who ticks and by
/// how much, who is told a peer is unreachable, who gets a client proposal. Links are
/// FIFO like TCP. Besides each node's own invariants, at most one node may ever lead in
/// one epoch.
pub fn ring_schedule(data: &[u8]) {
    const IDS: [NodeId; 3] = [1, 2, 3];
    let mut script = Script { data };
    let cfg = config(&mut script);
    let mut now = 0;
    let mut nodes: BTreeMap<NodeId, Node> = IDS
        .iter()
        .map(|&id| {
            let mut c = cfg.clone();
            c.seeds = IDS
                .iter()
                .filter(|o| **o != id)
                .map(|o| ("fuzz".to_string(), *o as u16))
                .collect();
            (id, Node::new(c, info(id), now))
        })
        .collect();
    let mut links: HashMap<(NodeId, NodeId), VecDeque<Frame>> = HashMap::new();
    let mut leaders: HashMap<Epoch, NodeId> = HashMap::new();
    for _ in 0..MAX_STEPS {
        if script.done() {
            break;
        }
        let id = IDS[usize::from(script.byte()) % IDS.len()];
        let other = IDS[usize::from(script.byte()) % IDS.len()];
        let Some(node) = nodes.get_mut(&id) else {
            continue;
        };
        let before = node.epoch();
        match script.byte() % 8 {
            0..=3 => {
                let Some(frame) = links.get_mut(&(other, id)).and_then(VecDeque::pop_front) else {
                    continue;
                };
                let msg = PeerMessage {
                    from: frame.from,
                    sender_id: String::new(),
                    timestamp: 0.0,
                    cluster: "ringchat".into(),
                    origin: Some(info(frame.from)),
                    body: frame.body,
                };
                node.step(now, Input::Peer(msg));
            }
            4 => {
                if let Some(q) = links.get_mut(&(other, id)) {
                    q.pop_front();
                }
                continue;
            }
            5 | 6 => {
                now += u64::from(script.byte()) * 4;
                node.step(now, Input::Tick);
            }
            _ => {
                if script.one_in(4) && other != id {
                    node.step(now, Input::PeerUnreachable(other));
                } else {
                    let _ = node.propose(now, proposal(0, script.byte()));
                }
            }
        }
        trace(node, &format_args!("t={now} step of n{id}"));
        check_node(node, before);
        let actions = node.take_actions();
        check_actions(id, &actions);
        if node.role() == Role::Leader {
            let prev = leaders.insert(node.epoch(), id);
            assert!(
                prev.is_none_or(|p| p == id),
                "two leaders in epoch {}: {prev:?} and {id}",
                node.epoch()
            );
        }
        for a in actions {
            let (to, body) = match a {
                Action::Send { to, body } => (to.id, body),
                Action::SendToAddress { port, body, .. } => (NodeId::from(port), body),
                Action::Notice(_) => continue,
            };
            if IDS.contains(&to) {
                links
                    .entry((id, to))
                    .or_default()
                    .push_back(Frame { from: id, body });
            }
        }
    }
}
