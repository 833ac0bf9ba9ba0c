//! Finding a server to talk to: the leader a follower just named, else the `--server` list
//! in turn, else the multicast question of PROTOCOL.md ("Leader discovery by UDP
//! multicast"). Whether the server found really leads is the session's business: a
//! follower answers `client_connect` with `leader_info`, which redirects.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ringchat_proto::auth::{ClusterKey, ReplayGuard, verify_datagram};
use ringchat_proto::discovery::{ANNOUNCE, DiscoveryMessage, MAX_DATAGRAM};
use ringchat_proto::ids::unix_timestamp;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use crate::backoff::Backoff;
use crate::session::{Event, join_host_port};

/// How long one TCP connect may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for answers before asking the group again.
const QUERY_INTERVAL: Duration = Duration::from_millis(200);
/// How often to say that the search goes on.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// How the leader is found (`--discovery`).
#[derive(Debug)]
pub enum Discovery {
    /// `--server` addresses, tried in turn.
    Static(Vec<String>),
    /// Ask the multicast group.
    Multicast(MulticastConfig),
}

/// Where and how to ask the multicast group.
#[derive(Debug)]
pub struct MulticastConfig {
    /// Group address.
    pub group: Ipv4Addr,
    /// Group port.
    pub port: u16,
    /// Local interface address to send from; unspecified lets the OS choose.
    pub interface: Ipv4Addr,
    /// Only servers of this cluster answer.
    pub cluster: String,
    /// Our `sender_id`.
    pub client_id: String,
    /// `--cluster-secret-file`: only answers with a valid MAC count.
    pub key: Option<ClusterKey>,
}

/// Connects to a server, retrying until one answers.
pub struct Finder {
    discovery: Discovery,
    events: UnboundedSender<Event>,
    /// Where the next search of the `--server` list starts: just after the server found
    /// last, so that a server that accepts connections but never answers (a stopped
    /// process) is not tried first again and again.
    next: AtomicUsize,
}

impl Finder {
    /// A finder reporting its progress as [`Event::Notice`]s.
    pub fn new(discovery: Discovery, events: UnboundedSender<Event>) -> Self {
        Self {
            discovery,
            events,
            next: AtomicUsize::new(0),
        }
    }

    /// A TCP connection and the address it reached: `redirect` first if given, then the
    /// configured discovery, for as long as it takes.
    pub async fn find(&self, redirect: Option<String>) -> (TcpStream, String) {
        if let Some(address) = redirect
            && let Some(stream) = connect(&address).await
        {
            return (stream, address);
        }
        match &self.discovery {
            Discovery::Static(servers) => self.find_static(servers).await,
            Discovery::Multicast(cfg) => self.find_multicast(cfg).await,
        }
    }

    async fn find_static(&self, servers: &[String]) -> (TcpStream, String) {
        let mut backoff = Backoff::default();
        let mut said = false;
        loop {
            let start = self.next.load(Ordering::Relaxed);
            for i in 0..servers.len() {
                let k = (start + i) % servers.len();
                let address = &servers[k];
                if let Some(stream) = connect(address).await {
                    self.next.store(k + 1, Ordering::Relaxed);
                    return (stream, address.clone());
                }
            }
            if !said {
                said = true;
                self.notice(format!(
                    "no server reachable at {}; retrying",
                    servers.join(", ")
                ));
            }
            sleep(backoff.next_delay()).await;
        }
    }

