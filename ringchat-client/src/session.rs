//! The client's protocol state machine, free of I/O so every rule can be unit-tested.
//!
//! It owns what must survive a reconnect (the pending queue, the order of chat entries, the
//! last known leader) and turns each server frame or user request into [`Effects`]: frames to
//! send, [`Event`]s to show, and perhaps a [`Control`] telling the connection manager to
//! connect elsewhere. The connection manager does the sockets and timers.

use std::collections::VecDeque;

use bytes::Bytes;
use ringchat_proto::frame::payload_len;
use ringchat_proto::limits::{MAX_CLIENT_FRAME, MAX_HISTORY_LIMIT};
use ringchat_proto::server::{ErrorMessage, HistoryResponse, LeaderInfo, ServerMessage};
use ringchat_proto::{ChatEntry, Epoch, ErrorCode, NodeId, Seq};

use crate::pending::PendingQueue;
use crate::sequence::SeqTracker;
use ringchat_proto::requests as wire;

/// Something the user should see.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A frame as received, one compact JSON line (`--json`).
    Frame(String),
    /// The next chat entry in the global order.
    Entry(ChatEntry),
    /// An older entry shown because the user asked for history.
    HistoryEntry(ChatEntry),
    /// The server stored one of our messages.
    Delivered {
        /// Our id of the message.
        message_id: String,
        /// Its place in the global order.
        sequence_number: Seq,
    },
    /// One of our messages was refused for good.
    Failed {
        /// Our id of the message.
        message_id: String,
        /// Why.
        reason: String,
    },
    /// An `error` frame.
    ServerError(ErrorMessage),
    /// The leader accepted us and sent its history.
    Connected {
        /// Its `sender_id`, e.g. `Server 3`.
        server: String,
        /// The address we reached it at.
        address: String,
    },
    /// A working connection was lost.
    Reconnecting {
        /// Why.
        reason: String,
    },
    /// The answer to `/leader`.
    Leader(LeaderView),
    /// Anything else worth a status line.
    Notice(String),
}

/// What the client knows about the leader, for `/leader`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaderView {
    /// The leader's id, when known.
    pub leader_id: Option<NodeId>,
    /// Its client address (`host:port`), when known.
    pub address: Option<String>,
    /// The newest epoch seen.
    pub epoch: Option<Epoch>,
    /// The server this client is connected to now, if any.
    pub connected_to: Option<String>,
}

/// Connect elsewhere: what the manager must do instead of staying on this connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// The named server leads now: connect to it at once.
    Redirect {
        /// `host:port` of its client port.
        address: String,
        /// For the status line.
        reason: String,
    },
    /// No usable leader here: look for one again after a short pause.
    Rediscover {
        /// For the status line.
        reason: String,
    },
}

/// The outcome of one step of the state machine.
#[derive(Debug, Default)]
pub struct Effects {
    /// Frames to write to the server, in order.
    pub frames: Vec<Bytes>,
    /// Things to show, in order.
    pub events: Vec<Event>,
    /// Leave this connection.
    pub control: Option<Control>,
    /// Some messages were rate-limited: call [`Session::resend_throttled`] a bit later.
    pub retry_later: bool,
}

/// Which request a `history_response` answers; answers come in the order of the requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// The history after `client_connect`.
    Connect,
    /// A request to fill a gap after `from`.
    Fill { from: Seq },
    /// `/history`: shown, not merged.
    Recent,
}

/// Everything a client knows, across connections.
#[derive(Debug)]
pub struct Session {
    client_id: String,
    username: String,
    counter: u64,
    pending: PendingQueue,
    order: SeqTracker,
    /// Requests whose answers are still due on this connection, oldest first.
    answers: VecDeque<Answer>,
    /// A multi-frame answer is half read (`more: true` seen).
    answer_open: bool,
    /// Entries shown so far for the current `/history` answer.
    recent_shown: usize,
    /// The connect answer is complete: messages may be sent.
    ready: bool,
    throttled: Vec<String>,
    leader: LeaderView,
}

impl Session {
    /// A session for one client process.
    pub fn new(client_id: String, username: String) -> Self {
        Self {
            client_id,
            username,
            counter: 0,
            pending: PendingQueue::default(),
            order: SeqTracker::default(),
            answers: VecDeque::new(),
            answer_open: false,
            recent_shown: 0,
            ready: false,
            throttled: Vec::new(),
            leader: LeaderView::default(),
        }
    }

