//! A listening client: counts the `chat_broadcast`s of one sender, measures send-to-receipt
//! latency from the sender's [`SendTimes`], and checks that sequence numbers arrive in order
//! without gaps (DESIGN.md invariant 4).
//!
//! A listener that loses its session reconnects with `from_sequence` set to the last
//! sequence number it saw; the entries that history fills in count as recovered, not as
//! live deliveries. It stops once the sender is done and it has seen every acknowledged
//! message, or `grace` after the sender finished.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use ringchat_proto::server::ServerMessage;
use ringchat_proto::{ChatEntry, Seq};
use tokio::sync::watch;
use tokio::time::sleep;

use crate::sender::SendTimes;
use crate::session::{self, ConnectOptions, Hello, Session};
use crate::stats::Latency;
use crate::wire::{self, Incoming};

/// What a listener does.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where the servers are (for reconnects).
    pub connect: ConnectOptions,
    /// Our `client_id` and `username`.
    pub hello: Hello,
    /// The sender whose broadcasts we count.
    pub sender: String,
    /// When the sender sent each message.
    pub send_times: Arc<SendTimes>,
    /// Start of the measurement window.
    pub warmup_end: Instant,
    /// End of the measurement window.
    pub send_until: Instant,
    /// Becomes `Some(acked)` when the sender has finished with `acked` acknowledged messages.
    pub done: watch::Receiver<Option<u64>>,
    /// How long to keep listening after the sender finished.
    pub grace: Duration,
    /// A `client_ping` this often keeps the session from idling out.
    pub ping_every: Duration,
}

/// What one listener counted.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Broadcasts of the sender's messages received live.
    pub received: u64,
    /// Of those, received inside the measurement window.
    pub received_in_window: u64,
    /// Sender's messages filled in from history after a reconnect.
    pub recovered: u64,
    /// Sender's messages seen more than once.
    pub duplicates: u64,
    /// Broadcasts of other clients.
    pub other_broadcasts: u64,
    /// Broadcasts whose sequence number did not follow the previous one.
    pub gaps: u64,
    /// Send to receipt, for messages first sent inside the window.
    pub delivery: Latency,
    /// Sessions lost and reopened.
    pub reconnects: u64,
    /// Error frames by code, and client-side failures.
    pub errors: BTreeMap<String, u64>,
    /// Counters of the sender's messages seen (index = counter).
    pub seen: Vec<bool>,
    /// Why the listener gave up, if it did.
    pub fatal: Option<String>,
}

impl ListenerStats {
    /// Acknowledged messages (by counter) this listener never saw.
    pub fn missing(&self, acked: &[u64]) -> u64 {
        acked
            .iter()
            .filter(|&&n| {
                !usize::try_from(n).is_ok_and(|i| self.seen.get(i).copied().unwrap_or(false))
            })
            .count() as u64
    }

    /// Distinct messages of the sender seen, live or from history.
    pub fn distinct_seen(&self) -> u64 {
        self.received + self.recovered
    }

    /// Counts the live receipt at `now` of the sender's message `n` (once per message):
    /// towards deliveries in the window if it arrived inside it, and towards delivery
    /// latency if the message was sent inside it.
    pub fn count_delivery(&mut self, cfg: &ListenerConfig, n: u64, now: Instant) {
        if !self.mark(n) {
            return;
        }
        self.received += 1;
        let (w0, w1) = (cfg.warmup_end, cfg.send_until);
        if now >= w0 && now < w1 {
            self.received_in_window += 1;
        }
        if let Some(sent) = cfg.send_times.get(n)
            && sent >= w0
            && sent < w1
        {
            self.delivery.record(now.saturating_duration_since(sent));
        }
    }

    /// Whether a listener may stop: the sender finished (`done` holds its acked count
    /// and when it was seen) and every acked message arrived, or `grace` has passed.
    pub fn finished(&self, done: Option<(Instant, u64)>, grace: Duration) -> bool {
        done.is_some_and(|(at, acked)| self.distinct_seen() >= acked || at.elapsed() >= grace)
    }

    fn mark(&mut self, n: u64) -> bool {
        let Ok(i) = usize::try_from(n) else {
            return false;
        };
        if i >= self.seen.len() {
            self.seen.resize(i + 1, false);
        }
        if self.seen[i] {
            self.duplicates += 1;
            return false;
        }
        self.seen[i] = true;
        true
    }
}

struct Listener {
    cfg: ListenerConfig,
    st: ListenerStats,
    expected: Option<Seq>,
    last_seq: Seq,
}

