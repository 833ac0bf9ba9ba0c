//! `sync`: how long a new, empty server takes to catch up on a history of M messages, and
//! what that history costs in RAM.
//!
//! 1. Find the leader all servers agree on. The target is `--target`, or else the lowest id
//!    that does not lead (the highest id leads once caught up, so restarting the leader
//!    would measure a failover and a hand-back, not a catch-up).
//! 2. Kill the target (SIGKILL, pid from `DIR/<id>.pid`) and wait until the leader's admin
//!    status no longer lists it among the members. Servers keep their history in RAM only,
//!    so the target comes back as a new, empty server the ring does not know.
//! 3. Fill the history up to M entries with the `throughput` senders (closed loop), only
//!    what the leader lacks, so a second run reuses the first one's history.
//! 4. Read the leader's `last_seq` (T), run the start command, and poll the target's admin
//!    socket every [`POLL`]: when it first answers (and what it holds then), when it first
//!    names a leader (it joined the ring), and when its `last_seq` reaches T (caught up).
//!
//! Times run from the start command, so process start and the join are included, as an
//! operator would see them. With the servers' pid files on this machine, the report also
//! gives the RSS (`/proc/<pid>/status` `VmRSS`) of the target when it first answers (an
//! idle daemon) and once caught up, and of the leader before and after the fill.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ringchat_proto::NodeId;
use serde::Serialize;
use serde_json::Value;
use tokio::time::sleep;

use crate::cluster;
use crate::report::{self, Report, Table};
use crate::session::ConnectOptions;
use crate::throughput::{self, ThroughputConfig, ThroughputReport};

/// How often the target's admin socket is asked for its status during the catch-up.
pub const POLL: Duration = Duration::from_millis(5);

/// A sync run.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Servers and connect timing.
    pub connect: ConnectOptions,
    /// Entries the leader's history should hold before the target starts (M).
    pub history: u64,
    /// Fill senders.
    pub senders: usize,
    /// Messages in flight per fill sender.
    pub window: usize,
    /// Bytes of text per message.
    pub size: usize,
    /// Where `<id>.pid` files are.
    pub pids_dir: PathBuf,
    /// `sh -c` command that starts server `{id}` in the background and returns.
    pub start_cmd: String,
    /// Admin socket paths with `{id}`.
    pub admin_sockets: String,
    /// The server to replace; default the lowest id that does not lead.
    pub target: Option<NodeId>,
    /// Reconnect and resend a fill message unacknowledged this long.
    pub ack_timeout: Duration,
    /// Longest wait for each step (the ring dropping the target, the catch-up).
    pub timeout: Duration,
    /// Prefix of the client ids.
    pub run_id: String,
    /// `username` of the fill senders.
    pub username: String,
}

/// Resident set sizes, in KiB, where the pid files allowed reading them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// The target when its admin socket first answered (a daemon that holds nothing yet).
    pub target_start_kib: Option<u64>,
    /// The target once caught up.
    pub target_caught_up_kib: Option<u64>,
    /// The leader before the fill.
    pub leader_before_fill_kib: Option<u64>,
    /// The leader after the fill.
    pub leader_after_fill_kib: Option<u64>,
    /// `(target_caught_up - target_start) / entries`, in bytes.
    pub bytes_per_entry: Option<f64>,
}

/// The result of a sync run.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Always `"sync"`.
    pub mode: &'static str,
    /// Entries asked for (M).
    pub history: u64,
    /// Bytes of text per message.
    pub size: usize,
    /// The leader.
    pub leader: NodeId,
    /// The server that was replaced by a new one.
    pub target: NodeId,
    /// The fill run; `None` when the leader already held M entries.
    pub fill: Option<ThroughputReport>,
    /// Entries the new server had to catch up on (the leader's `last_seq`, T).
    pub entries: u64,
    /// Start command to the first admin answer.
    pub up_ms: Option<f64>,
    /// Entries the new server held at its first admin answer.
    pub held_at_start: Option<u64>,
    /// Start command to the new server naming a leader.
    pub joined_ms: Option<f64>,
    /// Start command to the new server holding T entries.
    pub caught_up_ms: Option<f64>,
    /// T divided by the catch-up time.
    pub entries_per_sec: f64,
    /// `(ms since the start command, last_seq)`, about every 100 ms.
    pub progress: Vec<(f64, u64)>,
    /// Resident set sizes.
    pub memory: Memory,
    /// Why the run stopped early.
    pub fatal: Vec<String>,
}

