//! A set of real `ringchatd` processes on 127.0.0.1, inside one network namespace, or one
//! per host of a [`Hosts`] network.
//!
//! Each node has its own ports, an admin socket and a log file (its stderr) in the
//! cluster's temporary directory. With static discovery a node is started with a `--peer`
//! for every other node the cluster knows at that moment, so a node added later joins a
//! ring that does not know it yet. Dropping the cluster kills every node; if the test is
//! failing, it first prints the tail of each node's log and keeps the directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use ringchat_proto::{ChatEntry, NodeId};
use tempfile::TempDir;

use crate::admin::{self, Status};
use crate::bins::binaries;
use crate::hosts::{Host, Hosts};
use crate::netns::NetNs;
use crate::ports::{NodePorts, node_ports, udp_port};
use crate::process;
use crate::wait::{SHORT, wait_for};

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// How the nodes find each other.
#[derive(Debug, Clone)]
enum Discovery {
    /// `--peer` lists.
    Static,
    /// UDP multicast, on each node's own address.
    Multicast {
        group: Ipv4Addr,
        port: u16,
        cluster: String,
    },
}

/// Where a node runs: its network namespace (`None`: the test's) and the address it
/// listens on, is reached at and sends multicast from.
#[derive(Debug, Clone)]
struct Placement {
    netns: Option<String>,
    address: Ipv4Addr,
}

#[derive(Debug)]
struct Node {
    ports: NodePorts,
    placement: Placement,
    /// The running process; `None` before start and after stop or kill.
    child: Option<Child>,
    /// Extra environment of the process (e.g. `RINGCHAT_CLUSTER__SECRET`).
    env: Vec<(String, String)>,
}

/// A cluster of `ringchatd` processes; see the module docs.
#[derive(Debug)]
pub struct Cluster {
    dir: TempDir,
    discovery: Discovery,
    /// Where [`Cluster::add`] puts a node (`None`: on its host of a [`Hosts`] network).
    placement: Option<Placement>,
    nodes: Mutex<BTreeMap<NodeId, Node>>,
    /// A TOML file every node is started with (`--config`), if the test wrote one.
    config: Mutex<Option<PathBuf>>,
}

impl Cluster {
    /// A static-discovery cluster of `ids` on 127.0.0.1 with fresh ports; nothing runs yet.
    pub fn new(ids: &[NodeId]) -> Cluster {
        Self::with_discovery(ids, Discovery::Static, Some(Placement::loopback(None)))
    }

    /// A multicast-discovery cluster inside `netns` (no `--peer`; a test-unique multicast
    /// port and cluster name; multicast on the namespace's loopback); nothing runs yet.
    pub fn multicast(ids: &[NodeId], netns: &NetNs) -> Cluster {
        Self::with_discovery(
            ids,
            Discovery::multicast(),
            Some(Placement::loopback(Some(netns.name().to_string()))),
        )
    }

    /// A multicast-discovery cluster with node `id` on host `Host::Node(id)` of `hosts`
    /// (its namespace and address; discovery over the bridge); nothing runs yet. Nodes can
    /// only be added to it for ids `hosts` has a namespace for.
    pub fn on_hosts(ids: &[NodeId], hosts: &Hosts) -> Cluster {
        let cluster = Self::with_discovery(&[], Discovery::multicast(), None);
        for &id in ids {
            let host = Host::Node(id);
            cluster.add_at(
                id,
                Placement {
                    netns: Some(hosts.netns(host).to_string()),
                    address: host.address(),
                },
            );
        }
        cluster
    }

    /// A static-discovery cluster with every node of `ids` started, in that order.
    pub fn start_all(ids: &[NodeId]) -> Cluster {
        let cluster = Self::new(ids);
        for &id in ids {
            cluster.start(id);
        }
        cluster
    }

    fn with_discovery(
        ids: &[NodeId],
        discovery: Discovery,
        placement: Option<Placement>,
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("ringchat-cluster-")
            .tempdir()
            .expect("temporary directory");
        let cluster = Cluster {
            dir,
            discovery,
            placement,
            nodes: Mutex::new(BTreeMap::new()),
            config: Mutex::new(None),
        };
        for &id in ids {
            cluster.add(id);
        }
        cluster
    }

    fn nodes(&self) -> MutexGuard<'_, BTreeMap<NodeId, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `toml` as the configuration file of every node started from now on (flags
    /// still override it): for limits and timeouts a test sets low.
    pub fn set_config(&self, toml: &str) {
        let path = self.dir.path().join("ringchatd.toml");
        std::fs::write(&path, toml).expect("write the configuration file");
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
    }

