//! Multicast discovery (PROTOCOL.md, "Leader discovery by UDP multicast").
//!
//! Two sockets: one bound to the group's port receives announcements and client questions;
//! an ephemeral one sends, so that unicast answers come back to this process even when
//! several servers share a host (with SO_REUSEPORT a unicast datagram to the group port
//! would reach only one of them).
//!
//! With `cluster.secret` every datagram a server sends carries an `auth` field, and a
//! server datagram without a valid one (bad MAC, stale, replayed) is dropped before it can
//! change anything. Clients have no key: their questions are still answered, and a question
//! never changes this server's state.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ringchat_proto::auth::{self, ClusterKey, ReplayGuard};
use ringchat_proto::discovery::{ANNOUNCE, DatagramAuth, DiscoveryMessage, MAX_DATAGRAM, RESPONSE};
use ringchat_proto::ids::{server_sender_id, unix_timestamp};
use ringchat_proto::peer::NodeInfo;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::{Event, NodeView};

/// Servers answered within the last second, at most: bounds the rate-limit table (and
/// the answers) under a flood of forged ids.
const MAX_ANSWERED: usize = 4096;

/// A discovery is handed to the node task only while fewer events than this wait there:
/// announcements repeat every interval, so under a flood they are dropped rather than
/// queued ahead of ring frames (a heartbeat behind thousands of them would arrive late).
const MAX_QUEUED_AHEAD: usize = 256;

/// Where discovery runs.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Group address.
    pub group: Ipv4Addr,
    /// Group port.
    pub port: u16,
    /// Interface address (0.0.0.0: the system's choice).
    pub interface: Ipv4Addr,
    /// How often to announce.
    pub interval: Duration,
    /// Cluster name.
    pub cluster: String,
    /// The cluster's key: datagrams are sent with a MAC and server datagrams need one.
    pub key: Option<ClusterKey>,
}

/// Binds both sockets; fails early (at start) when multicast is unusable here.
pub fn bind(cfg: &DiscoveryConfig) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let rx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    rx.set_reuse_address(true)?;
    rx.set_reuse_port(true)?;
    rx.set_nonblocking(true)?;
    rx.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        cfg.port,
    )))?;
    rx.join_multicast_v4(&cfg.group, &cfg.interface)?;
    rx.set_multicast_loop_v4(true)?;

    let tx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    tx.set_nonblocking(true)?;
    tx.set_multicast_ttl_v4(1)?;
    tx.set_multicast_loop_v4(true)?;
    if !cfg.interface.is_unspecified() {
        tx.set_multicast_if_v4(&cfg.interface)?;
    }
    tx.bind(&SockAddr::from(SocketAddrV4::new(cfg.interface, 0)))?;
    Ok((
        UdpSocket::from_std(rx.into())?,
        UdpSocket::from_std(tx.into())?,
    ))
}

/// Announces this server and answers questions until `shutdown`.
pub async fn run(
    sockets: (UdpSocket, UdpSocket),
    cfg: DiscoveryConfig,
    mut view: watch::Receiver<NodeView>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let (rx, tx) = sockets;
    let group = SocketAddr::from((cfg.group, cfg.port));
    let mut announce = tokio::time::interval(cfg.interval);
    let mut rx_buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut tx_buf = vec![0u8; MAX_DATAGRAM + 1];
    // Answers to one server process's announcements, at most one a second (bounds a
    // flood). Keyed by id and source address: a server restarted within the second sends
    // from a new ephemeral port and is answered at once; keyed by id alone, it heard no one
    // within `startup_grace` and elected itself alone with an empty history.
    let mut answered: HashMap<(u64, SocketAddr), Instant> = HashMap::new();
    let mut replay = ReplayGuard::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = announce.tick() => {
                let msg = message(&view.borrow(), ANNOUNCE, &cfg.cluster);
                send(&tx, msg, group, cfg.key.as_ref()).await;
            }
            _ = view.changed() => {
                // A new leader is announced at once, not at the next tick.
                let msg = message(&view.borrow_and_update(), ANNOUNCE, &cfg.cluster);
                send(&tx, msg, group, cfg.key.as_ref()).await;
            }
            r = rx.recv_from(&mut rx_buf) => {
                if let Ok((n, src)) = r {
                    let state = (&mut answered, &mut replay);
                    handle(&rx_buf[..n], src, &cfg, &view, &tx, &events, state).await;
                }
            }
            r = tx.recv_from(&mut tx_buf) => {
                if let Ok((n, src)) = r {
                    let state = (&mut answered, &mut replay);
                    handle(&tx_buf[..n], src, &cfg, &view, &tx, &events, state).await;
                }
            }
        }
    }
}

