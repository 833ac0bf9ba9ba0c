//! `throughput`: N senders, each with up to W messages in flight, as fast as acks return.
//! Reports acked messages per second inside the measurement window and commit latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::redis;
use crate::report::{self, Report, Table};
use crate::sender::{self, Pace, SenderConfig, merge_counts};
use crate::session::ConnectOptions;
use crate::stats::{Latency, Summary, per_second};
use crate::wire;

/// A throughput run.
#[derive(Debug, Clone)]
pub struct ThroughputConfig {
    /// Servers and connect timing.
    pub connect: ConnectOptions,
    /// Sending connections.
    pub senders: usize,
    /// Messages in flight per sender.
    pub window: usize,
    /// Bytes of text per message.
    pub size: usize,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// Length of the window.
    pub duration: Duration,
    /// Stop each sender after this many messages (the window then ends at the last ack).
    pub max_messages: Option<u64>,
    /// Wait this long for outstanding acks at the end.
    pub drain: Duration,
    /// Reconnect and resend when an ack takes this long.
    pub ack_timeout: Duration,
    /// Prefix of the client ids (unique per run).
    pub run_id: String,
    /// `username` of the senders.
    pub username: String,
    /// Publish to this Redis server instead of the cluster (see [`crate::redis`]).
    pub redis: Option<String>,
}

/// The result of a throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Always `"throughput"`.
    pub mode: &'static str,
    /// `"ringchat"`, or `"redis HOST:PORT"`.
    pub target: String,
    /// Sending connections.
    pub senders: usize,
    /// Messages in flight per sender.
    pub window: usize,
    /// Bytes of text per message.
    pub size: usize,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Measured window, seconds.
    pub measured_secs: f64,
    /// Acks received inside the window.
    pub acked_in_window: u64,
    /// Acks per second inside the window.
    pub acked_per_sec: f64,
    /// Distinct messages sent.
    pub sent: u64,
    /// Messages acknowledged in all.
    pub acked: u64,
    /// Messages never acknowledged.
    pub unacked: u64,
    /// Messages refused by an error frame.
    pub failed: u64,
    /// Resends after reconnects.
    pub resent: u64,
    /// Sessions reopened.
    pub reconnects: u64,
    /// Error frames by code, and client-side failures.
    pub errors: BTreeMap<String, u64>,
    /// Acks of already acknowledged messages.
    pub duplicate_acks: u64,
    /// Acks of messages we never sent.
    pub unknown_acks: u64,
    /// Broadcast sequence gaps seen by the senders.
    pub broadcast_gaps: u64,
    /// Send to `message_delivered`.
    pub commit_latency: Summary,
    /// Senders that gave up, with the reason.
    pub fatal: Vec<String>,
}

/// Runs the senders and sums up what they counted.
pub async fn run(cfg: &ThroughputConfig) -> ThroughputReport {
    let t0 = Instant::now();
    let warmup_end = t0 + cfg.warmup;
    let send_until = warmup_end + cfg.duration;
    let content = wire::content(cfg.size);
    let tasks: Vec<_> = (0..cfg.senders)
        .map(|i| {
            let sc = SenderConfig {
                connect: cfg.connect.clone(),
                client_id: format!("{}-s{i}", cfg.run_id),
                username: cfg.username.clone(),
                content: content.clone(),
                window: cfg.window.max(1),
                pace: Pace::Closed,
                max_messages: cfg.max_messages,
                warmup_end,
                send_until,
                drain: cfg.drain,
                ack_timeout: cfg.ack_timeout,
                record_acks: false,
                send_times: None,
                stop: CancellationToken::new(),
                view: None,
            };
            match &cfg.redis {
                None => tokio::spawn(sender::run(sc)),
                Some(addr) => tokio::spawn(redis::send(sc, addr.clone(), cfg.run_id.clone())),
            }
        })
        .collect();
    let mut r = ThroughputReport {
        mode: "throughput",
        target: report::target(cfg.redis.as_deref()),
        senders: cfg.senders,
        window: cfg.window,
        size: cfg.size,
        warmup_secs: cfg.warmup.as_secs_f64(),
        measured_secs: 0.0,
        acked_in_window: 0,
        acked_per_sec: 0.0,
        sent: 0,
        acked: 0,
        unacked: 0,
        failed: 0,
        resent: 0,
        reconnects: 0,
        errors: BTreeMap::new(),
        duplicate_acks: 0,
        unknown_acks: 0,
        broadcast_gaps: 0,
        commit_latency: Summary::default(),
        fatal: Vec::new(),
    };
    let mut commit = Latency::new();
    let mut last_ack: Option<Instant> = None;
    for t in tasks {
        let st = match t.await {
            Ok(st) => st,
            Err(e) => {
                r.fatal.push(format!("sender task failed: {e}"));
                continue;
            }
        };
        r.sent += st.sent;
        r.acked += st.acked;
        r.acked_in_window += st.acked_in_window;
        r.unacked += st.unacked;
        r.failed += st.failed;
        r.resent += st.resent;
        r.reconnects += st.reconnects;
        r.duplicate_acks += st.duplicate_acks;
        r.unknown_acks += st.unknown_acks;
        r.broadcast_gaps += st.broadcast_gaps;
        merge_counts(&mut r.errors, &st.errors);
        commit.merge(&st.commit);
        last_ack = last_ack.max(st.last_window_ack);
        r.fatal.extend(st.fatal);
    }
    // A run cut short by --messages ends at its last ack, otherwise at the planned end.
    let end = match (cfg.max_messages, last_ack) {
        (Some(_), Some(a)) => a.min(send_until),
        _ => send_until,
    };
    r.measured_secs = end.saturating_duration_since(warmup_end).as_secs_f64();
    r.acked_per_sec = per_second(r.acked_in_window, r.measured_secs);
    r.commit_latency = commit.summary();
    r
}

impl Report for ThroughputReport {
    fn table(&self) -> String {
        let mut t = Table::new(&format!(
            "throughput ({}): {} sender(s), window {}, {}-byte messages, {:.1} s measured after {:.1} s warm-up",
            self.target, self.senders, self.window, self.size, self.measured_secs, self.warmup_secs
        ));
        t.row("acked messages/s", report::rate(self.acked_per_sec))
            .row("acked in window", report::count(self.acked_in_window))
            .row(
                "sent / acked / unacked",
                format!(
                    "{} / {} / {}",
                    report::count(self.sent),
                    report::count(self.acked),
                    report::count(self.unacked)
                ),
            )
            .row("errors", report::errors(&self.errors))
            .row("failed (refused)", self.failed)
            .row(
                "reconnects / resent",
                format!("{} / {}", self.reconnects, self.resent),
            )
            .row(
                "dup / unknown acks",
                format!("{} / {}", self.duplicate_acks, self.unknown_acks),
            )
            .row("broadcast gaps", self.broadcast_gaps)
            .latency_header()
            .latency("commit (send->ack)", &self.commit_latency);
        for f in &self.fatal {
            t.row("FATAL", f);
        }
        t.finish()
    }
}
