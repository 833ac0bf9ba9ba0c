//! Unique ports: each node gets a ring port `p` and the client port `p + 100`, both free on
//! 127.0.0.1 when handed out and never handed out twice by this process.
//!
//! Ports are drawn at random from 20000..50000 minus the kernel's ephemeral range (where
//! outgoing connections take their local ports), so parallel tests, and parallel test
//! processes, almost never collide; a pair that is in use is skipped.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Distance between a node's ring port and its client port (the daemon's default).
pub const CLIENT_PORT_OFFSET: u16 = 100;

/// The ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// Server-to-server port.
    pub ring: u16,
    /// Client port (`ring + 100`).
    pub client: u16,
}

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A ring/client port pair that is free right now.
pub fn node_ports() -> NodePorts {
    let ring = pick(
        |p| tcp_free(p) && tcp_free(p + CLIENT_PORT_OFFSET),
        &[0, CLIENT_PORT_OFFSET],
    );
    NodePorts {
        ring,
        client: ring + CLIENT_PORT_OFFSET,
    }
}

/// A UDP port that is free right now (for a test's own multicast discovery port).
pub fn udp_port() -> u16 {
    pick(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok(), &[0])
}

/// Draws ports until `free(p)` holds and none of `p + offset` was handed out before.
fn pick(free: impl Fn(u16) -> bool, offsets: &[u16]) -> u16 {
    let ephemeral = ephemeral_range();
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = guard.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let p = 20_000 + (crate::random_u64() % 29_800) as u16;
        let ports: Vec<u16> = offsets.iter().map(|o| p + o).collect();
        let clash = ports
            .iter()
            .any(|q| handed.contains(q) || ephemeral.as_ref().is_some_and(|r| r.contains(q)));
        if clash || !free(p) {
            continue;
        }
        handed.extend(ports);
        return p;
    }
    panic!("no free port found in 20000..50000");
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The kernel's ephemeral port range, if it can be read.
fn ephemeral_range() -> Option<std::ops::RangeInclusive<u16>> {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    match (it.next(), it.next()) {
        // Leave at least a part of 20000..50000 usable.
        (Some(lo), Some(hi)) if lo > 21_000 => Some(lo..=hi),
        _ => None,
    }
}