async fn handle(
    datagram: &[u8],
    src: SocketAddr,
    cfg: &DiscoveryConfig,
    view: &watch::Receiver<NodeView>,
    tx: &UdpSocket,
    events: &mpsc::Sender<Event>,
    (answered, replay): (&mut HashMap<(u64, SocketAddr), Instant>, &mut ReplayGuard),
) {
    let Some(msg) = DiscoveryMessage::parse(datagram) else {
        return;
    };
    if msg.cluster.as_deref().is_some_and(|c| c != cfg.cluster) {
        return;
    }
    let me = view.borrow().me.id;
    // A keyless client's question is answered (it changes nothing here); everything else
    // must prove the key.
    let client_question = msg.is_client_query() && msg.auth.is_none();
    if let Some(key) = &cfg.key
        && !client_question
    {
        let now = unix_timestamp() as u64;
        if let Err(e) = auth::verify_datagram(key, datagram, msg.auth.as_ref(), now, replay) {
            super::ring_auth::report_failure("discovery", src, &e);
            return;
        }
    }
    if msg.is_client_query() {
        let answer = message(&view.borrow(), RESPONSE, &cfg.cluster);
        if answer.leader_address.is_some() {
            send(tx, answer, src, cfg.key.as_ref()).await;
        }
        return;
    }
    let Some(id) = msg.server_id().filter(|id| *id != me) else {
        return;
    };
    if msg.server_port == 0 || msg.server_address.is_empty() {
        return;
    }
    let node = NodeInfo {
        id,
        address: msg.server_address.clone(),
        port: msg.server_port,
        client_port: msg
            .client_port
            .unwrap_or(msg.server_port.saturating_add(100)),
    };
    let leader = match (msg.leader_id, &msg.leader_address, msg.leader_port) {
        (Some(lid), Some(addr), Some(client_port)) => Some(NodeInfo {
            id: lid,
            address: addr.clone(),
            port: msg
                .leader_ring_port
                .unwrap_or(client_port.saturating_sub(100)),
            client_port,
        }),
        _ => None,
    };
    let unknown = !view.borrow().members.contains(&id);
    if events.max_capacity() - events.capacity() < MAX_QUEUED_AHEAD {
        let _ = events.try_send(Event::Discovered {
            node,
            leader,
            epoch: msg.epoch,
        });
    }
    // A server we do not know yet learns of us right away, not at our next announcement.
    if msg.msg_type == ANNOUNCE && unknown {
        let now = Instant::now();
        if answered.len() >= MAX_ANSWERED {
            answered.retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        }
        let due = answered
            .get(&(id, src))
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(1));
        // A flood of new ids within one second finds the table full: those go unanswered
        // (they still reach the node), so the table and the answers both stay bounded.
        if due && (answered.len() < MAX_ANSWERED || answered.contains_key(&(id, src))) {
            answered.insert((id, src), now);
            let answer = message(&view.borrow(), RESPONSE, &cfg.cluster);
            send(tx, answer, src, cfg.key.as_ref()).await;
        }
    }
}

fn message(view: &NodeView, kind: &str, cluster: &str) -> DiscoveryMessage {
    let leader = view.leader.as_ref();
    DiscoveryMessage {
        msg_type: kind.to_string(),
        sender_id: server_sender_id(view.me.id),
        timestamp: unix_timestamp(),
        server_address: view.me.address.clone(),
        server_port: view.me.port,
        is_leader: view.role == ringchat_core::Role::Leader,
        leader_id: leader.map(|l| l.id),
        leader_address: leader.map(|l| l.address.clone()),
        leader_port: leader.map(|l| l.client_port),
        epoch: view.epoch,
        cluster: Some(cluster.to_string()),
        node_id: Some(view.me.id),
        client_port: Some(view.me.client_port),
        leader_ring_port: leader.map(|l| l.port),
        auth: None,
    }
}

/// Sends `msg` to `to`, with its `auth` field when there is a key.
async fn send(tx: &UdpSocket, mut msg: DiscoveryMessage, to: SocketAddr, key: Option<&ClusterKey>) {
    if key.is_some() {
        msg.auth = Some(DatagramAuth::unsealed(unix_timestamp() as u64));
    }
    let encoded = serde_json::to_vec(&msg).and_then(|mut bytes| {
        if let Some(key) = key {
            auth::seal_datagram(key, &mut bytes)
                .ok_or_else(|| serde::ser::Error::custom("no auth field to seal"))?;
        }
        Ok(bytes)
    });
    match encoded {
        Ok(bytes) => {
            if let Err(e) = tx.send_to(&bytes, to).await {
                tracing::debug!(error = %e, %to, "Discovery datagram not sent.");
            }
        }
        Err(e) => tracing::error!(error = %e, "Cannot encode a discovery datagram."),
    }
}