    /// A new TCP connection to `address`: queues `client_connect`.
    pub fn connect(&mut self, address: &str, fx: &mut Effects) {
        self.disconnected();
        self.leader.connected_to = Some(address.to_owned());
        self.answers.push_back(Answer::Connect);
        fx.frames.push(wire::connect(
            &self.client_id,
            &self.username,
            self.order.last(),
        ));
    }

    /// The connection is gone; what is pending waits for the next one.
    pub fn disconnected(&mut self) {
        self.ready = false;
        self.answers.clear();
        self.answer_open = false;
        self.throttled.clear();
        self.order.drop_ahead();
        self.leader.connected_to = None;
    }

    /// Whether the leader has accepted this connection.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// A chat message typed by the user: queued, and sent now if connected.
    pub fn submit(&mut self, content: &str, fx: &mut Effects) {
        self.counter += 1;
        let message_id = format!("{}:{}", self.client_id, self.counter);
        let frame = wire::message(&self.client_id, &self.username, content, &message_id);
        if payload_len(&frame) > MAX_CLIENT_FRAME {
            fx.events.push(Event::Failed {
                message_id,
                reason: format!("the message does not fit in a {MAX_CLIENT_FRAME}-byte frame"),
            });
            return;
        }
        if self.ready {
            fx.frames.push(frame.clone());
        }
        self.pending.push(message_id, frame);
    }

    /// `/history N`: asks for the last `count` entries.
    pub fn request_recent(&mut self, count: u64, fx: &mut Effects) {
        if !self.ready {
            fx.events
                .push(Event::Notice("not connected; try again later".into()));
            return;
        }
        let count = count.clamp(1, MAX_HISTORY_LIMIT);
        let from = self.order.last().unwrap_or(0).saturating_sub(count);
        self.answers.push_back(Answer::Recent);
        fx.frames.push(wire::history(&self.client_id, from, count));
    }

    /// `/leader`.
    pub fn leader(&self) -> &LeaderView {
        &self.leader
    }

    /// How many messages wait for an acknowledgement.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The keep-alive frame.
    pub fn ping(&self) -> Bytes {
        wire::ping(&self.client_id)
    }

    /// The goodbye frame.
    pub fn goodbye(&self) -> Bytes {
        wire::disconnect(&self.client_id)
    }

    /// Sends the rate-limited messages again.
    pub fn resend_throttled(&mut self, fx: &mut Effects) {
        if !self.ready {
            return;
        }
        for id in std::mem::take(&mut self.throttled) {
            if let Some(frame) = self.pending.frame(&id) {
                fx.frames.push(frame.clone());
            }
        }
    }

    /// One frame from the server.
    pub fn handle(&mut self, msg: ServerMessage, fx: &mut Effects) {
        match msg {
            ServerMessage::HistoryResponse(page) => self.on_history(page, fx),
            ServerMessage::ChatBroadcast(b) => {
                self.merge(std::iter::once(b.entry), fx);
                self.request_fill(fx);
            }
            ServerMessage::MessageDelivered(d) => {
                self.note_epoch(d.epoch);
                if self.pending.remove(&d.message_id) {
                    fx.events.push(Event::Delivered {
                        message_id: d.message_id,
                        sequence_number: d.sequence_number,
                    });
                }
            }
            ServerMessage::LeaderInfo(info) => self.on_leader_info(info, fx),
            ServerMessage::ClientPingAck(info) => self.learn_leader(&info),
            ServerMessage::Error(err) => self.on_error(err, fx),
        }
    }

    fn on_history(&mut self, page: HistoryResponse, fx: &mut Effects) {
        let first_page = !self.answer_open;
        self.answer_open = page.more;
        // An answer nobody asked for is merged like a gap fill.
        let answer = self.answers.front().copied().unwrap_or(Answer::Fill {
            from: self.order.last().unwrap_or(0),
        });
        if !page.more {
            self.answers.pop_front();
        }
        if answer == Answer::Recent {
            return self.show_recent(page, first_page, fx);
        }
        if first_page {
            if answer == Answer::Connect {
                self.on_accepted(&page.sender_id, fx);
            }
            self.adopt_base(&page, fx);
        }
        self.merge(page.messages, fx);
        if page.more {
            return;
        }
        if answer == Answer::Connect {
            // History first, then what waited: the resends come after everything known.
            self.ready = true;
            fx.frames.extend(self.pending.frames().cloned());
        }
        if let Answer::Fill { from } = answer {
            self.after_fill(from, fx);
        }
        self.request_fill(fx);
    }