impl SyncReport {
    /// True when the fill lost nothing and the new server caught up.
    pub fn passed(&self) -> bool {
        self.fatal.is_empty()
            && self.caught_up_ms.is_some()
            && self
                .fill
                .as_ref()
                .is_none_or(|f| f.fatal.is_empty() && f.unacked == 0 && f.failed == 0)
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `VmRSS` of `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

fn server_rss(cfg: &SyncConfig, id: NodeId) -> Option<u64> {
    rss_kib(cluster::read_pid(&cfg.pids_dir, id).ok()?)
}

/// Whether an admin `status` lists server `id` among the ring's members.
fn lists_member(status: &Value, id: NodeId) -> bool {
    status["members"].as_array().is_some_and(|members| {
        members.iter().any(|m| match &m["id"] {
            Value::String(s) => s.parse() == Ok(id),
            v => v.as_u64() == Some(id),
        })
    })
}

/// Runs the whole measurement.
pub async fn run(cfg: &SyncConfig) -> Result<SyncReport> {
    let probe = format!("{}-probe", cfg.run_id);
    let ids = cluster::map_ids(&cfg.connect.servers, &probe, cfg.connect.attempt_timeout).await?;
    let deadline = Instant::now() + cfg.timeout;
    let leader = loop {
        if let Some(l) = cluster::agreed_leader(&ids, &probe).await {
            break l;
        }
        if Instant::now() >= deadline {
            bail!(
                "the servers did not agree on a leader within {:?}",
                cfg.timeout
            );
        }
        sleep(Duration::from_millis(50)).await;
    };
    let target = match cfg.target {
        Some(t) if t == leader => {
            bail!("server {t} leads: replacing it measures a failover, not a catch-up")
        }
        Some(t) if !ids.contains_key(&t) => bail!("server {t} is not among --servers"),
        Some(t) => t,
        None => *ids
            .keys()
            .find(|&&id| id != leader)
            .ok_or_else(|| anyhow!("no server besides the leader {leader}"))?,
    };
    let leader_admin = cluster::admin_path(&cfg.admin_sockets, leader);
    let target_admin = cluster::admin_path(&cfg.admin_sockets, target);

    let pid = cluster::read_pid(&cfg.pids_dir, target)?;
    cluster::kill9(pid).with_context(|| format!("killing server {target}"))?;
    let deadline = Instant::now() + cfg.timeout;
    loop {
        match cluster::admin_status(&leader_admin, Duration::from_secs(2)).await {
            Ok(s) if !lists_member(&s, target) => break,
            Ok(_) | Err(_) if Instant::now() >= deadline => {
                bail!(
                    "leader {leader} still lists server {target} as a member {:?} after killing it",
                    cfg.timeout
                )
            }
            _ => sleep(Duration::from_millis(20)).await,
        }
    }

    let mut memory = Memory {
        leader_before_fill_kib: server_rss(cfg, leader),
        ..Memory::default()
    };
    let held = cluster::admin_last_seq(&leader_admin).await?;
    let need = cfg.history.saturating_sub(held);
    let fill = if need == 0 {
        None
    } else {
        let senders = cfg.senders.max(1);
        let fc = ThroughputConfig {
            connect: cfg.connect.clone(),
            senders,
            window: cfg.window.max(1),
            size: cfg.size,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(24 * 3600),
            max_messages: Some(need.div_ceil(senders as u64)),
            drain: Duration::from_secs(30),
            ack_timeout: cfg.ack_timeout,
            run_id: format!("{}-fill", cfg.run_id),
            username: cfg.username.clone(),
            redis: None,
        };
        Some(throughput::run(&fc).await)
    };
    memory.leader_after_fill_kib = server_rss(cfg, leader);
    let mut r = SyncReport {
        mode: "sync",
        history: cfg.history,
        size: cfg.size,
        leader,
        target,
        fill,
        entries: 0,
        up_ms: None,
        held_at_start: None,
        joined_ms: None,
        caught_up_ms: None,
        entries_per_sec: 0.0,
        progress: Vec::new(),
        memory,
        fatal: Vec::new(),
    };
    if let Some(f) = &r.fill
        && !f.fatal.is_empty()
    {
        r.fatal
            .push(format!("the fill failed: {}", f.fatal.join("; ")));
        return Ok(r);
    }
    r.entries = cluster::admin_last_seq(&leader_admin)
        .await
        .context("reading the leader's last sequence number after the fill")?;

    let started = Instant::now();
    cluster::restart(&cfg.start_cmd, target, Duration::from_secs(30)).await?;
    let deadline = started + cfg.timeout;
    let mut last_sample: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if let Ok(s) = cluster::admin_status(&target_admin, Duration::from_secs(2)).await {
            let at = Instant::now();
            let seq = s["last_seq"].as_u64().unwrap_or(0);
            if r.up_ms.is_none() {
                r.up_ms = Some(ms(at - started));
                r.held_at_start = Some(seq);
                r.memory.target_start_kib = server_rss(cfg, target);
            }
            if r.joined_ms.is_none() && !s["leader"].is_null() {
                r.joined_ms = Some(ms(at - started));
            }
            if last_sample.is_none_or(|t| at - t >= Duration::from_millis(100)) {
                r.progress.push((ms(at - started), seq));
                last_sample = Some(at);
            }
            if seq >= r.entries {
                let took = at - started;
                r.caught_up_ms = Some(ms(took));
                r.entries_per_sec = r.entries as f64 / took.as_secs_f64().max(1e-9);
                r.progress.push((ms(took), seq));
                break;
            }
        }
        if now >= deadline {
            let held = r.progress.last().map_or(0, |p| p.1);
            r.fatal.push(format!(
                "server {target} held {held} of {} entries after {:?}",
                r.entries, cfg.timeout
            ));
            break;
        }
        sleep(POLL).await;
    }
    r.memory.target_caught_up_kib = server_rss(cfg, target);
    if let (Some(a), Some(b)) = (r.memory.target_start_kib, r.memory.target_caught_up_kib)
        && r.caught_up_ms.is_some()
        && r.entries > 0
    {
        r.memory.bytes_per_entry = Some(b.saturating_sub(a) as f64 * 1024.0 / r.entries as f64);
    }
    Ok(r)
}

fn kib(v: Option<u64>) -> String {
    v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

impl Report for SyncReport {
    fn table(&self) -> String {
        let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut t = Table::new(&format!(
            "sync: new server {} catches up on {} entries ({}-byte messages) from leader {}",
            self.target,
            report::count(self.entries),
            self.size,
            self.leader
        ));
        t.row(
            "caught up (ms)",
            format!(
                "{} ({} entries/s)",
                opt(self.caught_up_ms),
                report::rate(self.entries_per_sec)
            ),
        )
        .row(
            "up / joined (ms)",
            format!(
                "{} (holding {}) / {}",
                opt(self.up_ms),
                self.held_at_start.map_or("-".into(), report::count),
                opt(self.joined_ms)
            ),
        );
        match &self.fill {
            Some(f) => t.row(
                "fill",
                format!(
                    "{} messages acked at {}/s, {} unacked, errors {}",
                    report::count(f.acked),
                    report::rate(f.acked_per_sec),
                    f.unacked,
                    report::errors(&f.errors)
                ),
            ),
            None => t.row("fill", "none (the leader held enough)"),
        };
        let m = &self.memory;
        t.row(
            "RSS new server",
            format!(
                "{} when up, {} caught up{}",
                kib(m.target_start_kib),
                kib(m.target_caught_up_kib),
                m.bytes_per_entry
                    .map(|b| format!(" ({b:.0} bytes/entry)"))
                    .unwrap_or_default()
            ),
        )
        .row(
            "RSS leader",
            format!(
                "{} before fill, {} after",
                kib(m.leader_before_fill_kib),
                kib(m.leader_after_fill_kib)
            ),
        );
        for f in &self.fatal {
            t.row("FATAL", f);
        }
        t.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_found_by_string_or_number_id() {
        let s = json!({"members": [{"id": "1"}, {"id": 3}]});
        assert!(lists_member(&s, 1) && lists_member(&s, 3));
        assert!(!lists_member(&s, 2));
        assert!(!lists_member(&json!({}), 1));
    }

    #[test]
    fn own_rss_is_read() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(rss_kib(i32::MAX).is_none());
    }
}
