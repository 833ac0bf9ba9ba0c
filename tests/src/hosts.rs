//! A multi-host test network: one network namespace per server and per client "host", all
//! on one Linux bridge, with faults to inject between them.
//!
//! The bridge lives in a namespace of its own (the "switch"), so nothing touches the
//! machine's interfaces: each host namespace has one veth (`eth0`) whose other end is a port
//! of the bridge, an address in the private subnet 10.77.1.0/24 (server `n` is 10.77.1.n,
//! client host `i` is 10.77.1.(200 + i)) and a route for 239.0.0.0/8 on `eth0`, so multicast
//! discovery runs over the bridge and can leave through nothing else. No namespace has a
//! default route. The admin sockets are filesystem paths, so the test process (in the
//! machine's namespace) still reaches them; load clients enter a client namespace per
//! thread (see [`crate::load`]).
//!
//! Faults: [`Hosts::cut`] takes a host's bridge port down (and [`Hosts::reconnect`] up
//! again), [`Hosts::partition`] installs nftables rules in each host of a group that drop
//! everything from the hosts outside it ([`Hosts::heal`] removes them), and
//! [`Hosts::netem`] puts a `tc netem` qdisc (delay, loss) on a host's link.
//!
//! Namespaces are named `rc-<pid>-h<n>-<host>`, so parallel test processes never collide;
//! dropping [`Hosts`] deletes them (with the veths and the bridge), and ones left by a test
//! process that no longer exists are removed on the next creation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use ringchat_proto::NodeId;

use crate::netns::{ip, remove_stale, run};

/// The nftables table the partition rules live in.
const NFT_TABLE: &str = "ringchat_chaos";

/// One host of the test network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    /// The server with this id (at most 199).
    Node(NodeId),
    /// Client host `i` (0-based, at most 49).
    Client(usize),
}

impl Host {
    /// The host's address on the bridge.
    pub fn address(self) -> Ipv4Addr {
        match self {
            Host::Node(id) => Ipv4Addr::new(10, 77, 1, id as u8),
            Host::Client(i) => Ipv4Addr::new(10, 77, 1, 200 + i as u8),
        }
    }

    /// The bridge port (in the switch namespace) this host is plugged into.
    fn port(self) -> String {
        match self {
            Host::Node(id) => format!("n{id}"),
            Host::Client(i) => format!("c{i}"),
        }
    }
}

/// The namespaces, bridge and links of one test network; deleted on drop.
#[derive(Debug)]
pub struct Hosts {
    switch: String,
    hosts: BTreeMap<Host, String>,
    /// Hosts that hold partition rules now.
    partitioned: BTreeSet<Host>,
}

