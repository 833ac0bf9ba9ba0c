//! The node task's loop: events in, state machine step, actions out, commits delivered.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use ringchat_core::{Action, Input, Node, Notice, Proposal, ProposeError, ProposeOutcome, Role};
use ringchat_proto::client::ClientRequest;
use ringchat_proto::frame::frame_json;
use ringchat_proto::ids::{server_sender_id, unix_timestamp};
use ringchat_proto::peer::PeerBody;
use ringchat_proto::server::{ErrorMessage, LeaderInfo, ServerMessage, ServerMessageRef};
use ringchat_proto::{ErrorCode, NodeId, Seq};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clients::{Clients, ConnId};
use super::history::history_frames;
use super::links::Links;
use super::{Event, NodeView};
use crate::net::peer_link::LinkConfig;
use crate::ops::{Controls, metrics, systemd};
use crate::settings::Settings;

/// How often timers are checked.
const TICK: Duration = Duration::from_millis(10);
/// Events handled before actions are carried out: proposals arriving together share one
/// replication frame per follower.
const BATCH: usize = 512;
/// How long a leaving leader waits for its successor before it goes anyway.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// Events handled before a timer tick at most (bounds the tick's delay).
const PENDING_BEFORE_TICK: usize = 16_384;
/// Most entries a reconnecting client is sent; a larger gap resets its view.
const MAX_CATCH_UP: Seq = 10_000;

/// Owns the state machine; see the module docs of [`crate::node`].
pub struct NodeTask {
    pub(super) settings: Settings,
    pub(super) node: Node,
    events: mpsc::Receiver<Event>,
    links: Links,
    pub(super) clients: Clients,
    view: watch::Sender<NodeView>,
    pub(super) started: Instant,
    broadcast_upto: Seq,
    /// Senders waiting for `message_delivered`, by the sequence number their message got
    /// (fixed while we lead), with when each message arrived.
    waiters: HashMap<Seq, Vec<(ConnId, Instant)>>,
    /// When the current election round started, for its duration.
    election_since: Option<Instant>,
    ticks: u64,
    /// Runtime controls: log level, configuration reload, the shared text limit.
    pub(super) controls: Controls,
    /// `ringchatctl leave` asked us to go.
    pub(super) leave_requested: bool,
    /// We stopped leading and wait (briefly) to name the new leader to our clients.
    handoff_since: Option<Instant>,
    /// Followers whose lag gauges we set last time.
    lag_reported: std::collections::BTreeSet<NodeId>,
    /// Quorum mode: we lead a ring without a majority. Clients stay, writes are refused.
    stalled: bool,
}

impl NodeTask {
    /// A node task for `settings`; `events_tx` is the sender drivers use (links report on it).
    pub fn new(
        settings: Settings,
        events: mpsc::Receiver<Event>,
        events_tx: mpsc::Sender<Event>,
        controls: Controls,
    ) -> (Self, watch::Receiver<NodeView>) {
        let node = Node::new(settings.core.clone(), settings.node_info(), 0);
        let link_cfg = LinkConfig {
            connect_timeout: Duration::from_millis(settings.core.heartbeat_timeout),
            write_timeout: Duration::from_millis(settings.core.heartbeat_timeout.max(1000)),
            auth: settings.ring_auth(),
        };
        let links = Links::new(
            settings.node_info(),
            settings.cluster.clone(),
            link_cfg,
            events_tx,
        );
        let (view, view_rx) = watch::channel(view_of(&node));
        (
            Self {
                settings,
                node,
                events,
                links,
                clients: Clients::default(),
                view,
                started: Instant::now(),
                broadcast_upto: 0,
                waiters: HashMap::new(),
                election_since: None,
                ticks: 0,
                controls,
                leave_requested: false,
                handoff_since: None,
                lag_reported: std::collections::BTreeSet::new(),
                stalled: false,
            },
            view_rx,
        )
    }

