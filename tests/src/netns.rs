//! Throw-away network namespaces for the multicast tests.
//!
//! Multicast must never leave the machine, so those tests run their servers and clients in
//! a namespace of their own whose only interface is a loopback with multicast switched on
//! and a route for 239.0.0.0/8. The admin sockets are filesystem paths, so the test (in
//! the host namespace) still reaches them. Namespaces are named `rc-<pid>-<n>`; ones left
//! by a test process that no longer exists are removed on the next creation.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a multicast-capable loopback, or says why it cannot (not
    /// root, no `ip`, no namespace support).
    pub fn create() -> Result<NetNs, String> {
        remove_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rc-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "set", "lo", "multicast", "on"])?;
        ns.ip(&["route", "add", "239.0.0.0/8", "dev", "lo"])?;
        Ok(ns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Moves the calling thread (only it) into namespace `name`: sockets it opens from then
/// on live there, so a test thread can speak to servers on the namespace's loopback.
pub fn enter(name: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns({path}): {e}"))
}

/// A namespace, or `None` after printing `SKIP: <reason>` (the calling test then returns
/// and passes).
pub fn netns_or_skip(test: &str) -> Option<NetNs> {
    match NetNs::create() {
        Ok(ns) => Some(ns),
        Err(reason) => {
            crate::report(&format!("SKIP: {test}: {reason}"));
            None
        }
    }
}

pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `program args` and returns `Err` naming the command and its stderr if it fails
/// (or cannot be started); for `ip`, `nft` and `tc`.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes `rc-<pid>-...` namespaces (these and [`crate::hosts`]'s) whose test process is
/// gone.
pub(crate) fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("rc-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