impl Hosts {
    /// Creates the switch and one namespace per server of `nodes` and per client host
    /// (`clients` of them), or says why it cannot (not root, no `ip`, no namespaces).
    pub fn create(nodes: &[NodeId], clients: usize) -> Result<Hosts, String> {
        if nodes.iter().any(|&id| id == 0 || id >= 200) || clients >= 50 {
            return Err("server ids must be 1..=199 and client hosts fewer than 50".into());
        }
        remove_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "rc-{}-h{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch])?;
        let mut net = Hosts {
            switch,
            hosts: BTreeMap::new(),
            partitioned: BTreeSet::new(),
        };
        net.in_switch(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        net.in_switch(&["link", "set", "br0", "up"])?;
        let all = nodes
            .iter()
            .map(|&id| Host::Node(id))
            .chain((0..clients).map(Host::Client));
        for host in all {
            net.plug(&prefix, host)?;
        }
        Ok(net)
    }

    /// Creates host `host`'s namespace and plugs it into the bridge.
    fn plug(&mut self, prefix: &str, host: Host) -> Result<(), String> {
        let name = match host {
            Host::Node(id) => format!("{prefix}-n{id}"),
            Host::Client(i) => format!("{prefix}-c{i}"),
        };
        ip(&["netns", "add", &name])?;
        self.hosts.insert(host, name.clone());
        let port = host.port();
        self.in_switch(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ])?;
        self.in_switch(&["link", "set", &port, "master", "br0", "up"])?;
        let addr = format!("{}/24", host.address());
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &addr, "dev", "eth0"],
            vec!["link", "set", "eth0", "multicast", "on", "up"],
            vec!["route", "add", "239.0.0.0/8", "dev", "eth0"],
        ] {
            let mut all = vec!["-n", name.as_str()];
            all.extend(args);
            ip(&all)?;
        }
        Ok(())
    }

    fn in_switch(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.switch.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The namespace of `host`.
    pub fn netns(&self, host: Host) -> &str {
        self.hosts
            .get(&host)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no host {host:?} in this network"))
    }

    /// The client hosts, in order.
    pub fn clients(&self) -> Vec<Host> {
        self.hosts
            .keys()
            .copied()
            .filter(|h| matches!(h, Host::Client(_)))
            .collect()
    }

    /// Takes `host`'s bridge port down: the host is cut off from every other host (its own
    /// interface stays up, so its addresses and routes survive for [`Hosts::reconnect`]).
    pub fn cut(&self, host: Host) -> Result<(), String> {
        self.netns(host);
        self.in_switch(&["link", "set", &host.port(), "down"])
    }

    /// Brings `host`'s bridge port up again after [`Hosts::cut`].
    pub fn reconnect(&self, host: Host) -> Result<(), String> {
        self.netns(host);
        self.in_switch(&["link", "set", &host.port(), "up"])
    }

    /// Splits the network: every host of each group drops all packets from the hosts of
    /// the other groups (nftables, input hook, so both directions are cut at the receiver
    /// and nothing is refused at the sender). Hosts in no group still reach everyone.
    pub fn partition(&mut self, groups: &[Vec<Host>]) -> Result<(), String> {
        self.heal()?;
        for (g, group) in groups.iter().enumerate() {
            let others: Vec<String> = groups
                .iter()
                .enumerate()
                .filter(|(o, _)| *o != g)
                .flat_map(|(_, hosts)| hosts.iter().map(|h| h.address().to_string()))
                .collect();
            if others.is_empty() {
                continue;
            }
            let rules = format!(
                "add table inet {NFT_TABLE}; \
                 add chain inet {NFT_TABLE} input {{ type filter hook input priority 0; policy accept; }}; \
                 add rule inet {NFT_TABLE} input ip saddr {{ {} }} drop",
                others.join(", ")
            );
            for &host in group {
                let ns = self.netns(host).to_string();
                run("ip", &["netns", "exec", &ns, "nft", &rules])?;
                self.partitioned.insert(host);
            }
        }
        Ok(())
    }

    /// Removes every partition rule [`Hosts::partition`] installed.
    pub fn heal(&mut self) -> Result<(), String> {
        let hosts: Vec<Host> = std::mem::take(&mut self.partitioned).into_iter().collect();
        for host in hosts {
            let ns = self.netns(host).to_string();
            run(
                "ip",
                &[
                    "netns", "exec", &ns, "nft", "delete", "table", "inet", NFT_TABLE,
                ],
            )?;
        }
        Ok(())
    }

    /// Puts `tc netem <spec>` (e.g. `["delay", "50ms", "loss", "10%"]`) on `host`'s link, on
    /// both ends, so traffic in both directions is delayed and lost.
    pub fn netem(&self, host: Host, spec: &[&str]) -> Result<(), String> {
        let ns = self.netns(host).to_string();
        let port = host.port();
        for (ns, dev) in [(ns.as_str(), "eth0"), (self.switch.as_str(), port.as_str())] {
            let mut args = vec!["-n", ns, "qdisc", "add", "dev", dev, "root", "netem"];
            args.extend_from_slice(spec);
            run("tc", &args)?;
        }
        Ok(())
    }

    /// Removes the netem qdiscs of [`Hosts::netem`].
    pub fn clear_netem(&self, host: Host) -> Result<(), String> {
        let ns = self.netns(host).to_string();
        let port = host.port();
        for (ns, dev) in [(ns.as_str(), "eth0"), (self.switch.as_str(), port.as_str())] {
            run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"])?;
        }
        Ok(())
    }

    /// Drops `percent` % of the frames the bridge forwards to and from `host`, picked at
    /// random (nftables in the switch namespace): packet loss on one link without netem.
    pub fn lose(&self, host: Host, percent: u8) -> Result<(), String> {
        let port = host.port();
        self.netns(host);
        let rules = format!(
            "add table bridge {NFT_TABLE}; \
             add chain bridge {NFT_TABLE} forward {{ type filter hook forward priority 0; policy accept; }}; \
             add rule bridge {NFT_TABLE} forward iifname \"{port}\" numgen random mod 100 < {percent} drop; \
             add rule bridge {NFT_TABLE} forward oifname \"{port}\" numgen random mod 100 < {percent} drop"
        );
        run("ip", &["netns", "exec", &self.switch, "nft", &rules])
    }

    /// Ends the loss of [`Hosts::lose`].
    pub fn clear_loss(&self) -> Result<(), String> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.switch,
                "nft",
                "delete",
                "table",
                "bridge",
                NFT_TABLE,
            ],
        )
    }

    /// Checks that nftables works here (for [`Hosts::partition`]).
    pub fn check_nft(&self) -> Result<(), String> {
        run(
            "ip",
            &["netns", "exec", &self.switch, "nft", "list", "tables"],
        )
    }

    /// Checks that `tc netem` works here (for [`Hosts::netem`]), loading `sch_netem` if
    /// `modprobe` is there: adds and removes a netem qdisc on the switch's loopback.
    pub fn check_netem(&self) -> Result<(), String> {
        let _ = run("modprobe", &["sch_netem"]);
        let sw = self.switch.as_str();
        run("ip", &["-n", sw, "link", "set", "lo", "up"])?;
        run(
            "tc",
            &[
                "-n", sw, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ],
        )?;
        run("tc", &["-n", sw, "qdisc", "del", "dev", "lo", "root"])
    }
}

impl Drop for Hosts {
    /// Deletes every namespace; deleting one removes its end of each veth, and with it the
    /// other end, so the switch goes last with nothing left in it.
    fn drop(&mut self) {
        for name in self.hosts.values() {
            let _ = ip(&["netns", "del", name]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// The network, or `None` after printing `SKIP: <test>: <reason>` (the calling test then
/// returns and passes).
pub fn hosts_or_skip(test: &str, nodes: &[NodeId], clients: usize) -> Option<Hosts> {
    match Hosts::create(nodes, clients) {
        Ok(h) => Some(h),
        Err(reason) => {
            crate::report(&format!("SKIP: {test}: {reason}"));
            None
        }
    }
}