    pub(super) fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs until `shutdown`, then leaves the ring gracefully.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let watchdog = systemd::watchdog_interval();
        let mut last_watchdog = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut handover: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !self.leave_requested => self.leave_requested = true,
                _ = tick.tick() => {
                    // Timers judge silence by what was received: hear everything that has
                    // already arrived first, or a busy server would take busy peers for dead.
                    for _ in 0..PENDING_BEFORE_TICK {
                        match self.events.try_recv() {
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                    }
                    let now = self.now();
                    self.node.step(now, Input::Tick);
                    self.after_step();
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(10) {
                        self.refresh_gauges();
                    }
                    self.hand_off_clients();
                    if watchdog.is_some_and(|w| last_watchdog.elapsed() >= w) {
                        last_watchdog = Instant::now();
                        systemd::watchdog();
                    }
                }
                ev = self.events.recv() => {
                    let Some(ev) = ev else { break };
                    self.handle(ev);
                    for _ in 0..BATCH {
                        match self.events.try_recv() {
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                    }
                    self.after_step();
                }
            }
            if self.leave_requested && handover.is_none() {
                if !self.begin_handover() {
                    break;
                }
                handover = Some(Instant::now());
            }
            if let Some(since) = handover
                && (self.handover_done() || since.elapsed() >= HANDOVER_WAIT)
            {
                break;
            }
        }
        self.leave().await;
    }

    /// A leader that leaves hands over first: it drains (so the highest other id is
    /// elected) and sends its clients to the new leader. Returns false when there is
    /// nothing to hand over.
    fn begin_handover(&mut self) -> bool {
        if !self.node.is_serving_leader() || self.node.ring().len() < 2 {
            return false;
        }
        tracing::info!("Handing leadership over before leaving.");
        let now = self.now();
        self.node.set_draining(now, true);
        self.after_step();
        true
    }

    fn handover_done(&self) -> bool {
        self.handoff_since.is_none() && self.node.leader().is_some_and(|l| l.id != self.settings.id)
    }

    async fn leave(&mut self) {
        tracing::info!("Leaving the ring.");
        systemd::stopping();
        let was_serving = self.node.is_serving_leader();
        self.node.leave();
        self.execute_actions();
        if was_serving || !self.clients.all().is_empty() {
            let frame = self.leader_info_frame(true);
            for conn in self.clients.all() {
                self.clients.send_and_close(conn, frame.clone());
            }
        }
        self.links.close_all(Duration::from_millis(500)).await;
    }

    fn handle(&mut self, ev: Event) {
        let now = self.now();
        match ev {
            Event::Peer(msg) => self.node.step(now, Input::Peer(msg)),
            Event::PeerUnreachable(id) => self.node.step(now, Input::PeerUnreachable(id)),
            Event::Discovered {
                node,
                leader,
                epoch,
            } => self.node.step(
                now,
                Input::Discovered {
                    node,
                    leader,
                    epoch,
                },
            ),
            Event::ClientOpened { conn, outbox, kick } => self.clients.open(conn, outbox, kick),
            Event::ClientRequest { conn, req } => self.on_client(conn, req),
            Event::ClientClosed { conn } => self.clients.remove(conn),
            Event::Admin { req, reply } => {
                let _ = reply.send(self.admin(req));
            }
        }
    }

    fn on_client(&mut self, conn: ConnId, req: ClientRequest) {
        match req {
            ClientRequest::Ping => {
                let frame = self.encode(&ServerMessage::ClientPingAck(self.leader_info(false)));
                self.clients.send(conn, frame);
            }
            ClientRequest::Connect {
                client_id,
                from_sequence,
                ..
            } => {
                // A leader without a majority (quorum mode) keeps serving what is committed.
                let leads = self.node.is_serving_leader() || self.node.is_leader_without_majority();
                if !leads || self.node.is_draining() {
                    metrics::client_connection("redirected");
                    let frame = self.leader_info_frame(false);
                    return self.clients.send_and_close(conn, frame);
                }
                metrics::client_connection("accepted");
                let last = self.broadcast_upto;
                let base = self.node.log().base();
                let recent = last
                    .saturating_sub(self.settings.history_on_connect as Seq)
                    .max(base);
                // The client's view no longer matches when it is ahead of us, too far behind,
                // behind what we still hold (the retention limit dropped it), or may be the
                // history of a side that a merge renumbered.
                let (from, reset) = match from_sequence {
                    Some(f)
                        if f <= last
                            && last - f <= MAX_CATCH_UP
                            && f >= base
                            && !self.node.view_invalidated(f) =>
                    {
                        (f, false)
                    }
                    Some(_) => (recent, true),
                    None => (recent, false),
                };
                self.send_history(conn, from, last - from, reset);
                self.clients.start_session(conn, client_id);
            }
            ClientRequest::History {
                from_sequence,
                limit,
            } => {
                if !self.clients.in_session(conn) {
                    return self.send_error(
                        conn,
                        ErrorCode::NotConnected,
                        "send client_connect first",
                        None,
                    );
                }
                let from = from_sequence.min(self.broadcast_upto);
                let n = (self.broadcast_upto - from).min(limit);
                self.send_history(conn, from, n, false);
            }
            ClientRequest::Message(chat) => {
                let id = Some(chat.message_id.clone());
                if !self.clients.in_session(conn) {
                    return self.send_error(
                        conn,
                        ErrorCode::NotConnected,
                        "send client_connect first",
                        id,
                    );
                }
                let proposal = Proposal {
                    client_id: chat.client_id,
                    message_id: chat.message_id,
                    username: chat.username,
                    content: chat.content,
                    timestamp: unix_timestamp(),
                };
                let received = Instant::now();
                match self.node.propose(self.now(), proposal) {
                    Ok(
                        outcome @ (ProposeOutcome::Appended(seq) | ProposeOutcome::Duplicate(seq)),
                    ) => {
                        metrics::message_received(matches!(outcome, ProposeOutcome::Duplicate(_)));
                        if seq <= self.broadcast_upto {
                            self.send_delivered(conn, seq);
                        } else {
                            self.waiters.entry(seq).or_default().push((conn, received));
                        }
                    }
                    Err(ProposeError::NotLeader(_)) => {
                        self.send_error(conn, ErrorCode::NotLeader, "this server does not lead", id)
                    }
                    Err(ProposeError::NoLeader) if self.node.is_leader_without_majority() => self
                        .send_error(
                            conn,
                            ErrorCode::NoLeader,
                            "no majority of the ring is reachable (quorum mode); retry",
                            id,
                        ),
                    Err(ProposeError::NoLeader) => self.send_error(
                        conn,
                        ErrorCode::NoLeader,
                        "an election is running; retry",
                        id,
                    ),
                }
            }
            ClientRequest::Disconnect => self.clients.close(conn),
        }
    }

    fn send_history(&mut self, conn: ConnId, from: Seq, n: Seq, reset: bool) {
        // What the retention limit dropped cannot be sent: the answer starts after it.
        let from = from.max(self.node.log().base());
        let n = n.min(self.broadcast_upto.saturating_sub(from));
        let entries = self.node.log().range(from, n as usize);
        for frame in history_frames(
            self.settings.id,
            self.settings.max_frame,
            entries.iter(),
            from,
            self.broadcast_upto,
            reset,
        ) {
            self.clients.send(conn, frame);
        }
    }

    fn send_delivered(&mut self, conn: ConnId, seq: Seq) {
        if let Some(frame) = self.delivered_frame(&server_sender_id(self.settings.id), seq) {
            self.clients.send(conn, frame);
        }
    }

    /// The `message_delivered` frame for the entry at `seq`, if it is held.
    fn delivered_frame(&self, sender_id: &str, seq: Seq) -> Option<Bytes> {
        let e = self.node.log().get(seq)?;
        frame_json(&ServerMessageRef::MessageDelivered {
            sender_id,
            timestamp: unix_timestamp(),
            message_id: e.message_id,
            sequence_number: seq,
            epoch: e.epoch,
        })
        .ok()
    }

    fn send_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        message_id: Option<String>,
    ) {
        let frame = self.encode(&ServerMessage::Error(ErrorMessage {
            sender_id: server_sender_id(self.settings.id),
            timestamp: unix_timestamp(),
            code,
            message: message.into(),
            message_id,
        }));
        self.clients.send(conn, frame);
    }

    fn encode(&self, msg: &ServerMessage) -> Bytes {
        // Our own types always serialize; an empty frame would only close the connection.
        frame_json(msg).unwrap_or_default()
    }

    fn leader_info(&self, leaving: bool) -> LeaderInfo {
        let serving = self.node.is_serving_leader() && !leaving;
        let leader = self
            .node
            .leader()
            .filter(|l| serving || l.id != self.settings.id);
        LeaderInfo {
            sender_id: server_sender_id(self.settings.id),
            timestamp: unix_timestamp(),
            leader_id: leader.map(|l| l.id),
            leader_address: leader.map(|l| l.address.clone()),
            leader_port: leader.map(|l| l.client_port),
            is_available: leader.is_some(),
            is_leader: serving,
            epoch: self.node.epoch(),
        }
    }

    fn leader_info_frame(&self, leaving: bool) -> Bytes {
        self.encode(&ServerMessage::LeaderInfo(self.leader_info(leaving)))
    }

    fn after_step(&mut self) {
        self.execute_actions();
        self.publish_view();
        self.deliver_commits();
    }

    fn execute_actions(&mut self) {
        for action in self.node.take_actions() {
            match action {
                Action::Send { to, body } => {
                    match &body {
                        PeerBody::Heartbeat { .. } => metrics::heartbeat_sent(self.neighbor(to.id)),
                        PeerBody::ElectionVote { .. } => metrics::election_message("election"),
                        PeerBody::ElectionLeader { .. } => metrics::election_message("elected"),
                        _ => {}
                    }
                    self.links.send(Some(to.id), &to.address, to.port, body)
                }
                Action::SendToAddress {
                    address,
                    port,
                    body,
                } => self.links.send(None, &address, port, body),
                Action::Notice(n) => self.notice(&n),
            }
        }
    }

    /// Which neighbour `id` is, as a metrics label.
    fn neighbor(&self, id: NodeId) -> &'static str {
        let me = self.settings.id;
        let ring = self.node.ring();
        if ring.successor(me).is_some_and(|n| n.id == id) {
            "successor"
        } else if ring.predecessor(me).is_some_and(|n| n.id == id) {
            "predecessor"
        } else {
            "other"
        }
    }

    /// Gauges that change with every message are sampled, not set on each change. A
    /// follower that is gone (or every follower, once we stop leading) is reported at 0,
    /// so that no stale lag lingers in alerts.
    fn refresh_gauges(&mut self) {
        let log = self.node.log();
        metrics::history(log.len() as u64, log.text_bytes());
        metrics::clients(self.clients.sessions());
        let now = self.now();
        let mut reported = std::collections::BTreeSet::new();
        if self.node.role() == Role::Leader {
            for (id, p) in self.node.followers() {
                let behind = p.waiting_since.map_or(0, |t| now.saturating_sub(t));
                metrics::replication_lag(*id, p.lag(log.last_seq()), behind as f64 / 1000.0);
                reported.insert(*id);
            }
        }
        for gone in self.lag_reported.difference(&reported) {
            metrics::replication_lag(*gone, 0, 0.0);
        }
        self.lag_reported = reported;
    }

    fn notice(&self, n: &Notice) {
        match n {
            Notice::ElectionStarted { trigger, epoch } => {
                metrics::election_started(*trigger);
                tracing::info!(trigger = trigger.as_str(), epoch, "Election started.")
            }
            Notice::LeaderReady { recovered } => {
                tracing::info!(recovered, "Leader recovery finished.")
            }
            Notice::PeerFailed { id, cause } => {
                metrics::ring_repair(cause);
                tracing::warn!(peer = id, cause, "Server taken for failed.")
            }
            Notice::HeartbeatMissed { id } => {
                metrics::heartbeat_missed(self.neighbor(*id));
                tracing::debug!(peer = id, "Heartbeat late.")
            }
            Notice::HeartbeatRtt { id, millis } => {
                metrics::heartbeat_rtt(self.neighbor(*id), *millis as f64 / 1000.0)
            }
            Notice::StaleMessage { kind } => {
                metrics::stale_message(kind);
                tracing::debug!(kind, "Stale-epoch message refused.")
            }
            Notice::FollowerReset { id } => {
                tracing::warn!(
                    peer = id,
                    "Follower history diverged; merging it into ours."
                )
            }
            Notice::HistoryReset => tracing::warn!("Our history diverged; taking the leader's."),
            Notice::HistoriesMerged { from, to } => tracing::warn!(
                from,
                to,
                "Merged a diverged history; clients holding sequence numbers in this range are reset."
            ),
            Notice::RoleChanged | Notice::RingChanged => {}
        }
    }

    /// Logs role, leader and ring changes (one line each) and moves clients away from a
    /// server that no longer leads.
    fn publish_view(&mut self) {
        let new = view_of(&self.node);
        let old = self.view.borrow().clone();
        if new == old {
            return;
        }
        metrics::view(
            new.role,
            new.leader.is_some(),
            new.epoch,
            new.members.len(),
            new.draining,
        );
        if new.leader.as_ref().map(|l| l.id) != old.leader.as_ref().map(|l| l.id)
            && new.leader.is_some()
        {
            metrics::leader_changed();
        }
        match (old.role, new.role) {
            (Role::Candidate, Role::Candidate) => {}
            (_, Role::Candidate) => self.election_since = Some(Instant::now()),
            (Role::Candidate, _) => {
                if let Some(t) = self.election_since.take() {
                    metrics::election_finished(t.elapsed().as_secs_f64());
                }
            }
            _ => {}
        }
        if new.role != old.role || new.leader != old.leader || new.epoch != old.epoch {
            tracing::info!(
                role = new.role.as_str(),
                leader = ?new.leader.as_ref().map(|l| l.id),
                epoch = new.epoch,
                round = ringchat_core::epoch_round(new.epoch),
                "Role changed."
            );
        }
        let stalled = self.node.is_leader_without_majority();
        if stalled && !self.stalled {
            tracing::warn!(
                members = new.members.len(),
                "Leading without a majority of the ring (quorum mode): writes refused."
            );
        } else if self.stalled && !stalled {
            tracing::info!(
                members = new.members.len(),
                "The majority of the ring is back."
            );
        }
        let regained = self.stalled && new.serving;
        self.stalled = stalled;
        if new.serving && !old.serving && !regained {
            // Usually nobody is in a session yet: what is committed now is history, not
            // news. But a leader that re-elected itself before handing its clients off
            // still has them: they get the entries committed meanwhile as broadcasts (in
            // `deliver_commits`), or they would see a gap.
            if self.clients.sessions() == 0 {
                self.broadcast_upto = self.node.commit_seq();
            }
            tracing::info!(
                epoch = new.epoch,
                last_seq = self.node.log().last_seq(),
                "Serving clients as leader."
            );
        }
        if new.members != old.members {
            tracing::info!(members = ?new.members, "Ring changed.");
        }
        if old.serving && !new.serving && !stalled {
            // Clients move once the new leader is known, so that they are told where to go;
            // the wait is bounded by the election timeout.
            self.waiters.clear();
            self.handoff_since = Some(Instant::now());
        }
        self.view.send_replace(new);
        self.hand_off_clients();
    }

    /// Sends the clients of a server that stopped leading to the new leader (or, when none
    /// is known in time, away with `is_available: false`).
    fn hand_off_clients(&mut self) {
        let Some(since) = self.handoff_since else {
            return;
        };
        let known = self.node.leader().is_some_and(|l| l.id != self.settings.id)
            && !self.node.is_awaiting_merge();
        let waited = since.elapsed() >= Duration::from_millis(self.settings.core.election_timeout);
        if self.node.is_serving_leader() || self.node.is_leader_without_majority() {
            self.handoff_since = None;
            return;
        }
        if !(known || waited) {
            return;
        }
        self.handoff_since = None;
        let frame = self.leader_info_frame(false);
        let conns = self.clients.all();
        tracing::info!(
            clients = conns.len(),
            leader = ?self.node.leader().map(|l| l.id),
            "No longer leading; sending clients on."
        );
        for conn in conns {
            self.clients.send_and_close(conn, frame.clone());
        }
    }

    /// Broadcasts newly committed entries and acknowledges their senders.
    fn deliver_commits(&mut self) {
        let commit = self.node.commit_seq();
        if !self.node.is_serving_leader() {
            // Clients still in a session (the hand-off is pending) must not miss these.
            if self.clients.sessions() == 0 {
                self.broadcast_upto = commit;
            }
            return;
        }
        let sender_id = server_sender_id(self.settings.id);
        while self.broadcast_upto < commit {
            self.broadcast_upto += 1;
            let seq = self.broadcast_upto;
            // Encoded once from the stored entry (no copy of it); every client gets the
            // same buffer.
            let Some(e) = self.node.log().get(seq) else {
                break;
            };
            if let Ok(frame) = frame_json(&ServerMessageRef::ChatBroadcast {
                sender_id: &sender_id,
                entry: e,
            }) {
                self.clients.broadcast(&frame);
            }
            if let Some(conns) = self.waiters.remove(&seq) {
                for (conn, received) in conns {
                    metrics::commit_latency(received.elapsed().as_secs_f64());
                    if let Some(frame) = self.delivered_frame(&sender_id, seq) {
                        self.clients.send(conn, frame);
                    }
                }
            }
        }
    }
}

fn view_of(node: &Node) -> NodeView {
    NodeView {
        me: node.me().clone(),
        role: node.role(),
        epoch: node.epoch(),
        leader: node.leader().cloned(),
        serving: node.is_serving_leader(),
        members: node.ring().ids(),
        draining: node.is_draining(),
    }
}
