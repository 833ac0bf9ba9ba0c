//! The resolved settings of one server, checked once at start.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ringchat_core::{CoreConfig, MAX_NODE_ID};
use ringchat_proto::NodeId;
use ringchat_proto::peer::NodeInfo;

use crate::cli::{Args, DiscoveryMode};

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This server's id.
    pub id: NodeId,
    /// Address other servers and clients reach us at.
    pub address: String,
    /// Ring port.
    pub port: u16,
    /// Client port.
    pub client_port: u16,
    /// Static peers' ring addresses.
    pub peers: Vec<(String, u16)>,
    /// How servers are found.
    pub discovery: DiscoveryMode,
    /// Multicast group, port and interface.
    pub multicast_group: Ipv4Addr,
    /// Discovery UDP port.
    pub multicast_port: u16,
    /// Interface for multicast (0.0.0.0: the system's choice).
    pub multicast_interface: Ipv4Addr,
    /// How often to announce ourselves.
    pub discovery_interval: Duration,
    /// Cluster name.
    pub cluster: String,
    /// Admin socket path.
    pub admin_socket: PathBuf,
    /// The state machine's timing and sizes.
    pub core: CoreConfig,
    /// Client protocol limits.
    pub max_content_chars: usize,
    /// Entries a client gets on connect without `from_sequence`.
    pub history_on_connect: usize,
    /// Frames queued for one client before it counts as slow and is disconnected.
    pub client_queue: usize,
    /// Concurrent client connections, at most.
    pub max_clients: usize,
    /// A client that sends nothing for this long is disconnected.
    pub client_idle_timeout: Duration,
}

impl Settings {
    /// Builds and checks the settings from the command line.
    pub fn from_args(args: &Args) -> anyhow::Result<Self> {
        let id = match (args.id_positional, args.id) {
            (Some(a), Some(b)) if a != b => bail!("the server id is given twice ({a} and {b})"),
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => bail!("a server id is required: `ringchatd 1 --port 5001`"),
        };
        if id == 0 || id > MAX_NODE_ID {
            bail!("id: must be between 1 and {MAX_NODE_ID}, not {id}");
        }
        let port = match args.port {
            Some(p) => p,
            None => u16::try_from(5000 + id)
                .ok()
                .filter(|p| *p <= u16::MAX - 100)
                .context("port: 5000 + id is out of range; give --port")?,
        };
        let client_port = match args.client_port {
            Some(p) => p,
            None => port
                .checked_add(100)
                .context("client-port: ring port + 100 is out of range; give --client-port")?,
        };
        if port == 0 || client_port == 0 || port == client_port {
            bail!("port/client-port: must be distinct and non-zero ({port}, {client_port})");
        }
        (args.address.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("address: cannot resolve {:?}", args.address))?;
        let peers = args
            .peers
            .iter()
            .map(|p| parse_peer(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let discovery = args.discovery.unwrap_or(if peers.is_empty() {
            DiscoveryMode::Multicast
        } else {
            DiscoveryMode::Static
        });
        if discovery == DiscoveryMode::Static && peers.is_empty() {
            tracing::debug!("Static discovery without peers: this server waits to be found.");
        }
        if !args.multicast_group.is_multicast() {
            bail!(
                "multicast-group: {} is not a multicast address",
                args.multicast_group
            );
        }
        if args.cluster.is_empty() || args.cluster.len() > 64 {
            bail!("cluster: must have 1 to 64 characters");
        }
        let core = CoreConfig {
            cluster: args.cluster.clone(),
            seeds: peers.clone(),
            ..CoreConfig::default()
        };
        Ok(Self {
            id,
            address: args.address.clone(),
            port,
            client_port,
            peers,
            discovery,
            multicast_group: args.multicast_group,
            multicast_port: args.multicast_port,
            multicast_interface: args.multicast_interface,
            discovery_interval: Duration::from_secs(2),
            cluster: args.cluster.clone(),
            admin_socket: args.admin_socket.clone(),
            core,
            max_content_chars: ringchat_proto::limits::DEFAULT_MAX_CONTENT_CHARS,
            history_on_connect: 100,
            client_queue: 4096,
            max_clients: 10_000,
            client_idle_timeout: Duration::from_secs(30),
        })
    }

    /// This server as the ring sees it.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            address: self.address.clone(),
            port: self.port,
            client_port: self.client_port,
        }
    }

    /// Where the ring listener binds.
    pub fn ring_bind(&self) -> anyhow::Result<SocketAddr> {
        resolve(&self.address, self.port)
    }

    /// Where the client listener binds.
    pub fn client_bind(&self) -> anyhow::Result<SocketAddr> {
        resolve(&self.address, self.client_port)
    }
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to nothing"))
}

fn parse_peer(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("peer: {s:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("peer: {s:?} has no valid port"))?;
    if host.is_empty() {
        bail!("peer: {s:?} has no host");
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}