    /// Adds node `id` with fresh ports, not started.
    pub fn add(&self, id: NodeId) {
        let placement = self
            .placement
            .clone()
            .expect("nodes of a multi-host cluster are placed by Cluster::on_hosts");
        self.add_at(id, placement);
    }

    fn add_at(&self, id: NodeId, placement: Placement) {
        let node = Node {
            ports: node_ports(),
            placement,
            child: None,
            env: Vec::new(),
        };
        assert!(
            self.nodes().insert(id, node).is_none(),
            "node {id} exists already"
        );
    }

    /// Sets an environment variable of node `id`, from its next start on (a secret is
    /// passed this way, never on the command line).
    pub fn set_env(&self, id: NodeId, key: &str, value: &str) {
        let mut nodes = self.nodes();
        let node = nodes.get_mut(&id).expect("unknown node");
        node.env.retain(|(k, _)| k != key);
        node.env.push((key.to_string(), value.to_string()));
    }

    /// Starts node `id` (again, after a stop or kill: same ports, socket and log file).
    pub fn start(&self, id: NodeId) {
        self.start_with(id, None, &[]);
    }

    /// Starts node `id` with `--peer` for exactly `peers` (all other nodes: `None`) and
    /// `env` set: sides that know nothing of each other, or `RINGCHAT_*` settings that have
    /// no flag.
    pub fn start_with(&self, id: NodeId, peers: Option<&[NodeId]>, env: &[(&str, &str)]) {
        let mut nodes = self.nodes();
        let peers: Vec<String> = nodes
            .iter()
            .filter(|(other, _)| **other != id && peers.is_none_or(|p| p.contains(other)))
            .map(|(_, n)| format!("{}:{}", n.placement.address, n.ports.ring))
            .collect();
        let node = nodes.get_mut(&id).expect("unknown node");
        assert!(node.child.is_none(), "node {id} is running already");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("log file");
        let address = node.placement.address.to_string();
        let mut cmd = process::command(&binaries().ringchatd, node.placement.netns.as_deref());
        cmd.arg(id.to_string())
            .args(["--address", &address])
            .args(["--port", &node.ports.ring.to_string()])
            .args(["--client-port", &node.ports.client.to_string()])
            .arg("--admin-socket")
            .arg(self.socket(id))
            .args(["--log-level", "debug"])
            .envs(node.env.iter().map(|(k, v)| (k, v)));
        if let Some(config) = &*self.config.lock().unwrap_or_else(|e| e.into_inner()) {
            cmd.arg("--config").arg(config);
        }
        match &self.discovery {
            Discovery::Static => {
                cmd.args(["--discovery", "static"]);
                for p in peers {
                    cmd.args(["--peer", &p]);
                }
            }
            Discovery::Multicast {
                group,
                port,
                cluster,
            } => {
                cmd.args(["--discovery", "multicast"])
                    .args(["--multicast-group", &group.to_string()])
                    .args(["--multicast-port", &port.to_string()])
                    .args(["--multicast-interface", &address])
                    .args(["--cluster", cluster]);
            }
        }
        cmd.envs(env.iter().copied());
        let stdout: File = log.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ringchatd {id}: {e}"));
        node.child = Some(child);
    }

    /// Sends SIGTERM to node `id` and waits for it to exit; returns its exit status.
    pub fn stop(&self, id: NodeId) -> ExitStatus {
        self.stop_with(id, Signal::SIGTERM)
    }

    /// Sends `sig` to node `id` and waits for it to exit; returns its exit status.
    pub fn stop_with(&self, id: NodeId, sig: Signal) -> ExitStatus {
        let mut child = self.take_child(id);
        process::signal(&child, sig);
        match process::wait_exit(&mut child, SHORT) {
            Some(status) => status,
            None => {
                process::kill9(&mut child);
                panic!(
                    "node {id} did not exit within {SHORT:?} of {sig}; log:\n{}",
                    self.log_tail(id)
                );
            }
        }
    }

    /// Freezes node `id` (SIGSTOP): its sockets stay open but it answers nothing, as a
    /// hung or partitioned server would. [`Cluster::thaw`] lets it go on.
    pub fn freeze(&self, id: NodeId) {
        self.signal(id, Signal::SIGSTOP);
    }

