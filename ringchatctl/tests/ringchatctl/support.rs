//! Helpers for the ringchatctl tests: run the CLI and read its output, find a node's admin
//! socket and process, wait for that process to exit on its own.
//!
//! The nodes are started with the cluster tests' harness (`ringchat_cluster_tests::cluster`),
//! which does not expose a node's admin socket path or pid; [`node_process`] reads both
//! from the command line of the test's own `ringchatd` child that serves the node's ring
//! port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringchat_cluster_tests::NodeId;
use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::{SHORT, wait_until};
use serde_json::Value;

/// What `ringchatctl` printed and how it exited.
#[derive(Debug)]
pub struct Ctl {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Ctl {
    /// Panics unless the command exited 0; returns it for chaining.
    pub fn success(self) -> Ctl {
        assert_eq!(self.code, 0, "ringchatctl failed: {self:?}");
        self
    }

    /// Standard output as the one JSON object `--json` promises.
    pub fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "expected one JSON line: {self:?}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs `ringchatctl --socket SOCKET ARGS...`.
pub fn ctl(socket: &Path, args: &[&str]) -> Ctl {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringchatctl"));
    cmd.arg("--socket").arg(socket).args(args);
    run(cmd)
}

/// Runs a prepared `ringchatctl` command.
pub fn run(mut cmd: Command) -> Ctl {
    let out = cmd.output().expect("run ringchatctl");
    Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running node's process.
#[derive(Debug, Clone)]
pub struct NodeProcess {
    /// Its pid.
    pub pid: u32,
    /// Its `--admin-socket`.
    pub socket: PathBuf,
}

/// The process of node `id`: the child of this test process started with
/// `--port <id's ring port>`.
pub fn node_process(cluster: &Cluster, id: NodeId) -> NodeProcess {
    let addr = cluster.ring_addr(id);
    let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent(pid) != Some(me) {
            continue;
        }
        let args = cmdline(pid);
        let after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
        };
        if after("--port") == Some(&port) {
            let socket = after("--admin-socket").expect("nodes have --admin-socket");
            return NodeProcess {
                pid,
                socket: PathBuf::from(socket),
            };
        }
    }
    panic!("no ringchatd child of this test serves {addr}");
}

/// Waits until process `pid` has exited (it is a zombie until the harness reaps it).
pub fn wait_exited(pid: u32, timeout: Duration) {
    wait_until(timeout, &format!("process {pid} to exit"), || {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // "pid (comm) STATE ...": the state follows the last ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
            Err(_) => true,
        }
    });
}

/// Waits until node `id`'s admin socket answers, and returns its process.
pub fn ready(cluster: &Cluster, id: NodeId) -> NodeProcess {
    cluster.wait_ready(id);
    node_process(cluster, id)
}

/// The default wait for ringchatctl's own waiting commands in these tests.
pub const CTL_TIMEOUT: &str = "8";

const _: () = assert!(
    SHORT.as_secs() > 8,
    "the harness waits longer than ringchatctl"
);

fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
