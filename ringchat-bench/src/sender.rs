//! One sending client: keeps up to `window` messages in flight, paced or as fast as acks
//! come back, and follows the leader across reconnects, resending every unacknowledged
//! message with its original `message_id` (the server deduplicates).
//!
//! Message ids are `"<client_id>:<n>"` with `n` counting from 1, so an ack maps back to
//! its send time without a lookup by string. Latency is measured from the first send of a
//! message to its `message_delivered`, including any resend after a leader change.
//!
//! The measurement window is `[warmup_end, send_until)`: acks received in it count towards
//! the rate, and messages first sent in it towards the latency histogram. Sending stops at
//! `send_until` (or after `max_messages`, or when `stop` fires); the sender then waits up to
//! `drain` for the last acks and counts what is still missing as unacknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use ringchat_proto::server::ServerMessage;
use ringchat_proto::{ErrorCode, NodeId, Seq};
use tokio::sync::watch;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::session::{self, ConnectOptions, Hello, Session};
use crate::stats::Latency;
use crate::wire::{self, Incoming};

/// How sends are spaced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the window allows (closed loop).
    Closed,
    /// At a fixed rate. With `catch_up`, sends that fell behind are made up at once (open
    /// loop: the schedule does not wait for the server); without, the next send is one
    /// period after the later of the previous slot and now.
    Rate {
        /// Messages per second.
        per_sec: f64,
        /// Whether a late sender makes up missed slots.
        catch_up: bool,
    },
}

/// Send instants shared with the listeners, indexed by message counter.
#[derive(Debug)]
pub struct SendTimes {
    base: Instant,
    nanos: Vec<AtomicU64>,
}

impl SendTimes {
    /// Room for counters `1..=capacity`, measured from `base`.
    pub fn new(base: Instant, capacity: usize) -> Self {
        Self {
            base,
            nanos: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, n: u64) -> Option<&AtomicU64> {
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        self.nanos.get(i)
    }

    /// Notes when message `n` was first sent.
    pub fn record(&self, n: u64, at: Instant) {
        if let Some(slot) = self.slot(n) {
            let ns = u64::try_from(at.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX - 1);
            slot.store(ns + 1, Ordering::Release);
        }
    }

    /// When message `n` was first sent, if it was.
    pub fn get(&self, n: u64) -> Option<Instant> {
        match self.slot(n)?.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns - 1)),
        }
    }

    /// Counters this table has room for.
    pub fn capacity(&self) -> usize {
        self.nanos.len()
    }
}

/// What a sender does.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Where the servers are.
    pub connect: ConnectOptions,
    /// Our `client_id`; message ids are `"<client_id>:<n>"`.
    pub client_id: String,
    /// Our `username`.
    pub username: String,
    /// The text of every message.
    pub content: String,
    /// Messages in flight at most.
    pub window: usize,
    /// Spacing of sends.
    pub pace: Pace,
    /// Stop after this many distinct messages.
    pub max_messages: Option<u64>,
    /// Start of the measurement window.
    pub warmup_end: Instant,
    /// End of the measurement window and of sending.
    pub send_until: Instant,
    /// How long to wait for outstanding acks after sending stops.
    pub drain: Duration,
    /// A message unacknowledged this long makes the sender reconnect and resend.
    pub ack_timeout: Duration,
    /// Keep one [`AckRecord`] per ack.
    pub record_acks: bool,
    /// Publish send instants here (for listeners).
    pub send_times: Option<Arc<SendTimes>>,
    /// Stops sending early when cancelled.
    pub stop: CancellationToken,
    /// Publishes where the sender is connected (for the failover controller).
    pub view: Option<watch::Sender<SenderView>>,
}

