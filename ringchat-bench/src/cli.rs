//! The command line: one subcommand per mode, shared connection and output options.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ringchat_proto::limits::DEFAULT_MAX_CONTENT_CHARS;

use crate::cluster;
use crate::failover::{self, FailoverConfig};
use crate::openloop::{self, Flavor, OpenLoopConfig};
use crate::report::Report;
use crate::session::{self, ConnectOptions};
use crate::sync::{self, SyncConfig};
use crate::throughput::{self, ThroughputConfig};

/// Drives a running RingChat cluster through the client protocol and reports throughput,
/// latency percentiles, fan-out and failover times.
#[derive(Debug, Parser)]
#[command(name = "ringchat-bench", version, about, rename_all = "kebab-case")]
pub struct Cli {
    /// The mode.
    #[command(subcommand)]
    pub mode: Mode,
}

/// Benchmark modes.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// N senders, each with up to W messages in flight: acked messages/s and commit latency.
    Throughput(ThroughputArgs),
    /// One sender at a fixed rate and L listeners: commit and delivery latency.
    Latency(OpenLoopArgs),
    /// One sender at a fixed rate and L listeners: deliveries/s across the listeners.
    Fanout(OpenLoopArgs),
    /// Kill the leader K times while sending: time from kill to the next acked message,
    /// and a check that no acked message was lost.
    Failover(FailoverArgs),
    /// Replace a follower by a new, empty server once the history holds M messages: time
    /// until it has caught up, entries/s, and RSS per stored message.
    Sync(SyncArgs),
    /// Wait until every server names the same leader and it serves clients; print its id.
    Leader(LeaderArgs),
}

/// Options every sending mode has.
#[derive(Debug, Args)]
pub struct Common {
    /// Client addresses of the servers (`HOST:PORT,...`, client port = ring port + 100);
    /// required unless `--redis` is given.
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Bytes of text per message (1-4096).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Reconnect and resend a message not acknowledged within this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub ack_timeout: f64,
    /// Give up finding a leader after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// `username` of the benchmark clients.
    #[arg(long, default_value = "bench")]
    pub username: String,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON object to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}

/// What `throughput`, `latency` and `fanout` drive.
#[derive(Debug, Args)]
pub struct Target {
    /// Drive this Redis server's PUBLISH/SUBSCRIBE instead of a RingChat cluster, with the
    /// same load.
    #[arg(long, value_name = "HOST:PORT")]
    pub redis: Option<String>,
}

/// The measurement window of `throughput`, `latency` and `fanout`.
#[derive(Debug, Args)]
pub struct Window {
    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Stop each sender after this many messages (the measured time then ends at the last ack).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Seconds to wait for outstanding acks and broadcasts at the end.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

/// `throughput` options.
#[derive(Debug, Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub window_opts: Window,
    /// Sending connections.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Messages in flight per sender.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
}

/// `latency` and `fanout` options.
#[derive(Debug, Args)]
pub struct OpenLoopArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub window: Window,
    /// Messages per second from the sender.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Listening clients.
    #[arg(long, default_value_t = 10)]
    pub listeners: usize,
}

/// `failover` options.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Seconds of steady sending before the first kill.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Leader kills.
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Directory of `<id>.pid` files.
    #[arg(long)]
    pub pids_dir: PathBuf,
    /// Shell command that restarts server `{id}` in the background and returns
    /// (e.g. `./start-node.sh {id}`); without it, killed servers stay down.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// Admin socket of server `{id}` (e.g. `DIR/node{id}.sock`): a restarted server then
    /// counts as back only once it holds the leader's history (read from `status`), and no
    /// leader is killed before every server holds its history.
    #[arg(long, value_name = "PATTERN")]
    pub admin_sockets: Option<String>,
    /// Milliseconds between sends (each send also awaits the previous ack).
    #[arg(long, default_value_t = 2.0)]
    pub interval_ms: f64,
    /// Seconds of steady sending after each recovery before the next kill.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds to wait for the first ack after a kill before giving up.
    #[arg(long, default_value_t = 30.0)]
    pub failover_timeout: f64,
    /// Seconds to wait for a restarted server to rejoin.
    #[arg(long, default_value_t = 30.0)]
    pub rejoin_timeout: f64,
}

/// `sync` options.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Entries the history should hold before the new server starts (only the missing
    /// ones are sent).
    #[arg(long, default_value_t = 100_000)]
    pub history: u64,
    /// Sending connections filling the history.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages in flight per filling sender.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Directory of `<id>.pid` files.
    #[arg(long)]
    pub pids_dir: PathBuf,
    /// Shell command that starts server `{id}` in the background and returns
    /// (e.g. `./start-node.sh {id}`).
    #[arg(long)]
    pub start_cmd: String,
    /// Admin socket of server `{id}` (e.g. `DIR/node{id}.sock`).
    #[arg(long, value_name = "PATTERN")]
    pub admin_sockets: String,
    /// The server to replace (default: the lowest id that does not lead).
    #[arg(long)]
    pub target: Option<u64>,
    /// Seconds to wait for each step (the ring dropping the old server, the catch-up).
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
}

/// `leader` options.
#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Client addresses of the servers.
    #[arg(long, value_delimiter = ',', required = true)]
    pub servers: Vec<String>,
    /// Seconds to wait.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{name} must be a non-negative number of seconds, not {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

impl Common {
    /// Checks the options; `redis` says whether a Redis server replaces the cluster.
    fn check(&self, redis: bool) -> Result<()> {
        if self.servers.is_empty() && !redis {
            bail!("--servers is required");
        }
        if !(1..=DEFAULT_MAX_CONTENT_CHARS).contains(&self.size) {
            bail!(
                "--size must be 1..={DEFAULT_MAX_CONTENT_CHARS} bytes, not {}",
                self.size
            );
        }
        Ok(())
    }

