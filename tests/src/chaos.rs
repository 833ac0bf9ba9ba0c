//! One chaos scenario's run: a [`Hosts`] network, a multicast cluster on it, load clients
//! on the client hosts and an [`Observer`], plus the fault steps the scenarios share and
//! the final settle-and-check that produces one row of the summary table.
//!
//! The size comes from `RC_CHAOS`: unset or `short` runs the short versions (normal
//! `cargo test`), `long` the full counts (`scripts/chaos.sh`). With
//! `RC_CHAOS_SUMMARY=<file>` every scenario appends its row to that file
//! (tab-separated), which `scripts/chaos.sh` prints as a table.
//! (Not `RINGCHAT_*`: the daemons inherit the environment, and those configure `ringchatd`.)

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringchat_proto::NodeId;

use crate::cluster::Cluster;
use crate::hosts::{Host, Hosts, hosts_or_skip};
use crate::invariants::{MergeWindow, Observer, Verdict, check};
use crate::load::{Endpoint, Load, LoadLog, LoadSpec};
use crate::report;
use crate::wait::{LONG, wait_for};

/// How long the healed cluster may take to agree on one leader and one history.
pub const SETTLE: Duration = Duration::from_secs(60);

/// How long the clients get after the load stops to have their last messages acked.
const DRAIN: Duration = Duration::from_secs(30);

/// Which version of the scenarios runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A few minutes in all, for CI.
    Short,
    /// The full counts.
    Long,
}

impl Size {
    /// From `RC_CHAOS` (`long`, else short).
    pub fn from_env() -> Size {
        match std::env::var("RC_CHAOS").as_deref() {
            Ok("long") => Size::Long,
            _ => Size::Short,
        }
    }

    /// `short` or `long` when the size is `Short` or `Long`.
    pub fn pick<T>(self, short: T, long: T) -> T {
        match self {
            Size::Short => short,
            Size::Long => long,
        }
    }
}

/// Chaos scenarios share the machine's two cores badly: run one at a time per process.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running scenario. Fields drop in order: the load and the observer stop before the
/// servers die, and the servers before the network goes.
#[derive(Debug)]
pub struct Chaos {
    load: Option<Load>,
    observer: Option<Observer>,
    /// The servers.
    pub cluster: Cluster,
    /// The network.
    pub hosts: Hosts,
    name: String,
    ids: Vec<NodeId>,
    faults: usize,
    failovers: Vec<Duration>,
    merges: Vec<MergeWindow>,
    /// What earlier load phases (a preload) saw.
    earlier: LoadLog,
    /// Set by [`Chaos::tolerate_unplanned_splits`].
    unplanned_splits: Option<&'static str>,
}

impl Chaos {
    /// Builds the network (servers `ids`, two client hosts), starts every server, waits
    /// until the highest id leads all of them, and starts the observer; `None` after a
    /// `SKIP` line if namespaces are unavailable.
    pub fn start(name: &str, ids: &[NodeId]) -> Option<Chaos> {
        let hosts = hosts_or_skip(&format!("chaos {name}"), ids, 2)?;
        let cluster = Cluster::on_hosts(ids, &hosts);
        for &id in ids {
            cluster.start(id);
        }
        let top = *ids.iter().max().expect("at least one server");
        cluster.wait_converged(top, LONG);
        let observer = Observer::start(cluster.admin_sockets());
        Some(Chaos {
            load: None,
            observer: Some(observer),
            cluster,
            hosts,
            name: name.to_string(),
            ids: ids.to_vec(),
            faults: 0,
            failovers: Vec::new(),
            merges: Vec::new(),
            earlier: LoadLog::default(),
            unplanned_splits: None,
        })
    }

    /// The same run under another name (for the summary row).
    pub fn renamed(mut self, name: &str) -> Chaos {
        self.name = name.to_string();
        self
    }

    /// Starts `clients` load clients (window 4, a message every 20 ms each), spread over
    /// the client hosts, knowing every server.
    pub fn start_load(&mut self, clients: usize) {
        self.start_load_with(LoadSpec {
            clients,
            window: 4,
            pace: Duration::from_millis(20),
            limit: None,
            prefix: format!("{}-{}", self.name, std::process::id()),
        });
    }

    /// Fills the history fast: `total` messages from 4 clients with 32 in flight each,
    /// waiting until all are acked (their acks are checked at the end, too).
    pub fn preload(&mut self, total: usize) {
        let clients = 4;
        self.start_load_with(LoadSpec {
            clients,
            window: 32,
            pace: Duration::ZERO,
            limit: Some(total.div_ceil(clients)),
            prefix: format!("{}-{}-pre", self.name, std::process::id()),
        });
        let target = total.div_ceil(clients) * clients;
        wait_for(
            SETTLE,
            &format!("{target} preloaded messages acked"),
            || {
                let n = self.load().acked();
                if n >= target {
                    Ok(())
                } else {
                    Err(format!("{n} acked"))
                }
            },
        );
        let log = self.load.take().expect("preload").finish(DRAIN);
        self.earlier.absorb(log);
    }