/// Where a sender is connected and how far it got; published on every change.
#[derive(Debug, Clone, Default)]
pub struct SenderView {
    /// Leader of the current session.
    pub leader_id: Option<NodeId>,
    /// Whether a `client_ping_ack` on this session confirmed `leader_id` as serving leader.
    pub leader_confirmed: bool,
    /// Client address of the current session.
    pub addr: String,
    /// When the current session opened.
    pub session_started: Option<Instant>,
    /// Acks received on the current session.
    pub session_acks: u64,
    /// Acks received in all.
    pub acks: u64,
    /// When the latest ack arrived.
    pub last_ack_at: Option<Instant>,
    /// The sender has finished.
    pub finished: bool,
}

/// One received `message_delivered`.
#[derive(Debug, Clone)]
pub struct AckRecord {
    /// Message counter.
    pub counter: u64,
    /// The acknowledged sequence number.
    pub seq: Seq,
    /// When the ack arrived.
    pub at: Instant,
    /// When the session that carried it opened.
    pub session_started: Instant,
    /// The leader of that session.
    pub leader: Option<NodeId>,
}

/// What one sender counted.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// Distinct messages sent.
    pub sent: u64,
    /// Resends after a reconnect.
    pub resent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Acks received inside the measurement window.
    pub acked_in_window: u64,
    /// When the last ack inside the window arrived.
    pub last_window_ack: Option<Instant>,
    /// Send to `message_delivered`, for messages first sent inside the window.
    pub commit: Latency,
    /// Messages refused with an error frame naming them.
    pub failed: u64,
    /// Messages never acknowledged.
    pub unacked: u64,
    /// Error frames by code, and client-side failures (`ACK_TIMEOUT`, `BAD_SERVER_FRAME`).
    pub errors: BTreeMap<String, u64>,
    /// Sessions lost and reopened.
    pub reconnects: u64,
    /// Acks of messages already acknowledged.
    pub duplicate_acks: u64,
    /// Acks of message ids we never sent.
    pub unknown_acks: u64,
    /// Broadcasts whose sequence number did not follow the previous one.
    pub broadcast_gaps: u64,
    /// Every ack, when asked for.
    pub acks: Vec<AckRecord>,
    /// Why the sender gave up, if it did.
    pub fatal: Option<String>,
}

impl SenderConfig {
    /// The frame of our `n`-th message, the same bytes on a resend (same `message_id`).
    fn message_frame(&self, n: u64) -> Bytes {
        let id = wire::message_id(&self.client_id, n);
        wire::message(&self.client_id, &self.username, &self.content, &id)
    }
}

impl SenderStats {
    /// Counts the ack at `at` of a message first sent at `first_sent`: towards the rate if
    /// it arrived inside the measurement window, towards the latency if it was sent in it.
    pub fn count_ack(&mut self, cfg: &SenderConfig, first_sent: Instant, at: Instant) {
        let (w0, w1) = (cfg.warmup_end, cfg.send_until);
        self.acked += 1;
        if at >= w0 && at < w1 {
            self.acked_in_window += 1;
            self.last_window_ack = Some(at);
        }
        if first_sent >= w0 && first_sent < w1 {
            self.commit.record(at.saturating_duration_since(first_sent));
        }
    }

    /// Counts one occurrence of `kind` in `errors`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }
}

/// Adds `from` into `into`, key by key.
pub fn merge_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Sessions in a row that may break before resending succeeds, before the sender gives up.
const MAX_RECONNECTS: usize = 100;

struct Flight {
    first_sent: Instant,
    last_sent: Instant,
}

/// What the loop does after a frame.
enum Next {
    Continue,
    Reconnect(Option<String>),
}

/// Which message goes out next and when, for a sender of any target: the counter, the
/// pace, and the end of sending (`send_until`, `max_messages`, `stop`).
#[derive(Debug)]
pub struct Schedule {
    pace: Pace,
    next: u64,
    next_due: Instant,
    max_messages: Option<u64>,
    send_until: Instant,
    stop: CancellationToken,
}

impl Schedule {
    /// The schedule of `cfg`, starting now with counter 1.
    pub fn new(cfg: &SenderConfig) -> Self {
        Self {
            pace: cfg.pace,
            next: 1,
            next_due: Instant::now(),
            max_messages: cfg.max_messages,
            send_until: cfg.send_until,
            stop: cfg.stop.clone(),
        }
    }

