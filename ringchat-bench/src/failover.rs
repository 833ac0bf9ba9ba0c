//! `failover`: one sender at a steady pace (one message every `interval`, each awaiting its
//! ack, resent with the same `message_id` after a reconnect) while the current leader is
//! killed with SIGKILL `kills` times, and optionally restarted.
//!
//! Per kill: the leader is the one the sender's session confirmed with a `client_ping_ack`
//! and that answers a fresh `client_ping` as serving leader; its pid comes from
//! `DIR/<id>.pid`. The failover time runs from the `kill` call to the first ack that
//! arrives on a session opened after it (an ack already on its way from the dead leader
//! does not count). With `--restart-cmd`, the server is started again and the run waits
//! until it names a leader and all servers agree on one before the next kill.
//!
//! At the end the leader's whole history is checked (see [`crate::verify`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ringchat_proto::NodeId;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::cluster;
use crate::report::{self, Report, Table};
use crate::sender::{self, AckRecord, Pace, SenderConfig, SenderView};
use crate::session::{self, ConnectOptions};
use crate::stats::{Latency, Summary};
use crate::verify::{self, Acked, Verification};
use crate::wire;

/// A failover run.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// Servers and connect timing.
    pub connect: ConnectOptions,
    /// Leader kills.
    pub kills: usize,
    /// Where `<id>.pid` files are.
    pub pids_dir: PathBuf,
    /// `sh -c` command that restarts server `{id}` in the background.
    pub restart_cmd: Option<String>,
    /// Admin socket paths with `{id}`: when given, a restarted server counts as back only
    /// once it holds the history the leader had when it rejoined, and no leader is killed
    /// before every server holds its history.
    pub admin_sockets: Option<String>,
    /// Time between sends.
    pub interval: Duration,
    /// Bytes of text per message.
    pub size: usize,
    /// Steady sending before the first kill.
    pub warmup: Duration,
    /// Steady sending after each recovery (and rejoin) before the next kill.
    pub settle: Duration,
    /// Longest wait for the first ack after a kill.
    pub failover_timeout: Duration,
    /// Longest wait for a restarted server to rejoin, and for the ring to agree on a leader.
    pub rejoin_timeout: Duration,
    /// Reconnect and resend when an ack takes this long.
    pub ack_timeout: Duration,
    /// Prefix of the client ids.
    pub run_id: String,
    /// `username` of the sender.
    pub username: String,
}

/// One kill and what followed it.
#[derive(Debug, Clone, Serialize)]
pub struct KillResult {
    /// 1-based.
    pub n: usize,
    /// The killed leader.
    pub killed_id: NodeId,
    /// Its pid.
    pub pid: i32,
    /// Kill to the first ack on a new session, if one came.
    pub failover_ms: Option<f64>,
    /// Leader of the session that carried that ack.
    pub new_leader: Option<NodeId>,
    /// How long the kill waited for every server to hold the leader's history (needs the
    /// admin sockets; long waits mean followers were re-syncing).
    pub presync_wait_ms: Option<f64>,
    /// Restart command to the restarted server naming a leader.
    pub rejoin_ms: Option<f64>,
    /// Restart command to the restarted server holding the leader's history (needs the
    /// admin sockets).
    pub caught_up_ms: Option<f64>,
    /// Entries the restarted server had to catch up on (the leader's last sequence number).
    pub caught_up_entries: Option<u64>,
    /// Restart command to all servers agreeing on a leader the sender is on.
    pub stable_ms: Option<f64>,
    /// Longest gap between acks from the restart to the next kill (a leadership hand-back
    /// to a rejoining higher id shows here).
    pub stall_after_restart_ms: Option<f64>,
    /// What went wrong, if anything.
    pub note: Option<String>,
}

/// Failover times in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FailoverSummary {
    /// Kills with a measured failover.
    pub count: u64,
    /// Fastest.
    pub min_ms: f64,
    /// Median.
    pub median_ms: f64,
    /// 99th percentile (with few kills: the slowest).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The result of a failover run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Always `"failover"`.
    pub mode: &'static str,
    /// Kills asked for.
    pub kills_requested: usize,
    /// Kills done.
    pub kills_done: usize,
    /// Time between sends, ms.
    pub interval_ms: f64,
    /// Bytes of text per message.
    pub size: usize,
    /// Kill to next acked message.
    pub failover: FailoverSummary,
    /// Every kill.
    pub kills: Vec<KillResult>,
    /// Distinct messages sent.
    pub sent: u64,
    /// Messages acknowledged.
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
    /// Acks whose sequence number was lower than the previous ack's: the leader reused
    /// sequence numbers (messages are sent one at a time, so they must rise).
    pub ack_seq_regressions: u64,
    /// Broadcast sequence gaps seen by the sender.
    pub broadcast_gaps: u64,
    /// Longest gap between two acks with no kill between them, ms.
    pub max_ack_gap_outside_kills_ms: Option<f64>,
    /// Send to `message_delivered`, all messages.
    pub commit_latency: Summary,
    /// The history check; `None` if it could not run.
    pub verification: Option<Verification>,
    /// Why the run or the check stopped early.
    pub fatal: Vec<String>,
}