/// Runs a listener on an open session until the sender is done.
pub async fn run(cfg: ListenerConfig, session: Session) -> ListenerStats {
    let mut l = Listener {
        st: ListenerStats {
            seen: vec![false; cfg.send_times.capacity() + 1],
            ..ListenerStats::default()
        },
        expected: Some(session.last_sequence + 1),
        last_seq: session.last_sequence,
        cfg,
    };
    l.run_loop(session).await;
    l.st
}

impl Listener {
    async fn run_loop(&mut self, first: Session) {
        let mut session = first;
        let mut done_at: Option<(Instant, u64)> = None;
        let mut last_ping = Instant::now();
        let mut done = self.cfg.done.clone();
        loop {
            if done_at.is_none()
                && let Some(acked) = *done.borrow()
            {
                done_at = Some((Instant::now(), acked));
            }
            if self.st.finished(done_at, self.cfg.grace) {
                return;
            }
            if last_ping.elapsed() >= self.cfg.ping_every {
                last_ping = Instant::now();
                let sent = session
                    .conn
                    .send(wire::ping(&self.cfg.hello.client_id))
                    .await
                    .is_ok();
                if !sent {
                    match self.reconnect().await {
                        Some(s) => session = s,
                        None => return,
                    }
                    continue;
                }
            }
            let lost = tokio::select! {
                frame = session.conn.next() => match frame {
                    Some(Ok(payload)) => self.on_frame(&payload),
                    _ => true,
                },
                changed = done.changed(), if done_at.is_none() => {
                    if changed.is_err() {
                        // The sender is gone without a verdict: stop after the grace period.
                        done_at = Some((Instant::now(), u64::MAX));
                    }
                    false
                }
                _ = sleep(Duration::from_millis(100)) => false,
            };
            if lost {
                match self.reconnect().await {
                    Some(s) => session = s,
                    None => return,
                }
            }
        }
    }

    /// Handles one frame; true when the session is over.
    fn on_frame(&mut self, payload: &[u8]) -> bool {
        let msg = match wire::parse(payload) {
            Ok(m) => m,
            Err(_) => {
                *self.st.errors.entry("BAD_SERVER_FRAME".into()).or_default() += 1;
                return false;
            }
        };
        match msg {
            Incoming::Broadcast {
                client_id,
                message_id,
                seq,
            } => {
                self.on_broadcast(&client_id, &message_id, seq);
                false
            }
            Incoming::Delivered { .. } => false,
            Incoming::Other(m) => match *m {
                ServerMessage::Error(e) => {
                    *self.st.errors.entry(e.code.as_str().into()).or_default() += 1;
                    e.code.closes_connection()
                }
                // The leader is moving: the session is over.
                ServerMessage::LeaderInfo(_) => true,
                _ => false,
            },
        }
    }

    fn on_broadcast(&mut self, client_id: &str, message_id: &str, seq: Seq) {
        let now = Instant::now();
        if self.expected.is_some_and(|e| e != seq) {
            self.st.gaps += 1;
        }
        self.expected = Some(seq + 1);
        self.last_seq = self.last_seq.max(seq);
        if client_id != self.cfg.sender {
            self.st.other_broadcasts += 1;
            return;
        }
        let Some(n) = wire::counter_of(&self.cfg.sender, message_id) else {
            self.st.other_broadcasts += 1;
            return;
        };
        self.st.count_delivery(&self.cfg, n, now);
    }

    fn on_history(&mut self, entries: &[ChatEntry]) {
        for e in entries {
            self.last_seq = self.last_seq.max(e.sequence_number);
            if e.client_id == self.cfg.sender
                && let Some(n) = wire::counter_of(&self.cfg.sender, &e.message_id)
                && self.st.mark(n)
            {
                self.st.recovered += 1;
            }
        }
    }

    async fn reconnect(&mut self) -> Option<Session> {
        self.st.reconnects += 1;
        let hello = Hello {
            from_sequence: Some(self.last_seq),
            ..self.cfg.hello.clone()
        };
        match session::open(&self.cfg.connect, &hello, None).await {
            Ok(s) => {
                if s.reset {
                    *self.st.errors.entry("HISTORY_RESET".into()).or_default() += 1;
                }
                self.on_history(&s.history);
                self.expected = Some(s.last_sequence + 1);
                self.last_seq = self.last_seq.max(s.last_sequence);
                Some(s)
            }
            Err(e) => {
                self.st.fatal = Some(format!("{e:#}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_counts_acked_messages_not_seen() {
        let mut st = ListenerStats {
            seen: vec![false; 4],
            ..ListenerStats::default()
        };
        assert!(st.mark(1));
        assert!(st.mark(3));
        assert!(!st.mark(3));
        assert!(st.mark(9)); // beyond the table: it grows
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.missing(&[1, 2, 3, 9, 10]), 2);
    }
}