    /// Lets a frozen node go on (SIGCONT).
    pub fn thaw(&self, id: NodeId) {
        self.signal(id, Signal::SIGCONT);
    }

    fn signal(&self, id: NodeId, sig: Signal) {
        let nodes = self.nodes();
        let child = nodes
            .get(&id)
            .and_then(|n| n.child.as_ref())
            .unwrap_or_else(|| panic!("node {id} is not running"));
        process::signal(child, sig);
    }

    /// Kills node `id` with SIGKILL.
    pub fn kill9(&self, id: NodeId) {
        process::kill9(&mut self.take_child(id));
    }

    fn take_child(&self, id: NodeId) -> Child {
        self.nodes()
            .get_mut(&id)
            .and_then(|n| n.child.take())
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// The ids of the nodes started and not stopped, ascending.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes()
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The process id of node `id` (for `/proc/<pid>`); panics if it is not running.
    pub fn pid(&self, id: NodeId) -> u32 {
        self.nodes()
            .get(&id)
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Sends `req` to node `id`'s admin socket and returns the answer (for fields and
    /// commands [`Status`] does not cover).
    pub fn admin(&self, id: NodeId, req: &serde_json::Value) -> Result<serde_json::Value, String> {
        self.assert_alive(id);
        admin::request(&self.socket(id), req)
    }

    /// `<address>:<client port>` of node `id`.
    pub fn client_addr(&self, id: NodeId) -> String {
        let (address, ports) = self.address_ports(id);
        format!("{address}:{}", ports.client)
    }

    /// The client addresses of every node, highest id first.
    pub fn client_addrs(&self) -> Vec<String> {
        let ids: Vec<NodeId> = self.nodes().keys().rev().copied().collect();
        ids.into_iter().map(|id| self.client_addr(id)).collect()
    }

    /// `<address>:<ring port>` of node `id`.
    pub fn ring_addr(&self, id: NodeId) -> String {
        let (address, ports) = self.address_ports(id);
        format!("{address}:{}", ports.ring)
    }

    /// The multicast `--multicast-*` and `--cluster` arguments a client needs to find this
    /// cluster (empty for static discovery).
    pub fn multicast_client_args(&self) -> Vec<String> {
        match &self.discovery {
            Discovery::Static => Vec::new(),
            Discovery::Multicast {
                group,
                port,
                cluster,
            } => [
                "--discovery",
                "multicast",
                "--multicast-group",
                &group.to_string(),
                "--multicast-port",
                &port.to_string(),
                "--multicast-interface",
                "127.0.0.1",
                "--cluster",
                cluster,
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn address_ports(&self, id: NodeId) -> (Ipv4Addr, NodePorts) {
        let nodes = self.nodes();
        let node = nodes.get(&id).expect("unknown node");
        (node.placement.address, node.ports)
    }

    /// Every node's id and admin socket path, for a thread that polls them on its own.
    pub fn admin_sockets(&self) -> Vec<(NodeId, PathBuf)> {
        let ids: Vec<NodeId> = self.nodes().keys().copied().collect();
        ids.into_iter().map(|id| (id, self.socket(id))).collect()
    }

    /// Path of node `id`'s admin socket.
    fn socket(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node{id}.sock"))
    }

    fn log_path(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// The last lines of node `id`'s log.
    fn log_tail(&self, id: NodeId) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Panics (with its log) if node `id` was started and has exited without being told to.
    fn assert_alive(&self, id: NodeId) {
        let exited = self
            .nodes()
            .get_mut(&id)
            .and_then(|n| n.child.as_mut())
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!(
                "node {id} exited unexpectedly ({status}); log:\n{}",
                self.log_tail(id)
            );
        }
    }

    /// Node `id`'s status, or why it is not available (not up yet, ...). Panics if the node
    /// died on its own.
    pub fn try_status(&self, id: NodeId) -> Result<Status, String> {
        self.assert_alive(id);
        admin::status(&self.socket(id)).map_err(|e| format!("node {id}: {e}"))
    }

    /// Node `id`'s status; panics if it does not answer.
    pub fn status(&self, id: NodeId) -> Status {
        self.try_status(id).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Node `id`'s whole history; panics if it does not answer.
    pub fn history(&self, id: NodeId) -> Vec<ChatEntry> {
        self.assert_alive(id);
        admin::history(&self.socket(id)).unwrap_or_else(|e| panic!("node {id}: {e}"))
    }

    /// Waits until node `id`'s admin socket answers.
    pub fn wait_ready(&self, id: NodeId) -> Status {
        wait_for(
            SHORT,
            &format!("node {id} to answer on its admin socket"),
            || self.try_status(id),
        )
    }

    /// Waits until every running node agrees that `leader` leads in one epoch, the leader
    /// serves clients, every node's ring is exactly the running nodes and each node's
    /// successor and predecessor are its neighbours in id order. Returns the leader's status.
    pub fn wait_converged(&self, leader: NodeId, timeout: Duration) -> Status {
        self.wait_converged_among(&self.running(), leader, timeout)
    }

    /// [`Cluster::wait_converged`] for the ring `ids` (ascending), e.g. the running nodes
    /// less a frozen one.
    pub fn wait_converged_among(
        &self,
        ids: &[NodeId],
        leader: NodeId,
        timeout: Duration,
    ) -> Status {
        wait_for(
            timeout,
            &format!("nodes {ids:?} to agree that {leader} leads"),
            || self.check_converged(ids, leader),
        )
    }

    fn check_converged(&self, running: &[NodeId], leader: NodeId) -> Result<Status, String> {
        let statuses = running
            .iter()
            .map(|&id| self.try_status(id))
            .collect::<Result<Vec<_>, _>>()?;
        let all = || {
            statuses
                .iter()
                .map(Status::summary)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let head = statuses
            .iter()
            .find(|s| s.id == leader)
            .ok_or_else(|| format!("node {leader} is not running"))?;
        for (i, s) in statuses.iter().enumerate() {
            let role = if s.id == leader { "leader" } else { "follower" };
            let n = running.len();
            let ring_ok = n == 1
                || (s.successor == Some(running[(i + 1) % n])
                    && s.predecessor == Some(running[(i + n - 1) % n]));
            let ok = s.leader_id() == Some(leader)
                && s.epoch == head.epoch
                && s.role == role
                && s.member_ids() == running
                && ring_ok;
            if !ok {
                return Err(all());
            }
        }
        if !head.serving {
            return Err(all());
        }
        Ok(head.clone())
    }

    /// Waits until the nodes `ids` hold identical histories of exactly `len` entries, and
    /// returns that history.
    pub fn wait_same_history(&self, ids: &[NodeId], len: usize) -> Vec<ChatEntry> {
        wait_for(
            SHORT,
            &format!("nodes {ids:?} to hold the same {len} entries"),
            || {
                let histories: Vec<Vec<ChatEntry>> =
                    ids.iter().map(|&id| self.history(id)).collect();
                let lens: Vec<usize> = histories.iter().map(Vec::len).collect();
                if lens.iter().all(|&l| l == len) && histories.windows(2).all(|w| w[0] == w[1]) {
                    Ok(histories.into_iter().next().unwrap_or_default())
                } else {
                    Err(format!("history lengths {lens:?} (or contents differ)"))
                }
            },
        )
    }
}

impl Discovery {
    /// Multicast on the default group with a test-unique port and cluster name.
    fn multicast() -> Discovery {
        let port = udp_port();
        Discovery::Multicast {
            group: Ipv4Addr::new(239, 255, 255, 250),
            port,
            cluster: format!("test-{}-{port}", std::process::id()),
        }
    }
}

impl Placement {
    /// 127.0.0.1, in `netns` or the test's namespace.
    fn loopback(netns: Option<String>) -> Placement {
        Placement {
            netns,
            address: Ipv4Addr::LOCALHOST,
        }
    }
}

impl Drop for Cluster {
    /// Kills every node. A node that had died on its own fails the test here (the daemon
    /// must survive everything a test does to it), and on failure the log tails are printed
    /// and the directory is kept.
    fn drop(&mut self) {
        let mut crashed = Vec::new();
        for (id, node) in self.nodes().iter_mut() {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    crashed.push(format!("node {id} exited on its own ({status})"));
                }
                process::kill9(child);
            }
        }
        let panicking = std::thread::panicking();
        if panicking || !crashed.is_empty() {
            let ids: Vec<NodeId> = self.nodes().keys().copied().collect();
            for id in ids {
                eprintln!(
                    "----- node {id}: last {LOG_TAIL_LINES} log lines -----\n{}",
                    self.log_tail(id)
                );
            }
            self.dir.disable_cleanup(true);
            eprintln!("----- logs kept in {} -----", self.dir.path().display());
        }
        if !panicking && !crashed.is_empty() {
            panic!("{}", crashed.join("; "));
        }
    }
}