    async fn find_multicast(&self, cfg: &MulticastConfig) -> (TcpStream, String) {
        let socket = self.open_query_socket(cfg).await;
        let mut replay = ReplayGuard::default();
        let mut next_status = Instant::now();
        loop {
            if Instant::now() >= next_status {
                next_status = Instant::now() + STATUS_INTERVAL;
                self.notice(format!(
                    "searching for the leader of cluster {} via multicast {}:{}",
                    cfg.cluster, cfg.group, cfg.port
                ));
            }
            match ask_group(&socket, cfg, &mut replay).await {
                Ok(Some(address)) => {
                    if let Some(stream) = connect(&address).await {
                        return (stream, address);
                    }
                    sleep(QUERY_INTERVAL).await;
                }
                Ok(None) => {}
                Err(e) => {
                    self.notice(format!("multicast discovery failed: {e}"));
                    sleep(STATUS_INTERVAL).await;
                }
            }
        }
    }

    async fn open_query_socket(&self, cfg: &MulticastConfig) -> UdpSocket {
        loop {
            match query_socket(cfg) {
                Ok(socket) => return socket,
                Err(e) => {
                    self.notice(format!("cannot open the discovery socket: {e}"));
                    sleep(STATUS_INTERVAL).await;
                }
            }
        }
    }

    fn notice(&self, text: String) {
        // Nobody listening any more means we are shutting down: nothing to tell.
        let _ = self.events.send(Event::Notice(text));
    }
}

/// A TCP connection to `address`, or `None` if it fails or takes too long.
async fn connect(address: &str) -> Option<TcpStream> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .ok()?
        .ok()?;
    // Small frames, latency matters: a lost Nagle delay is worth nothing here.
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Sends one question to the group and waits [`QUERY_INTERVAL`] for an answer naming the
/// leader's client address.
async fn ask_group(
    socket: &UdpSocket,
    cfg: &MulticastConfig,
    replay: &mut ReplayGuard,
) -> io::Result<Option<String>> {
    socket
        .send_to(&query(cfg), SocketAddrV4::new(cfg.group, cfg.port))
        .await?;
    let deadline = Instant::now() + QUERY_INTERVAL;
    let mut buf = vec![0; MAX_DATAGRAM];
    while let Ok(received) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        // A failed receive (e.g. an ICMP error for a lost datagram) is no answer: keep waiting.
        if let Ok((n, _)) = received
            && let Some(address) = leader_from_answer(&buf[..n], cfg, replay)
        {
            return Ok(Some(address));
        }
    }
    Ok(None)
}

/// An ephemeral UDP socket that sends to the group: TTL 1 (this network only), loop on (a
/// server on this host hears it), from `--multicast-interface` when one is named.
fn query_socket(cfg: &MulticastConfig) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    if !cfg.interface.is_unspecified() {
        socket.set_multicast_if_v4(&cfg.interface)?;
    }
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// The client's question: a `discovery_announce` with no server address.
///
/// Written field by field rather than as a [`DiscoveryMessage`], whose server-only
/// extensions a client has no business filling in.
fn query(cfg: &MulticastConfig) -> Vec<u8> {
    serde_json::json!({
        "msg_type": ANNOUNCE,
        "sender_id": cfg.client_id,
        "timestamp": unix_timestamp(),
        "server_address": "",
        "server_port": 0,
        "is_leader": false,
        "cluster": cfg.cluster,
    })
    .to_string()
    .into_bytes()
}