    /// Starts load clients shaped by `spec`.
    pub fn start_load_with(&mut self, spec: LoadSpec) {
        assert!(self.load.is_none(), "load runs already");
        let netns: Vec<String> = self
            .hosts
            .clients()
            .into_iter()
            .map(|h| self.hosts.netns(h).to_string())
            .collect();
        self.load = Some(Load::start(&spec, &netns, &self.endpoints()));
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.ids
            .iter()
            .map(|&node| {
                let addr: SocketAddr = self
                    .cluster
                    .client_addr(node)
                    .parse()
                    .expect("client address");
                Endpoint { node, addr }
            })
            .collect()
    }

    fn load(&self) -> &Load {
        self.load.as_ref().expect("start_load first")
    }

    /// Waits until the clients got `n` more acks than now (the cluster makes progress).
    pub fn wait_acks(&self, n: usize) {
        let target = self.load().acked() + n;
        wait_for(LONG, &format!("{n} more acks"), || {
            let now = self.load().acked();
            if now >= target {
                Ok(())
            } else {
                Err(format!("{now} of {target} acks"))
            }
        });
    }

    /// The highest running id.
    pub fn top(&self) -> NodeId {
        *self
            .cluster
            .running()
            .iter()
            .max()
            .expect("a running server")
    }

    /// Marks acks renumbered around a split the test did not make (two servers seen leading
    /// at once, within [`SPLIT_MARGIN`]) as the known bug `cause`, not as violations: for a
    /// scenario whose fault is known to split the ring by false failure detection.
    pub fn tolerate_unplanned_splits(&mut self, cause: &'static str) {
        self.unplanned_splits = Some(cause);
    }

    /// Counts one injected fault.
    pub fn fault(&mut self) {
        self.faults += 1;
    }

    /// Kills the leader (the highest running id) with SIGKILL, waits for the clients'
    /// next ack and records the time to it as a failover, then waits until the next id
    /// leads the rest.
    pub fn kill_leader(&mut self) -> NodeId {
        let leader = self.top();
        self.cluster.kill9(leader);
        let killed = Instant::now();
        self.fault();
        let next = wait_for(LONG, "an ack after the leader was killed", || {
            self.load()
                .first_ack_after(killed)
                .ok_or_else(|| "none yet".to_string())
        });
        self.failovers.push(next.duration_since(killed));
        self.cluster.wait_converged(self.top(), LONG);
        leader
    }

    /// Restarts `id` (same id, ports and address; empty state) and waits until the highest
    /// id leads every running server.
    pub fn restart(&self, id: NodeId) {
        self.cluster.start(id);
        self.cluster.wait_converged(self.top(), LONG);
    }