impl FailoverReport {
    /// False when an acked message was lost or duplicated, or the run broke off.
    pub fn passed(&self) -> bool {
        self.fatal.is_empty()
            && self.ack_seq_regressions == 0
            && self.kills_done == self.kills_requested
            && self.kills.iter().all(|k| k.failover_ms.is_some())
            && self.verification.as_ref().is_some_and(|v| v.ok)
    }
}

struct Kill {
    presync_wait: Option<Duration>,
    id: NodeId,
    pid: i32,
    at: Instant,
    restart_at: Option<Instant>,
    rejoined_at: Option<Instant>,
    caught_up: Option<(Instant, u64)>,
    stable_at: Option<Instant>,
    note: Option<String>,
}

/// Runs the sender, kills leaders, and checks the history.
pub async fn run(cfg: &FailoverConfig) -> Result<FailoverReport> {
    let probe_id = format!("{}-probe", cfg.run_id);
    let ids =
        cluster::map_ids(&cfg.connect.servers, &probe_id, cfg.connect.attempt_timeout).await?;
    let (view_tx, mut view_rx) = watch::channel(SenderView::default());
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let client_id = format!("{}-s0", cfg.run_id);
    let sc = SenderConfig {
        connect: cfg.connect.clone(),
        client_id: client_id.clone(),
        username: cfg.username.clone(),
        content: wire::content(cfg.size),
        window: 1,
        pace: Pace::Rate {
            per_sec: 1.0 / cfg.interval.as_secs_f64().max(1e-6),
            catch_up: false,
        },
        max_messages: None,
        warmup_end: t0,
        send_until: t0 + Duration::from_secs(365 * 24 * 3600),
        drain: Duration::from_secs(5),
        ack_timeout: cfg.ack_timeout,
        record_acks: true,
        send_times: None,
        stop: stop.clone(),
        view: Some(view_tx),
    };
    let task = tokio::spawn(sender::run(sc));
    let mut kills: Vec<Kill> = Vec::new();
    let mut fatal = Vec::new();
    if let Err(e) = control(cfg, &ids, &probe_id, &mut view_rx, &mut kills).await {
        fatal.push(format!("{e:#}"));
    }
    stop.cancel();
    let st = task.await.context("sender task failed")?;
    fatal.extend(st.fatal.clone());

    let kill_times: Vec<Instant> = kills.iter().map(|k| k.at).collect();
    let firsts = first_acks_after(&kill_times, &st.acks);
    let mut hist = Latency::new();
    let mut results = Vec::new();
    for (i, (k, first)) in kills.iter().zip(&firsts).enumerate() {
        let failover = first.map(|a| a.at.saturating_duration_since(k.at));
        if let Some(d) = failover {
            hist.record(d);
        }
        let next_kill = kill_times.get(i + 1).copied();
        results.push(KillResult {
            n: i + 1,
            killed_id: k.id,
            pid: k.pid,
            failover_ms: failover.map(ms),
            new_leader: first.and_then(|a| a.leader),
            presync_wait_ms: k.presync_wait.map(ms),
            rejoin_ms: since(k.restart_at, k.rejoined_at),
            caught_up_ms: since(k.restart_at, k.caught_up.map(|c| c.0)),
            caught_up_entries: k.caught_up.map(|c| c.1),
            stable_ms: since(k.restart_at, k.stable_at),
            stall_after_restart_ms: k
                .restart_at
                .and_then(|r| longest_gap(&st.acks, r, next_kill))
                .map(ms),
            note: k.note.clone(),
        });
    }
    let s = hist.summary();
    let summary = FailoverSummary {
        count: s.count,
        min_ms: s.min_us as f64 / 1000.0,
        median_ms: s.p50_us as f64 / 1000.0,
        p99_ms: s.p99_us as f64 / 1000.0,
        max_ms: s.max_us as f64 / 1000.0,
    };

    let verification = if st.acks.is_empty() {
        fatal.push("no message was acknowledged; nothing to verify".into());
        None
    } else {
        match scan_settled(cfg, &ids, &probe_id, &client_id).await {
            Ok(scan) => {
                let acked: Vec<Acked> = st
                    .acks
                    .iter()
                    .map(|a| Acked {
                        counter: a.counter,
                        message_id: wire::message_id(&client_id, a.counter),
                        seq: a.seq,
                    })
                    .collect();
                Some(verify::verify(&acked, &scan))
            }
            Err(e) => {
                fatal.push(format!("history check failed: {e:#}"));
                None
            }
        }
    };

    Ok(FailoverReport {
        mode: "failover",
        kills_requested: cfg.kills,
        kills_done: kills.len(),
        interval_ms: ms(cfg.interval),
        size: cfg.size,
        failover: summary,
        kills: results,
        sent: st.sent,
        acked: st.acked,
        unacked: st.unacked,
        failed: st.failed,
        resent: st.resent,
        reconnects: st.reconnects,
        errors: st.errors.clone(),
        duplicate_acks: st.duplicate_acks,
        ack_seq_regressions: seq_regressions(&st.acks),
        broadcast_gaps: st.broadcast_gaps,
        max_ack_gap_outside_kills_ms: longest_gap_outside(&kill_times, &st.acks).map(ms),
        commit_latency: st.commit.summary(),
        verification,
        fatal,
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn since(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    Some(ms(to?.saturating_duration_since(from?)))
}

async fn wait_view(
    rx: &mut watch::Receiver<SenderView>,
    limit: Duration,
    what: &str,
    f: impl Fn(&SenderView) -> bool,
) -> Result<SenderView> {
    let got = timeout(limit, rx.wait_for(|v| f(v) || v.finished))
        .await
        .with_context(|| format!("timed out after {limit:?} waiting until {what}"))?
        .map_err(|_| anyhow!("the sender is gone"))?
        .clone();
    if !f(&got) {
        bail!("the sender stopped before {what}");
    }
    Ok(got)
}

/// The kill loop. Returns early (with the reason) when the cluster does not recover.
async fn control(
    cfg: &FailoverConfig,
    ids: &BTreeMap<NodeId, String>,
    probe_id: &str,
    view: &mut watch::Receiver<SenderView>,
    kills: &mut Vec<Kill>,
) -> Result<()> {
    let steady =
        |v: &SenderView| v.leader_confirmed && v.leader_id.is_some() && v.session_acks >= 10;
    wait_view(
        view,
        Duration::from_secs(30),
        "the sender has a steady leader",
        steady,
    )
    .await?;
    sleep(cfg.warmup).await;
    for n in 1..=cfg.kills {
        let v = wait_view(
            view,
            cfg.rejoin_timeout,
            "the sender has a steady leader",
            steady,
        )
        .await?;
        let leader = v.leader_id.ok_or_else(|| anyhow!("no leader id"))?;
        let presync_wait = match &cfg.admin_sockets {
            Some(pattern) => {
                let started = Instant::now();
                cluster::wait_all_caught_up(pattern, ids, leader, cfg.rejoin_timeout)
                    .await
                    .context("waiting for every server to hold the leader's history")?;
                Some(started.elapsed())
            }
            None => None,
        };
        confirm_leader(&v.addr, leader, probe_id, cfg.rejoin_timeout).await?;
        let pid = cluster::read_pid(&cfg.pids_dir, leader)?;
        let at = Instant::now();
        cluster::kill9(pid).with_context(|| format!("killing leader {leader}"))?;
        kills.push(Kill {
            presync_wait,
            id: leader,
            pid,
            at,
            restart_at: None,
            rejoined_at: None,
            caught_up: None,
            stable_at: None,
            note: None,
        });
        let recovered = wait_view(
            view,
            cfg.failover_timeout,
            "an ack arrives after the kill",
            |v| v.last_ack_at.is_some_and(|t| t > at) && v.session_started.is_some_and(|t| t > at),
        )
        .await;
        if let Err(e) = recovered {
            note(kills, format!("kill {n}: {e:#}"));
            bail!("no recovery after kill {n} of leader {leader}: {e:#}");
        }
        if let Some(cmd) = &cfg.restart_cmd {
            let restart_at = Instant::now();
            if let Some(k) = kills.last_mut() {
                k.restart_at = Some(restart_at);
            }
            cluster::restart(cmd, leader, Duration::from_secs(30)).await?;
            let addr = ids
                .get(&leader)
                .ok_or_else(|| anyhow!("server {leader} is not in --servers"))?;
            cluster::wait_knows_leader(addr, probe_id, cfg.rejoin_timeout).await?;
            if let Some(k) = kills.last_mut() {
                k.rejoined_at = Some(Instant::now());
            }
            if let Some(pattern) = &cfg.admin_sockets {
                let current = view
                    .borrow()
                    .leader_id
                    .ok_or_else(|| anyhow!("the sender knows no leader"))?;
                let target =
                    cluster::wait_caught_up(pattern, leader, current, cfg.rejoin_timeout).await?;
                if let Some(k) = kills.last_mut() {
                    k.caught_up = Some((Instant::now(), target));
                }
            }
            wait_agreement(ids, probe_id, view, cfg.rejoin_timeout).await?;
            if let Some(k) = kills.last_mut() {
                k.stable_at = Some(Instant::now());
            }
        }
        sleep(cfg.settle).await;
    }
    Ok(())
}

/// Reads the history once the servers agree on a leader; starts over (at most 5 times) when
/// the session breaks, e.g. because a rejoined higher id takes the lead mid-read.
async fn scan_settled(
    cfg: &FailoverConfig,
    ids: &BTreeMap<NodeId, String>,
    probe_id: &str,
    client_id: &str,
) -> Result<verify::HistoryScan> {
    let mut last = anyhow!("not tried");
    for _ in 0..5 {
        let deadline = Instant::now() + cfg.rejoin_timeout;
        while cluster::agreed_leader(ids, probe_id).await.is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
        match verify::scan(&cfg.connect, &format!("{}-verify", cfg.run_id), client_id).await {
            Ok(scan) => return Ok(scan),
            Err(e) => last = e,
        }
        sleep(Duration::from_millis(200)).await;
    }
    Err(last.context("reading the history failed 5 times"))
}

fn note(kills: &mut [Kill], text: String) {
    if let Some(k) = kills.last_mut() {
        k.note = Some(text);
    }
}

/// Waits until a fresh `client_ping` to `addr` says it is the serving leader `leader`.
async fn confirm_leader(addr: &str, leader: NodeId, probe_id: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(info) = session::ping(addr, probe_id, Duration::from_millis(500)).await
            && info.is_leader
            && info.leader_id == Some(leader)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{addr} did not confirm it leads as server {leader} within {limit:?}");
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every server names the same leader and the sender acks on a session with it.
async fn wait_agreement(
    ids: &BTreeMap<NodeId, String>,
    probe_id: &str,
    view: &mut watch::Receiver<SenderView>,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(l) = cluster::agreed_leader(ids, probe_id).await {
            let v = view.borrow().clone();
            if v.leader_id == Some(l) && v.leader_confirmed && v.session_acks >= 10 {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("the servers did not agree on a leader the sender uses within {limit:?}");
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// For each kill, the first ack received after it on a session opened after it.
pub fn first_acks_after<'a>(
    kills: &[Instant],
    acks: &'a [AckRecord],
) -> Vec<Option<&'a AckRecord>> {
    kills
        .iter()
        .map(|&k| acks.iter().find(|a| a.at > k && a.session_started > k))
        .collect()
}

/// The longest gap between consecutive acks with the later one in `(from, to)`, and no
/// kill in between (the caller passes the interval up to the next kill).
pub fn longest_gap(acks: &[AckRecord], from: Instant, to: Option<Instant>) -> Option<Duration> {
    acks.windows(2)
        .filter(|w| w[1].at > from && to.is_none_or(|t| w[1].at < t) && w[0].at >= from)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .max()
}

/// Acks (in arrival order) whose sequence number is not above the one before.
pub fn seq_regressions(acks: &[AckRecord]) -> u64 {
    acks.windows(2).filter(|w| w[1].seq <= w[0].seq).count() as u64
}

/// The longest gap between consecutive acks that has no kill inside it.
pub fn longest_gap_outside(kills: &[Instant], acks: &[AckRecord]) -> Option<Duration> {
    acks.windows(2)
        .filter(|w| !kills.iter().any(|&k| k >= w[0].at && k < w[1].at))
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .max()
}

impl Report for FailoverReport {
    fn table(&self) -> String {
        let f = &self.failover;
        let mut t = Table::new(&format!(
            "failover: {} of {} leader kill(s), one message every {} ms awaiting its ack, {}-byte messages",
            self.kills_done, self.kills_requested, self.interval_ms, self.size
        ));
        t.row(
            "kill -> next ack (ms)",
            if f.count == 0 {
                "-".to_string()
            } else {
                format!(
                    "min {:.1}  median {:.1}  p99 {:.1}  max {:.1}  (n={})",
                    f.min_ms, f.median_ms, f.p99_ms, f.max_ms, f.count
                )
            },
        );
        for k in &self.kills {
            let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
            t.row(
                &format!("  kill {}", k.n),
                format!(
                    "server {} (pid {}){}: failover {} ms -> leader {}; rejoin {} ms, caught up {} ms{}, stable {} ms, stall after restart {} ms{}",
                    k.killed_id,
                    k.pid,
                    k.presync_wait_ms.map(|w| format!(" after {w:.1} ms waiting for followers to sync")).unwrap_or_default(),
                    opt(k.failover_ms),
                    k.new_leader.map_or("?".into(), |l| l.to_string()),
                    opt(k.rejoin_ms),
                    opt(k.caught_up_ms),
                    k.caught_up_entries.map(|e| format!(" ({} entries)", report::count(e))).unwrap_or_default(),
                    opt(k.stable_ms),
                    opt(k.stall_after_restart_ms),
                    k.note.as_deref().map(|n| format!("; {n}")).unwrap_or_default()
                ),
            );
        }
        t.row(
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
        .row("duplicate acks", self.duplicate_acks)
        .row("ack seq regressions", self.ack_seq_regressions)
        .row("broadcast gaps", self.broadcast_gaps)
        .row(
            "max ack gap w/o kill (ms)",
            self.max_ack_gap_outside_kills_ms
                .map_or("-".into(), |g| format!("{g:.1}")),
        );
        match &self.verification {
            Some(v) => {
                t.row(
                    "history check",
                    format!(
                        "{}: {} acked, {} found once, {} missing, {} duplicated, {} out of order, {} seq mismatch; history {} entries, {} gaps; {} stored unacked",
                        if v.ok { "OK" } else { "FAILED" },
                        v.acked,
                        v.found_once,
                        v.missing,
                        v.duplicated,
                        v.out_of_order,
                        v.seq_mismatch,
                        v.history_entries,
                        v.history_gaps,
                        v.stored_unacked
                    ),
                );
                for e in &v.examples {
                    t.row("  problem", e);
                }
            }
            None => {
                t.row("history check", "not run");
            }
        }
        t.latency_header()
            .latency("commit (send->ack)", &self.commit_latency);
        for f in &self.fatal {
            t.row("FATAL", f);
        }
        t.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(base: Instant, at_ms: u64, session_ms: u64, counter: u64) -> AckRecord {
        AckRecord {
            counter,
            seq: counter,
            at: base + Duration::from_millis(at_ms),
            session_started: base + Duration::from_millis(session_ms),
            leader: Some(if session_ms > 0 { 2 } else { 3 }),
        }
    }

    #[test]
    fn failover_ends_at_the_first_ack_on_a_new_session() {
        let b = Instant::now();
        let acks = vec![
            ack(b, 10, 0, 1),
            ack(b, 12, 0, 2),
            ack(b, 101, 0, 3), // was in flight from the dead leader: not a recovery
            ack(b, 450, 400, 4),
            ack(b, 452, 400, 5),
        ];
        let kill = b + Duration::from_millis(100);
        let firsts = first_acks_after(&[kill], &acks);
        let first = firsts[0].expect("an ack after the kill");
        assert_eq!(first.counter, 4);
        assert_eq!(first.leader, Some(2));
        assert_eq!(first.at - kill, Duration::from_millis(350));
        // A kill with no later ack has no failover time.
        assert!(first_acks_after(&[b + Duration::from_millis(500)], &acks)[0].is_none());
    }

    #[test]
    fn gaps_across_kills_are_left_out() {
        let b = Instant::now();
        let acks = vec![
            ack(b, 10, 0, 1),
            ack(b, 40, 0, 2),
            ack(b, 400, 300, 3),
            ack(b, 410, 300, 4),
        ];
        let kill = b + Duration::from_millis(50);
        assert_eq!(
            longest_gap_outside(&[kill], &acks),
            Some(Duration::from_millis(30))
        );
        assert_eq!(
            longest_gap(&acks, b + Duration::from_millis(300), None),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn falling_sequence_numbers_are_counted() {
        let b = Instant::now();
        let mut acks: Vec<AckRecord> = (1..=4).map(|n| ack(b, n, 0, n)).collect();
        assert_eq!(seq_regressions(&acks), 0);
        acks[2].seq = 1; // 1, 2, 1, 4
        assert_eq!(seq_regressions(&acks), 1);
    }
}