    /// Whether sending goes on (not stopped, not past the end or the message limit).
    pub fn open(&self, now: Instant) -> bool {
        !self.stop.is_cancelled()
            && now < self.send_until
            && self.max_messages.is_none_or(|m| self.next <= m)
    }

    /// Whether the next message may go out now, with `inflight` of `window` in flight.
    pub fn may_send(&self, now: Instant, inflight: usize, window: usize) -> bool {
        inflight < window
            && match self.pace {
                Pace::Closed => true,
                Pace::Rate { .. } => now >= self.next_due,
            }
            && self.open(now)
    }

    /// Takes the next counter and moves the pace on by one message.
    pub fn take(&mut self, now: Instant) -> u64 {
        let n = self.next;
        self.next += 1;
        if let Pace::Rate { per_sec, catch_up } = self.pace {
            let period = Duration::from_secs_f64(1.0 / per_sec.max(1e-3));
            self.next_due = if catch_up {
                self.next_due + period
            } else {
                self.next_due.max(now) + period
            };
        }
        n
    }

    /// The next counter to be sent (counters below it have been sent).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// When to look again while sending is open, at most 100 ms from `now`: the end of
    /// sending, or the next slot of a paced sender with room in its window.
    pub fn wake(&self, now: Instant, room: bool) -> Instant {
        let mut wake = (now + Duration::from_millis(100)).min(self.send_until);
        if room && matches!(self.pace, Pace::Rate { .. }) {
            wake = wake.min(self.next_due);
        }
        wake
    }

    /// Resolves when the sender is stopped early.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }
}

struct Engine {
    cfg: SenderConfig,
    hello: Hello,
    st: SenderStats,
    inflight: BTreeMap<u64, Flight>,
    schedule: Schedule,
    expected_bcast: Option<Seq>,
    view: SenderView,
}

/// Runs one sender to the end and returns what it counted.
pub async fn run(cfg: SenderConfig) -> SenderStats {
    let hello = Hello {
        client_id: cfg.client_id.clone(),
        username: cfg.username.clone(),
        from_sequence: None,
    };
    let mut e = Engine {
        hello,
        st: SenderStats::default(),
        inflight: BTreeMap::new(),
        schedule: Schedule::new(&cfg),
        expected_bcast: None,
        view: SenderView::default(),
        cfg,
    };
    match session::open(&e.cfg.connect, &e.hello, None).await {
        Ok(s) => e.run_loop(s).await,
        Err(err) => e.st.fatal = Some(format!("{err:#}")),
    }
    e.st.unacked = e.inflight.len() as u64;
    e.view.finished = true;
    e.publish();
    e.st
}

impl Engine {
    fn publish(&self) {
        if let Some(tx) = &self.cfg.view {
            tx.send_replace(self.view.clone());
        }
    }