/// `host:port` of the leader if `datagram` is a server's answer of our cluster naming one
/// (and, with a key, proving that the server holds it).
fn leader_from_answer(
    datagram: &[u8],
    cfg: &MulticastConfig,
    replay: &mut ReplayGuard,
) -> Option<String> {
    let msg = DiscoveryMessage::parse(datagram)?;
    if msg.is_client_query() || msg.cluster.as_deref().is_some_and(|c| c != cfg.cluster) {
        return None;
    }
    if let Some(key) = &cfg.key {
        let now = unix_timestamp() as u64;
        verify_datagram(key, datagram, msg.auth.as_ref(), now, replay).ok()?;
    }
    let host = msg.leader_address.filter(|h| !h.is_empty())?;
    Some(join_host_port(&host, msg.leader_port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MulticastConfig {
        MulticastConfig {
            group: Ipv4Addr::new(239, 255, 255, 250),
            port: 5000,
            interface: Ipv4Addr::LOCALHOST,
            cluster: "blue".into(),
            client_id: "k3f9a".into(),
            key: None,
        }
    }

    /// `leader_from_answer` with a fresh replay guard.
    fn leader(datagram: &[u8], cfg: &MulticastConfig) -> Option<String> {
        leader_from_answer(datagram, cfg, &mut ReplayGuard::default())
    }

    #[test]
    fn the_query_is_a_client_announce() {
        let q = DiscoveryMessage::parse(&query(&cfg())).unwrap();
        assert!(q.is_client_query());
        assert_eq!(q.sender_id, "k3f9a");
        assert_eq!(q.cluster.as_deref(), Some("blue"));
        assert!(!q.is_leader && q.server_address.is_empty());
    }

    #[test]
    fn answers_must_name_a_leader_of_our_cluster() {
        let answer = |cluster: &str, addr: &str, port: &str| {
            format!(
                r#"{{"msg_type":"discovery_response","sender_id":"Server 2","server_address":"127.0.0.1","server_port":5002,"is_leader":false,"leader_id":3,"leader_address":{addr},"leader_port":{port},"epoch":4{cluster}}}"#
            )
        };
        let good = answer(r#","cluster":"blue""#, r#""127.0.0.1""#, "5103");
        assert_eq!(
            leader(good.as_bytes(), &cfg()).as_deref(),
            Some("127.0.0.1:5103")
        );
        let any_cluster = answer("", r#""::1""#, "5103");
        assert_eq!(
            leader(any_cluster.as_bytes(), &cfg()).as_deref(),
            Some("[::1]:5103")
        );
        for bad in [
            answer(r#","cluster":"red""#, r#""127.0.0.1""#, "5103"),
            answer("", "null", "5103"),
            answer("", r#""127.0.0.1""#, "null"),
            answer("", r#""""#, "5103"),
        ] {
            assert_eq!(leader(bad.as_bytes(), &cfg()), None, "{bad}");
        }
        assert_eq!(leader(&query(&cfg()), &cfg()), None);
    }

    #[test]
    fn with_a_key_only_sealed_answers_count_and_only_once() {
        let key = ClusterKey::new(b"the cluster's secret, 32 bytes!!").unwrap();
        let keyed = MulticastConfig {
            key: Some(key.clone()),
            ..cfg()
        };
        let mut answer = DiscoveryMessage {
            msg_type: "discovery_response".into(),
            sender_id: "Server 3".into(),
            timestamp: 1.0,
            server_address: "127.0.0.1".into(),
            server_port: 5003,
            is_leader: true,
            leader_id: Some(3),
            leader_address: Some("127.0.0.1".into()),
            leader_port: Some(5103),
            epoch: 4,
            cluster: Some("blue".into()),
            node_id: Some(3),
            client_port: Some(5103),
            leader_ring_port: Some(5003),
            auth: None,
        };
        let plain = serde_json::to_vec(&answer).unwrap();
        assert_eq!(leader(&plain, &keyed), None, "an answer without a MAC");
        answer.auth = Some(ringchat_proto::discovery::DatagramAuth::unsealed(
            unix_timestamp() as u64,
        ));
        let mut sealed = serde_json::to_vec(&answer).unwrap();
        ringchat_proto::auth::seal_datagram(&key, &mut sealed).unwrap();
        let mut replay = ReplayGuard::default();
        assert_eq!(
            leader_from_answer(&sealed, &keyed, &mut replay).as_deref(),
            Some("127.0.0.1:5103")
        );
        assert_eq!(
            leader_from_answer(&sealed, &keyed, &mut replay),
            None,
            "a replay"
        );
        let forged = String::from_utf8(sealed).unwrap().replace("5103", "6666");
        assert_eq!(leader(forged.as_bytes(), &keyed), None, "a changed answer");
    }
}
