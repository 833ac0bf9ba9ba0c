//! `latency` and `fanout`: one sender at a fixed rate (open loop: the schedule never waits
//! for the server) and L listening clients. Reports commit latency (send to the sender's
//! `message_delivered`), delivery latency (send to a listener's `chat_broadcast`), and
//! deliveries per second across the listeners.
//!
//! Send instants are the real ones, taken just before each write; the schedule is kept at
//! the timer's 1 ms granularity, several messages per tick above 1,000 msg/s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::future::try_join_all;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::listener::{self, ListenerConfig};
use crate::redis::{self, RespConn};
use crate::report::{self, Report, Table};
use crate::sender::{self, Pace, SendTimes, SenderConfig, merge_counts};
use crate::session::{self, ConnectOptions, Hello, Session};
use crate::stats::{Latency, Summary, per_second};
use crate::wire;

/// Which table to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Latency percentiles first.
    Latency,
    /// Deliveries per second first.
    Fanout,
}

/// An open-loop run.
#[derive(Debug, Clone)]
pub struct OpenLoopConfig {
    /// Servers and connect timing.
    pub connect: ConnectOptions,
    /// Messages per second from the sender.
    pub rate: f64,
    /// Listening clients.
    pub listeners: usize,
    /// Bytes of text per message.
    pub size: usize,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// Length of the window.
    pub duration: Duration,
    /// Send at most this many messages.
    pub max_messages: Option<u64>,
    /// Wait this long for the last acks and broadcasts.
    pub drain: Duration,
    /// Reconnect and resend when an ack takes this long.
    pub ack_timeout: Duration,
    /// Prefix of the client ids.
    pub run_id: String,
    /// `username` of the clients.
    pub username: String,
    /// Which table to print.
    pub flavor: Flavor,
    /// Publish to and subscribe on this Redis server instead of the cluster.
    pub redis: Option<String>,
}

/// A listener's connection, opened before the sender starts.
enum Listening {
    RingChat(Session),
    Redis(RespConn),
}

async fn connect_listeners(cfg: &OpenLoopConfig, hellos: &[Hello]) -> Result<Vec<Listening>> {
    match &cfg.redis {
        None => Ok(
            try_join_all(hellos.iter().map(|h| session::open(&cfg.connect, h, None)))
                .await?
                .into_iter()
                .map(Listening::RingChat)
                .collect(),
        ),
        Some(addr) => Ok(try_join_all(
            hellos
                .iter()
                .map(|_| redis::subscribe(addr, &cfg.run_id, cfg.connect.attempt_timeout)),
        )
        .await?
        .into_iter()
        .map(Listening::Redis)
        .collect()),
    }
}

/// The result of a `latency` or `fanout` run.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopReport {
    /// `"latency"` or `"fanout"`.
    pub mode: Flavor,
    /// `"ringchat"`, or `"redis HOST:PORT"`.
    pub target: String,
    /// Target send rate.
    pub rate: f64,
    /// Listening clients.
    pub listeners: usize,
    /// Bytes of text per message.
    pub size: usize,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Measured window, seconds.
    pub measured_secs: f64,
    /// Messages sent.
    pub sent: u64,
    /// Messages sent per second inside the window (against `rate`).
    pub sent_per_sec: f64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages never acknowledged.
    pub unacked: u64,
    /// Messages refused by an error frame.
    pub failed: u64,
    /// Broadcasts received by the listeners inside the window.
    pub deliveries_in_window: u64,
    /// Deliveries per second across all listeners.
    pub deliveries_per_sec: f64,
    /// Live deliveries in all.
    pub deliveries: u64,
    /// Acknowledged messages some listener never received (summed over listeners).
    pub missing_deliveries: u64,
    /// Messages filled in from history after a listener reconnected.
    pub recovered: u64,
    /// Messages a listener saw twice.
    pub duplicate_deliveries: u64,
    /// Broadcast sequence gaps (sender and listeners).
    pub broadcast_gaps: u64,
    /// Sessions reopened (sender and listeners).
    pub reconnects: u64,
    /// Error frames by code, and client-side failures.
    pub errors: BTreeMap<String, u64>,
    /// Send to the sender's `message_delivered`.
    pub commit_latency: Summary,
    /// Send to a listener's `chat_broadcast`.
    pub delivery_latency: Summary,
    /// Clients that gave up, with the reason.
    pub fatal: Vec<String>,
}