    /// Splits the network into `groups` (servers and client hosts), waits until each side
    /// has its own leader serving and every side's clients got acks, and returns a merge
    /// window to close with [`Chaos::heal`].
    pub fn partition(&mut self, groups: &[Vec<Host>], acks_per_side: usize) -> MergeWindow {
        let from = Instant::now();
        self.hosts
            .partition(groups)
            .unwrap_or_else(|e| panic!("partition: {e}"));
        self.fault();
        let sides: Vec<Vec<NodeId>> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .filter_map(|h| match h {
                        Host::Node(id) => Some(*id),
                        Host::Client(_) => None,
                    })
                    .collect()
            })
            .collect();
        for side in &sides {
            let top = *side.iter().max().expect("a server on each side");
            self.cluster.wait_converged_among(side, top, LONG);
        }
        for side in &sides {
            let target = acks_per_side;
            wait_for(LONG, &format!("{target} acks from side {side:?}"), || {
                let n = self.load().acks_from(side, from);
                if n >= target {
                    Ok(())
                } else {
                    Err(format!("{n} acks"))
                }
            });
        }
        // The side of the highest id wins the merge (docs/ARCHITECTURE.md section 9): only
        // the other side's acks may be renumbered.
        let top = sides.iter().flatten().max().copied();
        MergeWindow {
            cause: "a 2/3 partition",
            from,
            until: from,
            may_renumber: sides
                .into_iter()
                .filter(|side| top.is_none_or(|t| !side.contains(&t)))
                .flatten()
                .collect(),
            known_bug: false,
        }
    }

    /// Heals the partition of `window` and waits until the highest id leads every server.
    pub fn heal(&mut self, window: MergeWindow) {
        self.hosts.heal().unwrap_or_else(|e| panic!("heal: {e}"));
        self.healed(window);
    }

    /// Waits until the highest id leads every server, and closes `window` then.
    pub fn healed(&mut self, mut window: MergeWindow) {
        self.cluster.wait_converged(self.top(), LONG);
        window.until = Instant::now();
        self.merges.push(window);
    }

    /// Stops the load, removes any partition rules (cuts and lossy links the scenario
    /// heals itself), waits until every running server agrees on the leader and the last
    /// sequence number, reads the histories and checks the invariants; reports the summary
    /// row and fails the test if an invariant broke.
    pub fn finish(mut self) -> Verdict {
        let mut log = std::mem::take(&mut self.earlier);
        log.absorb(self.load.take().expect("start_load first").finish(DRAIN));
        let observed = self
            .observer
            .take()
            .map(Observer::finish)
            .unwrap_or_default();
        let split_windows = split_windows(&observed.splits);
        let planned = self.merges.len();
        if let Some(cause) = self.unplanned_splits {
            self.merges
                .extend(split_windows.iter().map(|&(from, until)| MergeWindow {
                    cause,
                    from,
                    until,
                    may_renumber: BTreeSet::new(),
                    known_bug: true,
                }));
        }
        self.hosts.heal().unwrap_or_else(|e| panic!("heal: {e}"));
        let running = self.cluster.running();
        let top = self.top();
        self.cluster.wait_converged(top, SETTLE);
        wait_for(
            SETTLE,
            "every server to hold the same last seq, committed on the leader",
            || {
                let statuses = running
                    .iter()
                    .map(|&id| self.cluster.try_status(id))
                    .collect::<Result<Vec<_>, _>>()?;
                let last: BTreeSet<u64> = statuses.iter().map(|s| s.last_seq).collect();
                // Followers learn the commit point with later traffic; the leader's counts.
                let committed = statuses
                    .iter()
                    .filter(|s| s.id == top)
                    .all(|s| s.commit_seq == s.last_seq);
                if last.len() == 1 && committed {
                    Ok(())
                } else {
                    let all: Vec<String> = statuses
                        .iter()
                        .map(|s| format!("{} commit_seq={}", s.summary(), s.commit_seq))
                        .collect();
                    Err(all.join(" "))
                }
            },
        );
        let histories: BTreeMap<NodeId, _> = running
            .iter()
            .map(|&id| (id, self.cluster.history(id)))
            .collect();
        let verdict = check(&histories, &log, &observed.leaders, &self.merges);
        let max_failover = self.failovers.iter().max().copied();
        report(&format!(
            "chaos {}: two servers seen leading at once in {} window(s); {} planned merge(s)",
            self.name,
            split_windows.len(),
            planned
        ));
        let row = Row {
            scenario: self.name.clone(),
            faults: self.faults,
            sent: log.sent,
            verdict: &verdict,
            max_failover,
        };
        row.report();
        let strict = std::env::var_os("RC_CHAOS_STRICT").is_some_and(|v| v == "1");
        assert!(
            verdict.ok(strict),
            "chaos {}: invariants broken:\n{}",
            self.name,
            verdict.findings.join("\n")
        );
        verdict
    }
}

/// Margin around the polls that saw two leaders at once, for [`split_windows`]: the split
/// began before the observer saw it, and the merge ends after.
pub const SPLIT_MARGIN: Duration = Duration::from_secs(2);

/// The polls that saw two leaders at once, grouped into windows (polls closer than twice
/// [`SPLIT_MARGIN`] share one), each widened by the margin.
fn split_windows(splits: &[Instant]) -> Vec<(Instant, Instant)> {
    let mut windows: Vec<(Instant, Instant)> = Vec::new();
    for &t in splits {
        match windows.last_mut() {
            Some((_, until)) if t <= *until + SPLIT_MARGIN => *until = t + SPLIT_MARGIN,
            _ => windows.push((t - SPLIT_MARGIN, t + SPLIT_MARGIN)),
        }
    }
    windows
}

/// One row of the summary table.
struct Row<'a> {
    scenario: String,
    faults: usize,
    sent: usize,
    verdict: &'a Verdict,
    max_failover: Option<Duration>,
}

impl Row<'_> {
    /// Prints the row to stderr and appends it to `$RC_CHAOS_SUMMARY` if set.
    fn report(&self) {
        let v = self.verdict;
        let failover = self
            .max_failover
            .map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        let cells = [
            self.scenario.clone(),
            self.faults.to_string(),
            self.sent.to_string(),
            v.acked.to_string(),
            v.lost.to_string(),
            v.duplicated.to_string(),
            v.order_violations.to_string(),
            v.split_epochs.to_string(),
            (v.epoch_reuse + v.renumbered_known_bug).to_string(),
            v.renumbered.to_string(),
            failover,
        ];
        report(&format!(
            "chaos {}: faults={} sent={} acked={} lost={} duplicated={} order_violations={} \
             two_leaders_epochs={} known_bugs={} renumbered_by_merge={} \
             max_failover={}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8],
            cells[9],
            cells[10]
        ));
        for f in &v.findings {
            report(&format!("chaos {}:   {f}", self.scenario));
        }
        if let Some(path) = std::env::var_os("RC_CHAOS_SUMMARY") {
            let line = cells.join("\t");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                report(&format!("cannot append to {path:?}: {e}"));
            }
        }
    }
}