    async fn run_loop(&mut self, first: Session) {
        let mut session = first;
        if let Err(next) = self.begin_session(&mut session).await {
            match self.reconnect(next).await {
                Some(s) => session = s,
                None => return,
            }
        }
        let mut closed_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let open = self.schedule.open(now);
            if open {
                if self.send_due(&mut session, now).await.is_err() {
                    match self.reconnect(None).await {
                        Some(s) => session = s,
                        None => return,
                    }
                    continue;
                }
            } else {
                let closed = *closed_at.get_or_insert(now);
                if self.inflight.is_empty() || now >= closed + self.cfg.drain {
                    return;
                }
            }
            if let Some((_, f)) = self.inflight.first_key_value()
                && now.saturating_duration_since(f.last_sent) >= self.cfg.ack_timeout
            {
                self.st.error("ACK_TIMEOUT");
                match self.reconnect(None).await {
                    Some(s) => session = s,
                    None => return,
                }
                continue;
            }
            let wake = self.next_wake(now, open, closed_at);
            let next = tokio::select! {
                frame = session.conn.next() => match frame {
                    Some(Ok(payload)) => {
                        let mut next = self.on_frame(&payload, &session);
                        // Take whatever else is already buffered before sending again.
                        for _ in 0..256 {
                            if !matches!(next, Next::Continue) {
                                break;
                            }
                            match session.conn.next().now_or_never() {
                                Some(Some(Ok(p))) => next = self.on_frame(&p, &session),
                                Some(_) => next = Next::Reconnect(None),
                                None => break,
                            }
                        }
                        next
                    }
                    _ => Next::Reconnect(None),
                },
                _ = sleep_until(wake.into()) => Next::Continue,
                _ = self.schedule.stopped(), if open => Next::Continue,
            };
            if let Next::Reconnect(hint) = next {
                match self.reconnect(hint).await {
                    Some(s) => session = s,
                    None => return,
                }
            }
        }
    }

    fn next_wake(&self, now: Instant, open: bool, closed_at: Option<Instant>) -> Instant {
        let mut wake = now + Duration::from_millis(100);
        if open {
            wake = self
                .schedule
                .wake(now, self.inflight.len() < self.cfg.window);
        } else if let Some(c) = closed_at {
            wake = wake.min(c + self.cfg.drain);
        }
        if let Some((_, f)) = self.inflight.first_key_value() {
            wake = wake.min(f.last_sent + self.cfg.ack_timeout);
        }
        wake.max(now)
    }

    /// Sends every message the window and the pace allow now.
    async fn send_due(&mut self, session: &mut Session, now: Instant) -> anyhow::Result<()> {
        let mut fed = 0usize;
        while self
            .schedule
            .may_send(now, self.inflight.len(), self.cfg.window)
        {
            let n = self.schedule.take(now);
            let frame = self.cfg.message_frame(n);
            let at = Instant::now();
            if let Some(t) = &self.cfg.send_times {
                t.record(n, at);
            }
            self.inflight.insert(
                n,
                Flight {
                    first_sent: at,
                    last_sent: at,
                },
            );
            self.st.sent += 1;
            session.conn.feed(frame).await?;
            fed += 1;
        }
        if fed > 0 {
            SinkExt::<Bytes>::flush(&mut session.conn).await?;
        }
        Ok(())
    }

    /// Publishes the new session and asks it who leads (the ack confirms the leader id).
    async fn begin_session(&mut self, session: &mut Session) -> Result<(), Option<String>> {
        self.expected_bcast = Some(session.last_sequence + 1);
        self.view.leader_id = session.leader_id;
        self.view.leader_confirmed = false;
        self.view.addr = session.addr.clone();
        self.view.session_started = Some(session.started);
        self.view.session_acks = 0;
        self.publish();
        let ping = wire::ping(&self.cfg.client_id);
        session.conn.send(ping).await.map_err(|_| None)
    }

    /// Opens a new session on the leader and resends what is in flight.
    async fn reconnect(&mut self, mut hint: Option<String>) -> Option<Session> {
        for _ in 0..MAX_RECONNECTS {
            self.st.reconnects += 1;
            let mut session = match session::open(&self.cfg.connect, &self.hello, hint.take()).await
            {
                Ok(s) => s,
                Err(err) => {
                    self.st.fatal = Some(format!("{err:#}"));
                    return None;
                }
            };
            if self.begin_session(&mut session).await.is_err() {
                continue;
            }
            let now = Instant::now();
            let mut ok = true;
            for (&n, f) in self.inflight.iter_mut() {
                let frame = self.cfg.message_frame(n);
                f.last_sent = now;
                self.st.resent += 1;
                if session.conn.feed(frame).await.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok && SinkExt::<Bytes>::flush(&mut session.conn).await.is_ok() {
                return Some(session);
            }
        }
        self.st.fatal = Some(format!(
            "{MAX_RECONNECTS} sessions in a row closed before the in-flight messages were resent"
        ));
        None
    }

    fn on_frame(&mut self, payload: &[u8], session: &Session) -> Next {
        let msg = match wire::parse(payload) {
            Ok(m) => m,
            Err(_) => {
                self.st.error("BAD_SERVER_FRAME");
                return Next::Continue;
            }
        };
        match msg {
            Incoming::Delivered { message_id, seq } => {
                self.on_ack(&message_id, seq, session);
                Next::Continue
            }
            Incoming::Broadcast { seq, .. } => {
                if self.expected_bcast.is_some_and(|e| e != seq) {
                    self.st.broadcast_gaps += 1;
                }
                self.expected_bcast = Some(seq + 1);
                Next::Continue
            }
            Incoming::Other(msg) => self.on_other(*msg),
        }
    }

    fn on_ack(&mut self, message_id: &str, seq: Seq, session: &Session) {
        let Some(n) = wire::counter_of(&self.cfg.client_id, message_id) else {
            self.st.unknown_acks += 1;
            return;
        };
        let Some(f) = self.inflight.remove(&n) else {
            if n < self.schedule.next() {
                self.st.duplicate_acks += 1;
            } else {
                self.st.unknown_acks += 1;
            }
            return;
        };
        let at = Instant::now();
        self.st.count_ack(&self.cfg, f.first_sent, at);
        if self.cfg.record_acks {
            self.st.acks.push(AckRecord {
                counter: n,
                seq,
                at,
                session_started: session.started,
                leader: self.view.leader_id,
            });
        }
        if self.cfg.view.is_some() {
            self.view.acks += 1;
            self.view.session_acks += 1;
            self.view.last_ack_at = Some(at);
            self.publish();
        }
    }

    fn on_other(&mut self, msg: ServerMessage) -> Next {
        match msg {
            ServerMessage::Error(e) => {
                self.st.error(e.code.as_str());
                if matches!(
                    e.code,
                    ErrorCode::NotLeader | ErrorCode::NoLeader | ErrorCode::ShuttingDown
                ) || e.code.closes_connection()
                {
                    return Next::Reconnect(None);
                }
                if let Some(n) = e
                    .message_id
                    .as_deref()
                    .and_then(|id| wire::counter_of(&self.cfg.client_id, id))
                    && self.inflight.remove(&n).is_some()
                {
                    self.st.failed += 1;
                }
                Next::Continue
            }
            ServerMessage::LeaderInfo(info) => {
                let hint = match (info.leader_address, info.leader_port) {
                    (Some(a), Some(p)) if info.is_available && !info.is_leader => {
                        Some(format!("{a}:{p}"))
                    }
                    _ => None,
                };
                Next::Reconnect(hint)
            }
            ServerMessage::ClientPingAck(info) => {
                if info.is_leader {
                    self.view.leader_id = info.leader_id.or(self.view.leader_id);
                    self.view.leader_confirmed = true;
                    self.publish();
                }
                Next::Continue
            }
            _ => Next::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_times_are_indexed_from_one() {
        let base = Instant::now();
        let t = SendTimes::new(base, 3);
        assert_eq!(t.capacity(), 3);
        assert!(t.get(1).is_none());
        t.record(1, base + Duration::from_micros(5));
        t.record(3, base);
        t.record(4, base); // beyond capacity: ignored
        t.record(0, base); // counters start at 1: ignored
        assert_eq!(t.get(1), Some(base + Duration::from_micros(5)));
        assert_eq!(t.get(3), Some(base));
        assert!(t.get(2).is_none() && t.get(4).is_none() && t.get(0).is_none());
    }

    #[test]
    fn counts_merge_by_key() {
        let mut a = BTreeMap::from([("NO_LEADER".to_string(), 2)]);
        let b = BTreeMap::from([("NO_LEADER".to_string(), 1), ("ACK_TIMEOUT".to_string(), 4)]);
        merge_counts(&mut a, &b);
        assert_eq!(a["NO_LEADER"], 3);
        assert_eq!(a["ACK_TIMEOUT"], 4);
    }
}