/// Connects the listeners, runs the sender, and sums up.
pub async fn run(cfg: &OpenLoopConfig) -> Result<OpenLoopReport> {
    let sender_id = format!("{}-s0", cfg.run_id);
    let hellos: Vec<Hello> = (0..cfg.listeners)
        .map(|i| Hello {
            client_id: format!("{}-l{i}", cfg.run_id),
            username: cfg.username.clone(),
            from_sequence: None,
        })
        .collect();
    let sessions = connect_listeners(cfg, &hellos)
        .await
        .context("connecting the listeners")?;

    let t0 = Instant::now();
    let warmup_end = t0 + cfg.warmup;
    let send_until = warmup_end + cfg.duration;
    let planned = (cfg.rate * (cfg.warmup + cfg.duration).as_secs_f64()).ceil() as u64 + 1;
    let capacity = cfg.max_messages.map_or(planned, |m| m.min(planned));
    let send_times = Arc::new(SendTimes::new(
        t0,
        usize::try_from(capacity).context("too many messages")?,
    ));
    let (done_tx, done_rx) = watch::channel(None);
    let listeners: Vec<_> = hellos
        .into_iter()
        .zip(sessions)
        .map(|(hello, s)| {
            let lc = ListenerConfig {
                connect: cfg.connect.clone(),
                hello,
                sender: sender_id.clone(),
                send_times: send_times.clone(),
                warmup_end,
                send_until,
                done: done_rx.clone(),
                grace: cfg.drain,
                ping_every: Duration::from_secs(10),
            };
            match s {
                Listening::RingChat(s) => tokio::spawn(listener::run(lc, s)),
                Listening::Redis(c) => tokio::spawn(redis::listen(lc, c)),
            }
        })
        .collect();
    let sc = SenderConfig {
        connect: cfg.connect.clone(),
        client_id: sender_id,
        username: cfg.username.clone(),
        content: wire::content(cfg.size),
        window: 1_000_000,
        pace: Pace::Rate {
            per_sec: cfg.rate,
            catch_up: true,
        },
        max_messages: Some(capacity),
        warmup_end,
        send_until,
        drain: cfg.drain,
        ack_timeout: cfg.ack_timeout,
        record_acks: true,
        send_times: Some(send_times.clone()),
        stop: CancellationToken::new(),
        view: None,
    };
    let st = match &cfg.redis {
        None => sender::run(sc).await,
        Some(addr) => redis::send(sc, addr.clone(), cfg.run_id.clone()).await,
    };
    done_tx.send_replace(Some(st.acked));
    let acked: Vec<u64> = st.acks.iter().map(|a| a.counter).collect();
    let sent_in_window = (1..=st.sent)
        .filter_map(|n| send_times.get(n))
        .filter(|&at| at >= warmup_end && at < send_until)
        .count() as u64;

    let end = match (cfg.max_messages, st.last_window_ack) {
        (Some(_), Some(a)) => a.min(send_until),
        _ => send_until,
    };
    let measured_secs = end.saturating_duration_since(warmup_end).as_secs_f64();
    let mut r = OpenLoopReport {
        mode: cfg.flavor,
        target: report::target(cfg.redis.as_deref()),
        rate: cfg.rate,
        listeners: cfg.listeners,
        size: cfg.size,
        warmup_secs: cfg.warmup.as_secs_f64(),
        measured_secs,
        sent: st.sent,
        sent_per_sec: per_second(sent_in_window, measured_secs),
        acked: st.acked,
        unacked: st.unacked,
        failed: st.failed,
        deliveries_in_window: 0,
        deliveries_per_sec: 0.0,
        deliveries: 0,
        missing_deliveries: 0,
        recovered: 0,
        duplicate_deliveries: 0,
        broadcast_gaps: st.broadcast_gaps,
        reconnects: st.reconnects,
        errors: st.errors.clone(),
        commit_latency: st.commit.summary(),
        delivery_latency: Summary::default(),
        fatal: st.fatal.iter().cloned().collect(),
    };
    let mut delivery = Latency::new();
    for l in listeners {
        let ls = match l.await {
            Ok(ls) => ls,
            Err(e) => {
                r.fatal.push(format!("listener task failed: {e}"));
                continue;
            }
        };
        r.deliveries += ls.received;
        r.deliveries_in_window += ls.received_in_window;
        r.missing_deliveries += ls.missing(&acked);
        r.recovered += ls.recovered;
        r.duplicate_deliveries += ls.duplicates;
        r.broadcast_gaps += ls.gaps;
        r.reconnects += ls.reconnects;
        merge_counts(&mut r.errors, &ls.errors);
        delivery.merge(&ls.delivery);
        r.fatal.extend(ls.fatal);
    }
    r.deliveries_per_sec = per_second(r.deliveries_in_window, measured_secs);
    r.delivery_latency = delivery.summary();
    Ok(r)
}

impl Report for OpenLoopReport {
    fn table(&self) -> String {
        let name = match self.mode {
            Flavor::Latency => "latency",
            Flavor::Fanout => "fanout",
        };
        let mut t = Table::new(&format!(
            "{name} ({}): {} msg/s open loop, {} listener(s), {}-byte messages, {:.1} s measured after {:.1} s warm-up",
            self.target,
            report::rate(self.rate),
            self.listeners,
            self.size,
            self.measured_secs,
            self.warmup_secs
        ));
        if self.mode == Flavor::Fanout {
            t.row("deliveries/s", report::rate(self.deliveries_per_sec));
        }
        t.row("sent msg/s (achieved)", report::rate(self.sent_per_sec))
            .row(
                "sent / acked / unacked",
                format!(
                    "{} / {} / {}",
                    report::count(self.sent),
                    report::count(self.acked),
                    report::count(self.unacked)
                ),
            )
            .row(
                "deliveries (window/all)",
                format!(
                    "{} / {}",
                    report::count(self.deliveries_in_window),
                    report::count(self.deliveries)
                ),
            );
        if self.mode == Flavor::Latency {
            t.row("deliveries/s", report::rate(self.deliveries_per_sec));
        }
        t.row("missing deliveries", self.missing_deliveries)
            .row(
                "recovered / duplicates",
                format!("{} / {}", self.recovered, self.duplicate_deliveries),
            )
            .row("broadcast gaps", self.broadcast_gaps)
            .row("errors", report::errors(&self.errors))
            .row("failed (refused)", self.failed)
            .row("reconnects", self.reconnects)
            .latency_header()
            .latency("commit (send->ack)", &self.commit_latency)
            .latency("delivery (send->bcast)", &self.delivery_latency);
        for f in &self.fatal {
            t.row("FATAL", f);
        }
        t.finish()
    }
}