    /// The leader took us: remember it and say so.
    fn on_accepted(&mut self, server: &str, fx: &mut Effects) {
        let address = self.leader.connected_to.clone().unwrap_or_default();
        self.leader.leader_id = server_number(server);
        self.leader.address = Some(address.clone());
        let server = if server.is_empty() { "server" } else { server };
        fx.events.push(Event::Connected {
            server: server.to_owned(),
            address,
        });
    }

    /// On the first page of an answer: start the order here when we hold nothing yet, or
    /// over when the server's history is not ours (`reset`, or it ends before what we hold,
    /// which a server that forgot to say `reset` shows all the same).
    fn adopt_base(&mut self, page: &HistoryResponse, fx: &mut Effects) {
        let held = self.order.last();
        let diverged = page.reset || held.is_some_and(|held| page.last_sequence < held);
        if held.is_some() && !diverged {
            return;
        }
        if diverged && held.is_some() {
            fx.events.push(Event::Notice(
                "the server's history differs from ours; showing its history".into(),
            ));
        }
        // The entries tell where the answer starts; `from_sequence` may be the client's.
        let base = page
            .messages
            .first()
            .map_or(page.last_sequence, |e| e.sequence_number.saturating_sub(1));
        if diverged {
            // Entries held back for a gap are numbered as the old history was.
            self.order.drop_ahead();
        }
        let mut out = Vec::new();
        self.order.rebase(base, &mut out);
        fx.events.extend(out.into_iter().map(Event::Entry));
    }

    /// A fill that brought nothing new means the server lacks those entries: skip them.
    fn after_fill(&mut self, from: Seq, fx: &mut Effects) {
        if self.order.last() != Some(from) {
            return;
        }
        if let Some((first, last)) = self.order.gap() {
            fx.events.push(Event::Notice(format!(
                "messages {first} to {last} are missing on the server; skipping them"
            )));
            let mut out = Vec::new();
            self.order.skip_gap(&mut out);
            fx.events.extend(out.into_iter().map(Event::Entry));
        }
    }

    fn show_recent(&mut self, page: HistoryResponse, first_page: bool, fx: &mut Effects) {
        if first_page {
            self.recent_shown = 0;
            fx.events.push(Event::Notice("history:".into()));
        }
        let known = self.order.last().unwrap_or(0);
        let (old, new): (Vec<_>, Vec<_>) = page
            .messages
            .into_iter()
            .partition(|e| e.sequence_number <= known);
        self.recent_shown += old.len();
        fx.events.extend(old.into_iter().map(Event::HistoryEntry));
        if !page.more {
            let n = self.recent_shown;
            let plural = if n == 1 { "" } else { "s" };
            fx.events.push(Event::Notice(format!(
                "end of history ({n} message{plural})"
            )));
        }
        self.merge(new, fx);
    }

    fn merge(&mut self, entries: impl IntoIterator<Item = ChatEntry>, fx: &mut Effects) {
        let mut out = Vec::new();
        for entry in entries {
            self.order.offer(entry, &mut out);
        }
        fx.events.extend(out.into_iter().map(Event::Entry));
    }

    /// Asks for the entries of a gap, unless history that may hold them is still due.
    fn request_fill(&mut self, fx: &mut Effects) {
        let busy = self.answers.iter().any(|a| *a != Answer::Recent);
        if !self.ready || busy {
            return;
        }
        if let Some((first, _)) = self.order.gap() {
            let from = first - 1;
            self.answers.push_back(Answer::Fill { from });
            fx.frames
                .push(wire::history(&self.client_id, from, MAX_HISTORY_LIMIT));
        }
    }

    fn on_leader_info(&mut self, info: LeaderInfo, fx: &mut Effects) {
        self.learn_leader(&info);
        if info.is_leader {
            return; // the server we talk to leads: nothing to change
        }
        let name = info
            .leader_id
            .map_or_else(|| "the leader".to_owned(), |id| format!("Server {id}"));
        fx.control = Some(match (info.is_available, leader_address(&info)) {
            (true, Some(address)) => Control::Redirect {
                reason: format!("leader moved to {name} at {address}"),
                address,
            },
            _ => Control::Rediscover {
                reason: "no leader right now".into(),
            },
        });
    }

    fn learn_leader(&mut self, info: &LeaderInfo) {
        self.note_epoch(info.epoch);
        if info.is_available {
            self.leader.leader_id = info.leader_id;
            if let Some(address) = leader_address(info) {
                self.leader.address = Some(address);
            }
        }
    }