    fn connect(&self) -> Result<ConnectOptions> {
        let mut c = ConnectOptions::new(self.servers.clone());
        c.give_up_after = secs("connect-timeout", self.connect_timeout)?;
        Ok(c)
    }
}

/// A prefix for client ids that no earlier run used.
pub fn run_id(mode: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("bench-{mode}-{}", &u[..8])
}

impl Window {
    fn check(&self) -> Result<()> {
        if self.messages == Some(0) {
            bail!("--messages must be at least 1");
        }
        Ok(())
    }
}

fn emit<R: Report>(r: &R, common: &Common) -> Result<()> {
    let json = serde_json::to_string(r).context("encoding the report")?;
    if let Some(path) = &common.json_out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if common.json {
        println!("{json}");
    } else {
        print!("{}", r.table());
    }
    Ok(())
}

/// Runs the chosen mode; `Ok(false)` when it ran but found a failure (lost messages).
pub async fn run(cli: Cli) -> Result<bool> {
    match cli.mode {
        Mode::Throughput(a) => {
            a.common.check(a.target.redis.is_some())?;
            a.window_opts.check()?;
            if a.senders == 0 || a.window == 0 {
                bail!("--senders and --window must be at least 1");
            }
            let w = &a.window_opts;
            let cfg = ThroughputConfig {
                connect: a.common.connect()?,
                senders: a.senders,
                window: a.window,
                size: a.common.size,
                warmup: secs("warmup", w.warmup)?,
                duration: secs("duration", w.duration)?,
                max_messages: w.messages,
                drain: secs("drain", w.drain)?,
                ack_timeout: secs("ack-timeout", a.common.ack_timeout)?,
                run_id: run_id("tp"),
                username: a.common.username.clone(),
                redis: a.target.redis.clone(),
            };
            let r = throughput::run(&cfg).await;
            emit(&r, &a.common)?;
            Ok(r.fatal.is_empty())
        }
        Mode::Latency(a) => open_loop(a, Flavor::Latency).await,
        Mode::Fanout(a) => open_loop(a, Flavor::Fanout).await,
        Mode::Failover(a) => {
            a.common.check(false)?;
            if a.interval_ms <= 0.0 || !a.interval_ms.is_finite() {
                bail!("--interval-ms must be positive");
            }
            let cfg = FailoverConfig {
                connect: a.common.connect()?,
                kills: a.kills,
                pids_dir: a.pids_dir,
                restart_cmd: a.restart_cmd,
                admin_sockets: a.admin_sockets,
                interval: Duration::from_secs_f64(a.interval_ms / 1000.0),
                size: a.common.size,
                warmup: secs("warmup", a.warmup)?,
                settle: secs("settle", a.settle)?,
                failover_timeout: secs("failover-timeout", a.failover_timeout)?,
                rejoin_timeout: secs("rejoin-timeout", a.rejoin_timeout)?,
                ack_timeout: secs("ack-timeout", a.common.ack_timeout)?,
                run_id: run_id("fo"),
                username: a.common.username.clone(),
            };
            let r = failover::run(&cfg).await?;
            emit(&r, &a.common)?;
            Ok(r.passed())
        }
        Mode::Sync(a) => {
            a.common.check(false)?;
            let cfg = SyncConfig {
                connect: a.common.connect()?,
                history: a.history,
                senders: a.senders,
                window: a.window,
                size: a.common.size,
                pids_dir: a.pids_dir,
                start_cmd: a.start_cmd,
                admin_sockets: a.admin_sockets,
                target: a.target,
                ack_timeout: secs("ack-timeout", a.common.ack_timeout)?,
                timeout: secs("timeout", a.timeout)?,
                run_id: run_id("sync"),
                username: a.common.username.clone(),
            };
            let r = sync::run(&cfg).await?;
            emit(&r, &a.common)?;
            Ok(r.passed())
        }
        Mode::Leader(a) => {
            let limit = secs("timeout", a.timeout)?;
            let deadline = Instant::now() + limit;
            let ids = loop {
                match cluster::map_ids(&a.servers, "bench-leader", Duration::from_millis(500)).await
                {
                    Ok(ids) => break ids,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            loop {
                // Every server must name the same leader: a server alone in its own ring
                // would lead itself and make the figures meaningless.
                if let Some(id) = cluster::agreed_leader(&ids, "bench-leader").await
                    && let Some(addr) = ids.get(&id)
                    && session::ping(addr, "bench-leader", Duration::from_millis(500))
                        .await
                        .is_ok_and(|i| i.is_leader)
                {
                    println!("{id}");
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    bail!(
                        "the servers {} did not agree on a serving leader within {limit:?}",
                        a.servers.join(",")
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn open_loop(a: OpenLoopArgs, flavor: Flavor) -> Result<bool> {
    a.common.check(a.target.redis.is_some())?;
    a.window.check()?;
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        bail!("--rate must be positive");
    }
    let w = &a.window;
    let cfg = OpenLoopConfig {
        connect: a.common.connect()?,
        rate: a.rate,
        listeners: a.listeners,
        size: a.common.size,
        warmup: secs("warmup", w.warmup)?,
        duration: secs("duration", w.duration)?,
        max_messages: w.messages,
        drain: secs("drain", w.drain)?,
        ack_timeout: secs("ack-timeout", a.common.ack_timeout)?,
        run_id: run_id(match flavor {
            Flavor::Latency => "lat",
            Flavor::Fanout => "fan",
        }),
        username: a.common.username.clone(),
        flavor,
        redis: a.target.redis.clone(),
    };
    let r = openloop::run(&cfg).await?;
    emit(&r, &a.common)?;
    Ok(r.fatal.is_empty())
}