    fn note_epoch(&mut self, epoch: Epoch) {
        self.leader.epoch = Some(self.leader.epoch.map_or(epoch, |e| e.max(epoch)));
    }

    fn on_error(&mut self, err: ErrorMessage, fx: &mut Effects) {
        let refused = matches!(err.code, ErrorCode::ContentTooLong | ErrorCode::BadField);
        match (&err.message_id, err.code) {
            (Some(id), _) if refused && self.pending.remove(id) => {
                fx.events.push(Event::Failed {
                    message_id: id.clone(),
                    reason: format!("{}: {}", err.code, err.message),
                });
            }
            (Some(id), ErrorCode::RateLimited) if self.pending.frame(id).is_some() => {
                self.throttled.push(id.clone());
                fx.retry_later = true;
            }
            (
                _,
                ErrorCode::NotLeader
                | ErrorCode::NoLeader
                | ErrorCode::ShuttingDown
                | ErrorCode::NotConnected,
            ) => {
                fx.control = Some(Control::Rediscover {
                    reason: format!("server answered {}", err.code),
                });
            }
            _ => {}
        }
        fx.events.push(Event::ServerError(err));
    }
}

/// `"Server 3"` -> 3.
fn server_number(sender_id: &str) -> Option<NodeId> {
    sender_id.strip_prefix("Server ")?.trim().parse().ok()
}

/// `host:port` of the leader named in `info`, when both parts are known.
fn leader_address(info: &LeaderInfo) -> Option<String> {
    let host = info.leader_address.as_deref().filter(|h| !h.is_empty())?;
    Some(join_host_port(host, info.leader_port?))
}

/// `host:port`, with brackets around an IPv6 address.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::tests::entry;
    use ringchat_proto::client::{ClientLimits, ClientRequest, parse_client_request};
    use ringchat_proto::frame::HEADER_LEN;
    use ringchat_proto::server::{ChatBroadcast, MessageDelivered};

    fn request(frame: &Bytes) -> ClientRequest {
        parse_client_request(&frame[HEADER_LEN..], &ClientLimits::default()).unwrap()
    }

    fn requests(fx: &Effects) -> Vec<ClientRequest> {
        fx.frames.iter().map(request).collect()
    }

    fn message_ids(fx: &Effects) -> Vec<String> {
        requests(fx)
            .into_iter()
            .filter_map(|r| match r {
                ClientRequest::Message(m) => Some(m.message_id),
                _ => None,
            })
            .collect()
    }

    fn entries(fx: &Effects) -> Vec<Seq> {
        fx.events
            .iter()
            .filter_map(|e| match e {
                Event::Entry(e) => Some(e.sequence_number),
                _ => None,
            })
            .collect()
    }

    fn page(seqs: &[Seq], last_sequence: Seq, more: bool, reset: bool) -> ServerMessage {
        ServerMessage::HistoryResponse(HistoryResponse {
            sender_id: "Server 3".into(),
            timestamp: 0.0,
            messages: seqs.iter().map(|&s| entry(s)).collect(),
            from_sequence: seqs.first().map_or(last_sequence, |s| s - 1),
            last_sequence,
            more,
            reset,
        })
    }

    fn broadcast(seq: Seq) -> ServerMessage {
        ServerMessage::ChatBroadcast(ChatBroadcast {
            sender_id: "Server 3".into(),
            entry: entry(seq),
        })
    }

    fn delivered(id: &str, seq: Seq) -> ServerMessage {
        ServerMessage::MessageDelivered(MessageDelivered {
            sender_id: "Server 3".into(),
            timestamp: 0.0,
            message_id: id.into(),
            sequence_number: seq,
            epoch: 2,
        })
    }

    fn error(code: ErrorCode, message_id: Option<&str>) -> ServerMessage {
        ServerMessage::Error(ErrorMessage {
            sender_id: "Server 3".into(),
            timestamp: 0.0,
            code,
            message: "no".into(),
            message_id: message_id.map(str::to_owned),
        })
    }

    fn leader_info(is_available: bool) -> ServerMessage {
        ServerMessage::LeaderInfo(LeaderInfo {
            sender_id: "Server 1".into(),
            timestamp: 0.0,
            leader_id: is_available.then_some(2),
            leader_address: is_available.then(|| "127.0.0.1".into()),
            leader_port: is_available.then_some(5102),
            is_available,
            is_leader: false,
            epoch: 5,
        })
    }

    /// A session connected to a leader with an empty history.
    fn ready() -> Session {
        let mut s = Session::new("c".into(), "Alice".into());
        let mut fx = Effects::default();
        s.connect("127.0.0.1:5103", &mut fx);
        s.handle(page(&[], 0, false, false), &mut fx);
        assert!(s.is_ready());
        s
    }

    fn step(s: &mut Session, msg: ServerMessage) -> Effects {
        let mut fx = Effects::default();
        s.handle(msg, &mut fx);
        fx
    }

    #[test]
    fn connect_sends_from_sequence_only_after_a_history() {
        let mut s = Session::new("c".into(), "Alice".into());
        let mut fx = Effects::default();
        s.connect("a:1", &mut fx);
        assert!(matches!(
            requests(&fx)[..],
            [ClientRequest::Connect {
                from_sequence: None,
                ..
            }]
        ));
        let fx = step(&mut s, page(&[7, 8], 8, false, false));
        assert_eq!(entries(&fx), [7, 8]);
        assert!(fx.events.iter().any(|e| matches!(e,
            Event::Connected { server, address } if server == "Server 3" && address == "a:1")));
        assert_eq!(s.leader().leader_id, Some(3));
        s.disconnected();
        let mut fx = Effects::default();
        s.connect("a:1", &mut fx);
        assert!(matches!(
            requests(&fx)[..],
            [ClientRequest::Connect {
                from_sequence: Some(8),
                ..
            }]
        ));
    }

    #[test]
    fn messages_wait_while_offline_and_resend_in_order_with_their_ids() {
        let mut s = Session::new("c".into(), "Alice".into());
        let mut fx = Effects::default();
        s.submit("one", &mut fx);
        s.submit("two", &mut fx);
        assert!(
            fx.frames.is_empty(),
            "nothing is sent before the leader accepts"
        );
        s.connect("a:1", &mut fx);
        let fx = step(&mut s, page(&[], 0, false, false));
        assert_eq!(message_ids(&fx), ["c:1", "c:2"]);

        // The first is acknowledged, the connection drops, the second goes again.
        step(&mut s, delivered("c:1", 1));
        s.disconnected();
        let mut fx = Effects::default();
        s.submit("three", &mut fx);
        s.connect("a:2", &mut fx);
        let fx = step(&mut s, page(&[1], 1, false, false));
        assert_eq!(message_ids(&fx), ["c:2", "c:3"]);
        assert_eq!(s.pending_len(), 2);
    }

    #[test]
    fn an_acknowledgement_counts_once() {
        let mut s = ready();
        let mut fx = Effects::default();
        s.submit("hi", &mut fx);
        assert_eq!(message_ids(&fx), ["c:1"]);
        let first = step(&mut s, delivered("c:1", 1));
        assert!(
            matches!(&first.events[..], [Event::Delivered { message_id, sequence_number: 1 }] if message_id == "c:1")
        );
        assert!(step(&mut s, delivered("c:1", 1)).events.is_empty());
        assert_eq!(s.leader().epoch, Some(2));
    }

    #[test]
    fn broadcasts_after_a_reconnect_are_deduplicated() {
        let mut s = ready();
        assert_eq!(entries(&step(&mut s, broadcast(1))), [1]);
        s.disconnected();
        let mut fx = Effects::default();
        s.connect("a:1", &mut fx);
        assert_eq!(entries(&step(&mut s, page(&[1, 2], 2, false, false))), [2]);
        assert!(entries(&step(&mut s, broadcast(2))).is_empty());
        assert_eq!(entries(&step(&mut s, broadcast(3))), [3]);
    }

    #[test]
    fn a_gap_is_filled_by_one_history_request_before_anything_shows() {
        let mut s = ready();
        step(&mut s, broadcast(1));
        let fx = step(&mut s, broadcast(4));
        assert!(entries(&fx).is_empty());
        assert_eq!(
            requests(&fx),
            [ClientRequest::History {
                from_sequence: 1,
                limit: 1000
            }]
        );
        // A second early broadcast does not ask again while the fill is due.
        let fx = step(&mut s, broadcast(5));
        assert!(fx.frames.is_empty() && entries(&fx).is_empty());
        let fx = step(&mut s, page(&[2, 3, 4], 5, false, false));
        assert_eq!(entries(&fx), [2, 3, 4, 5]);
        assert!(fx.frames.is_empty());
    }

    #[test]
    fn a_gap_the_server_cannot_fill_is_skipped() {
        let mut s = ready();
        step(&mut s, broadcast(1));
        step(&mut s, broadcast(4));
        let fx = step(&mut s, page(&[], 4, false, false));
        assert_eq!(entries(&fx), [4]);
        assert!(fx.frames.is_empty());
    }

    #[test]
    fn multi_frame_history_resets_only_on_its_first_frame() {
        let mut s = ready();
        step(&mut s, broadcast(1));
        step(&mut s, broadcast(2));
        s.disconnected();
        let mut fx = Effects::default();
        s.connect("a:1", &mut fx);
        // The new leader's history differs: it starts over at 1, in two frames.
        let fx = step(&mut s, page(&[1, 2], 3, true, true));
        assert_eq!(entries(&fx), [1, 2]);
        assert!(!s.is_ready());
        let fx = step(&mut s, page(&[3], 3, false, true));
        assert_eq!(entries(&fx), [3]);
        assert!(s.is_ready());
    }

    #[test]
    fn a_shorter_history_than_ours_replaces_it_even_without_reset() {
        let mut s = ready();
        for seq in 1..=4 {
            step(&mut s, broadcast(seq));
        }
        s.disconnected();
        let mut fx = Effects::default();
        s.submit("again", &mut fx);
        s.connect("a:1", &mut fx);
        let fx = step(&mut s, page(&[], 0, false, false));
        assert!(matches!(&fx.events[1], Event::Notice(n) if n.contains("differs")));
        assert_eq!(message_ids(&fx), ["c:1"]);
        assert_eq!(entries(&step(&mut s, broadcast(1))), [1]);
    }

    #[test]
    fn recent_history_is_shown_not_merged() {
        let mut s = ready();
        for seq in 1..=3 {
            step(&mut s, broadcast(seq));
        }
        let mut fx = Effects::default();
        s.request_recent(2, &mut fx);
        assert_eq!(
            requests(&fx),
            [ClientRequest::History {
                from_sequence: 1,
                limit: 2
            }]
        );
        let fx = step(&mut s, page(&[2, 3], 3, false, false));
        let shown: Vec<_> = fx
            .events
            .iter()
            .filter_map(|e| match e {
                Event::HistoryEntry(e) => Some(e.sequence_number),
                _ => None,
            })
            .collect();
        assert_eq!(shown, [2, 3]);
        assert!(entries(&fx).is_empty());
    }

    #[test]
    fn refused_messages_fail_and_leave_the_queue() {
        let mut s = ready();
        let mut fx = Effects::default();
        s.submit("x", &mut fx);
        let fx = step(&mut s, error(ErrorCode::ContentTooLong, Some("c:1")));
        assert!(
            matches!(&fx.events[0], Event::Failed { message_id, reason } if message_id == "c:1" && reason.starts_with("CONTENT_TOO_LONG"))
        );
        assert!(matches!(fx.events[1], Event::ServerError(_)));
        assert_eq!(s.pending_len(), 0);

        let mut fx = Effects::default();
        s.submit(&"x".repeat(MAX_CLIENT_FRAME), &mut fx);
        assert!(fx.frames.is_empty());
        assert!(
            matches!(&fx.events[..], [Event::Failed { message_id, .. }] if message_id == "c:2")
        );
    }

    #[test]
    fn rate_limited_messages_are_resent_later() {
        let mut s = ready();
        let mut fx = Effects::default();
        s.submit("x", &mut fx);
        let fx = step(&mut s, error(ErrorCode::RateLimited, Some("c:1")));
        assert!(fx.retry_later && fx.frames.is_empty());
        let mut fx = Effects::default();
        s.resend_throttled(&mut fx);
        assert_eq!(message_ids(&fx), ["c:1"]);
    }

    #[test]
    fn leader_changes_redirect_or_rediscover() {
        let mut s = ready();
        let fx = step(&mut s, leader_info(true));
        assert_eq!(
            fx.control,
            Some(Control::Redirect {
                address: "127.0.0.1:5102".into(),
                reason: "leader moved to Server 2 at 127.0.0.1:5102".into()
            })
        );
        assert_eq!(s.leader().epoch, Some(5));
        let fx = step(&mut s, leader_info(false));
        assert!(matches!(fx.control, Some(Control::Rediscover { .. })));
        let fx = step(&mut s, error(ErrorCode::NotLeader, None));
        assert!(matches!(fx.control, Some(Control::Rediscover { .. })));
        let fx = step(&mut s, error(ErrorCode::UnknownType, None));
        assert!(fx.control.is_none());
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(join_host_port("::1", 5101), "[::1]:5101");
        assert_eq!(join_host_port("localhost", 5101), "localhost:5101");
    }
}
