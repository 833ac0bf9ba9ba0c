//! The resolved settings of one server: defaults < TOML file < `RINGCHAT_*` environment <
//! flags, checked once at start. A bad value is refused with the key (and file) named.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ringchat_core::{CoreConfig, MAX_NODE_ID, ReplicationMode};
use ringchat_proto::NodeId;
use ringchat_proto::auth::ClusterKey;
use ringchat_proto::peer::NodeInfo;
use serde::Deserialize;

use crate::cli::{Args, DiscoveryMode, LogFormat};

/// The TOML file's shape; every key is optional and unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    node: NodeSection,
    cluster: ClusterSection,
    discovery: DiscoverySection,
    timing: TimingSection,
    replication: ReplicationSection,
    limits: LimitsSection,
    admin: AdminSection,
    metrics: MetricsSection,
    log: LogSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NodeSection {
    id: Option<u64>,
    address: Option<String>,
    port: Option<u16>,
    client_port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ClusterSection {
    name: String,
    peers: Vec<String>,
    /// The shared key of ring and discovery authentication.
    secret: Option<Secret>,
    /// A file holding the key instead (its trailing newline is ignored).
    secret_file: Option<PathBuf>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            name: "ringchat".into(),
            peers: Vec::new(),
            secret: None,
            secret_file: None,
        }
    }
}

/// `cluster.secret` as read; its `Debug` never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DiscoverySection {
    mode: Option<DiscoveryMode>,
    multicast_group: Ipv4Addr,
    multicast_port: u16,
    multicast_interface: Ipv4Addr,
    interval: f64,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            mode: None,
            multicast_group: Ipv4Addr::new(239, 255, 255, 250),
            multicast_port: 5000,
            multicast_interface: Ipv4Addr::UNSPECIFIED,
            interval: 2.0,
        }
    }
}

/// Times in seconds, as in the prototype's `config.py`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TimingSection {
    heartbeat_interval: f64,
    heartbeat_timeout: f64,
    election_timeout: f64,
    replication_timeout: f64,
    startup_grace: f64,
}

impl Default for TimingSection {
    fn default() -> Self {
        let core = CoreConfig::default();
        let s = |ms: u64| ms as f64 / 1000.0;
        Self {
            heartbeat_interval: s(core.heartbeat_interval),
            heartbeat_timeout: s(core.heartbeat_timeout),
            election_timeout: s(core.election_timeout),
            replication_timeout: s(core.replication_timeout),
            startup_grace: s(core.startup_grace),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ReplicationSection {
    sync_chunk_size: usize,
    max_inflight_entries: u64,
    mode: ModeKey,
    cluster_size: Option<usize>,
}

/// `replication.mode`: keep serving on every side of a partition, or only with a majority.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeKey {
    #[default]
    Available,
    Quorum,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        let core = CoreConfig::default();
        Self {
            sync_chunk_size: core.sync_chunk_size,
            max_inflight_entries: core.max_inflight_entries,
            mode: ModeKey::Available,
            cluster_size: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitsSection {
    max_frame: usize,
    max_text: usize,
    history_retention: usize,
    history_on_connect: usize,
    client_queue: usize,
    max_clients: usize,
    client_idle_timeout: f64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_frame: ringchat_proto::limits::MAX_CLIENT_FRAME,
            max_text: ringchat_proto::limits::DEFAULT_MAX_CONTENT_CHARS,
            history_retention: 0,
            history_on_connect: 100,
            client_queue: 4096,
            max_clients: 10_000,
            client_idle_timeout: 60.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdminSection {
    socket: PathBuf,
    /// Permission bits of the socket, as an octal string ("0600", "0660").
    mode: String,
    /// Group that owns the socket (with mode 0660: the operators' group).
    group: Option<String>,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/ringchat/admin.sock"),
            mode: "0600".into(),
            group: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MetricsSection {
    addr: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LogSection {
    format: LogFormat,
    level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

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
    /// Multicast group.
    pub multicast_group: Ipv4Addr,
    /// Discovery UDP port.
    pub multicast_port: u16,
    /// Interface for multicast (0.0.0.0: the system's choice).
    pub multicast_interface: Ipv4Addr,
    /// How often to announce ourselves.
    pub discovery_interval: Duration,
    /// Cluster name.
    pub cluster: String,
    /// `cluster.secret`: ring links and discovery datagrams are authenticated with it.
    pub cluster_key: Option<ClusterKey>,
    /// Admin socket path.
    pub admin_socket: PathBuf,
    /// Admin socket permission bits (never more than 0660).
    pub admin_mode: u32,
    /// Admin socket group.
    pub admin_group: Option<String>,
    /// Prometheus endpoint, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log level or filter.
    pub log_level: String,
    /// The state machine's timing and sizes.
    pub core: CoreConfig,
    /// Largest client frame in bytes.
    pub max_frame: usize,
    /// Longest chat text, in characters.
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
    /// Reads the file and environment, applies the flags, and checks the result.
    pub fn load(args: &Args) -> anyhow::Result<Self> {
        let file = read_sources(args.config.as_deref())?;
        resolve(args, file).with_context(|| match &args.config {
            Some(p) => format!("in {}, RINGCHAT_* variables or flags", p.display()),
            None => "in RINGCHAT_* variables or flags".to_string(),
        })
    }

    /// What changed from `self` to `new`: keys applied at runtime, and keys that need a
    /// restart (they are not applied).
    pub fn reload_diff(&self, new: &Settings) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        let (a, b) = (&self.core, &new.core);
        let runtime = [
            ("log.level", self.log_level != new.log_level),
            (
                "timing.heartbeat_interval",
                a.heartbeat_interval != b.heartbeat_interval,
            ),
            (
                "timing.heartbeat_timeout",
                a.heartbeat_timeout != b.heartbeat_timeout,
            ),
            (
                "timing.election_timeout",
                a.election_timeout != b.election_timeout,
            ),
            (
                "timing.replication_timeout",
                a.replication_timeout != b.replication_timeout,
            ),
            ("timing.startup_grace", a.startup_grace != b.startup_grace),
            (
                "replication.sync_chunk_size",
                a.sync_chunk_size != b.sync_chunk_size,
            ),
            (
                "replication.max_inflight_entries",
                a.max_inflight_entries != b.max_inflight_entries,
            ),
            (
                "limits.max_text",
                self.max_content_chars != new.max_content_chars,
            ),
            (
                "limits.history_on_connect",
                self.history_on_connect != new.history_on_connect,
            ),
            (
                "limits.history_retention",
                a.history_retention != b.history_retention,
            ),
        ];
        let fixed = [
            ("node.id", self.id != new.id),
            ("node.address", self.address != new.address),
            ("node.port", self.port != new.port),
            ("node.client_port", self.client_port != new.client_port),
            ("cluster.name", self.cluster != new.cluster),
            ("cluster.peers", self.peers != new.peers),
            (
                "cluster.secret",
                match (&self.cluster_key, &new.cluster_key) {
                    (None, None) => false,
                    (Some(a), Some(b)) => !a.same_as(b),
                    _ => true,
                },
            ),
            ("replication.mode", self.core.mode != new.core.mode),
            ("discovery.mode", self.discovery != new.discovery),
            (
                "discovery.multicast_group",
                self.multicast_group != new.multicast_group,
            ),
            (
                "discovery.multicast_port",
                self.multicast_port != new.multicast_port,
            ),
            (
                "discovery.multicast_interface",
                self.multicast_interface != new.multicast_interface,
            ),
            (
                "discovery.interval",
                self.discovery_interval != new.discovery_interval,
            ),
            ("admin.socket", self.admin_socket != new.admin_socket),
            ("admin.mode", self.admin_mode != new.admin_mode),
            ("admin.group", self.admin_group != new.admin_group),
            ("metrics.addr", self.metrics_addr != new.metrics_addr),
            ("log.format", self.log_format != new.log_format),
            ("limits.client_queue", self.client_queue != new.client_queue),
            ("limits.max_frame", self.max_frame != new.max_frame),
            ("limits.max_clients", self.max_clients != new.max_clients),
            (
                "limits.client_idle_timeout",
                self.client_idle_timeout != new.client_idle_timeout,
            ),
        ];
        applied.extend(runtime.iter().filter(|(_, c)| *c).map(|(k, _)| *k));
        restart.extend(fixed.iter().filter(|(_, c)| *c).map(|(k, _)| *k));
        (applied, restart)
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

    /// What ring links need to authenticate, when `cluster.secret` is set.
    pub fn ring_auth(&self) -> Option<std::sync::Arc<crate::net::ring_auth::RingAuth>> {
        self.cluster_key.as_ref().map(|key| {
            std::sync::Arc::new(crate::net::ring_auth::RingAuth {
                key: key.clone(),
                me: self.id,
                cluster: self.cluster.clone(),
            })
        })
    }

    /// Where the ring listener binds.
    pub fn ring_bind(&self) -> anyhow::Result<SocketAddr> {
        resolve_addr(&self.address, self.port)
    }

    /// Where the client listener binds.
    pub fn client_bind(&self) -> anyhow::Result<SocketAddr> {
        resolve_addr(&self.address, self.client_port)
    }
}

fn read_sources(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        if !path.is_file() {
            bail!("config: {} does not exist or is not a file", path.display());
        }
        builder = builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    builder = builder.add_source(
        config::Environment::with_prefix("RINGCHAT")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("cluster.peers"),
    );
    let what = path.map_or_else(
        || "the environment".to_string(),
        |p| p.display().to_string(),
    );
    let mut file = builder
        .build()
        .and_then(|c| c.try_deserialize::<FileConfig>())
        .map_err(|e| anyhow::anyhow!("config: {e} (in {what} or RINGCHAT_* variables)"))?;
    // The environment source parses values that look like numbers ("0123..." would lose
    // its leading zero): the secret is taken exactly as given.
    if let Ok(raw) = std::env::var("RINGCHAT_CLUSTER__SECRET") {
        file.cluster.secret = Some(Secret(raw));
    }
    Ok(file)
}

fn resolve(args: &Args, file: FileConfig) -> anyhow::Result<Settings> {
    let id = match (args.id_positional, args.id) {
        (Some(a), Some(b)) if a != b => bail!("id: given twice ({a} and {b})"),
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => file
            .node
            .id
            .context("node.id: a server id is required (`ringchatd 1 --port 5001`)")?,
    };
    if id == 0 || id > MAX_NODE_ID {
        bail!("node.id: must be between 1 and {MAX_NODE_ID}, not {id}");
    }
    let port = match args.port.or(file.node.port) {
        Some(p) => p,
        None => u16::try_from(5000 + id)
            .ok()
            .filter(|p| *p <= u16::MAX - 100)
            .context("node.port: 5000 + id is out of range; set the port")?,
    };
    let client_port = match args.client_port.or(file.node.client_port) {
        Some(p) => p,
        None => port
            .checked_add(100)
            .context("node.client_port: ring port + 100 is out of range; set it")?,
    };
    if port == 0 || client_port == 0 || port == client_port {
        bail!("node.port/node.client_port: must be distinct and non-zero ({port}, {client_port})");
    }
    let address = args
        .address
        .clone()
        .or(file.node.address)
        .unwrap_or_else(|| "127.0.0.1".into());
    resolve_addr(&address, port).context("node.address")?;
    let peer_strings = if args.peers.is_empty() {
        file.cluster.peers
    } else {
        args.peers.clone()
    };
    let peers = peer_strings
        .iter()
        .map(|p| parse_peer(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let discovery = args
        .discovery
        .or(file.discovery.mode)
        .unwrap_or(if peers.is_empty() {
            DiscoveryMode::Multicast
        } else {
            DiscoveryMode::Static
        });
    let multicast_group = args
        .multicast_group
        .unwrap_or(file.discovery.multicast_group);
    if !multicast_group.is_multicast() {
        bail!("discovery.multicast_group: {multicast_group} is not a multicast address");
    }
    let multicast_port = args.multicast_port.unwrap_or(file.discovery.multicast_port);
    if multicast_port == 0 {
        bail!("discovery.multicast_port: must not be 0");
    }
    let cluster = args.cluster.clone().unwrap_or(file.cluster.name);
    if cluster.is_empty() || cluster.len() > 64 {
        bail!("cluster.name: must have 1 to 64 characters");
    }
    let cluster_key = cluster_key(file.cluster.secret, file.cluster.secret_file.as_deref())?;
    let metrics_addr = match args.metrics_addr.clone().or(file.metrics.addr) {
        Some(a) => Some(
            a.to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .with_context(|| format!("metrics.addr: {a:?} is not HOST:PORT"))?,
        ),
        None => None,
    };
    let t = &file.timing;
    let heartbeat_interval = millis("timing.heartbeat_interval", t.heartbeat_interval)?;
    let heartbeat_timeout = millis("timing.heartbeat_timeout", t.heartbeat_timeout)?;
    if heartbeat_timeout <= heartbeat_interval {
        bail!("timing.heartbeat_timeout: must be longer than timing.heartbeat_interval");
    }
    let r = &file.replication;
    // 500 entries of the largest size still fit the 16 MiB ring frame.
    if !(1..=500).contains(&r.sync_chunk_size) {
        bail!("replication.sync_chunk_size: must be between 1 and 500");
    }
    if r.max_inflight_entries == 0 {
        bail!("replication.max_inflight_entries: must be at least 1");
    }
    let core = CoreConfig {
        cluster: cluster.clone(),
        heartbeat_interval,
        heartbeat_timeout,
        election_timeout: millis("timing.election_timeout", t.election_timeout)?,
        replication_timeout: millis("timing.replication_timeout", t.replication_timeout)?,
        startup_grace: millis("timing.startup_grace", t.startup_grace)?,
        sync_chunk_size: r.sync_chunk_size,
        max_inflight_entries: r.max_inflight_entries,
        seeds: peers.clone(),
        history_retention: file.limits.history_retention,
        mode: replication_mode(r, &address, port, &peers)?,
    };
    let admin_mode = match file.admin.mode.as_str() {
        "0600" | "600" => 0o600,
        "0660" | "660" => 0o660,
        other => {
            bail!("admin.mode: {other:?} must be \"0600\" (owner only) or \"0660\" (and its group)")
        }
    };
    if let Some(name) = &file.admin.group
        && nix::unistd::Group::from_name(name).ok().flatten().is_none()
    {
        bail!("admin.group: no group named {name:?} on this system");
    }
    let l = &file.limits;
    // Above 4096 characters one entry could exceed the client protocol's 64 KiB frame.
    if !(1..=ringchat_proto::limits::DEFAULT_MAX_CONTENT_CHARS).contains(&l.max_text) {
        bail!(
            "limits.max_text: must be between 1 and {} characters",
            ringchat_proto::limits::DEFAULT_MAX_CONTENT_CHARS
        );
    }
    if !(32_768..=ringchat_proto::limits::MAX_CLIENT_FRAME).contains(&l.max_frame) {
        bail!(
            "limits.max_frame: must be between 32768 and {} bytes",
            ringchat_proto::limits::MAX_CLIENT_FRAME
        );
    }
    if l.history_retention != 0 && l.history_retention < 1_000 {
        bail!("limits.history_retention: must be 0 (keep everything) or at least 1000 entries");
    }
    if l.history_on_connect > 10_000 {
        bail!("limits.history_on_connect: must be at most 10000");
    }
    if l.client_queue < 16 || l.max_clients == 0 {
        bail!("limits.client_queue/limits.max_clients: too small");
    }
    Ok(Settings {
        id,
        address,
        port,
        client_port,
        peers,
        discovery,
        multicast_group,
        multicast_port,
        multicast_interface: args
            .multicast_interface
            .unwrap_or(file.discovery.multicast_interface),
        discovery_interval: Duration::from_millis(millis(
            "discovery.interval",
            file.discovery.interval,
        )?),
        cluster,
        cluster_key,
        admin_socket: args.admin_socket.clone().unwrap_or(file.admin.socket),
        admin_mode,
        admin_group: file.admin.group,
        metrics_addr,
        log_format: args.log_format.unwrap_or(file.log.format),
        log_level: args.log_level.clone().unwrap_or(file.log.level),
        core,
        max_frame: l.max_frame,
        max_content_chars: l.max_text,
        history_on_connect: l.history_on_connect,
        client_queue: l.client_queue,
        max_clients: l.max_clients,
        client_idle_timeout: Duration::from_millis(millis(
            "limits.client_idle_timeout",
            l.client_idle_timeout,
        )?),
    })
}

/// The key from `cluster.secret` or the file `cluster.secret_file` (one of them at most).
fn cluster_key(secret: Option<Secret>, file: Option<&Path>) -> anyhow::Result<Option<ClusterKey>> {
    let (key, parsed) = match (secret, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!("cluster.secret/cluster.secret_file: set one, not both"),
        (Some(Secret(text)), None) => ("cluster.secret", ClusterKey::new(text.as_bytes())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cluster.secret_file: cannot read {}", path.display()))?;
            ("cluster.secret_file", ClusterKey::from_file_text(&text))
        }
    };
    parsed.map(Some).map_err(|e| {
        anyhow::anyhow!("{key}: {e} (use a random string, e.g. `openssl rand -hex 32`)")
    })
}

/// Quorum mode needs the size of the configured ring: the static peers (and this server,
/// if it is not among them), or `replication.cluster_size`, which multicast discovery
/// cannot do without.
fn replication_mode(
    r: &ReplicationSection,
    address: &str,
    port: u16,
    peers: &[(String, u16)],
) -> anyhow::Result<ReplicationMode> {
    if r.mode == ModeKey::Available {
        if r.cluster_size.is_some() {
            bail!("replication.cluster_size: only used with replication.mode = \"quorum\"");
        }
        return Ok(ReplicationMode::Available);
    }
    let me = resolve_addr(address, port).ok();
    let listed = peers.iter().any(|(host, p)| {
        (host == address && *p == port) || (me.is_some() && resolve_addr(host, *p).ok() == me)
    });
    let cluster_size = match r.cluster_size {
        Some(n) => n,
        None if peers.is_empty() => bail!(
            "replication.cluster_size: required with replication.mode = \"quorum\" and \
             multicast discovery (the number of servers in the cluster)"
        ),
        None => peers.len() + usize::from(!listed),
    };
    if !(1..=1024).contains(&cluster_size) {
        bail!("replication.cluster_size: must be between 1 and 1024, not {cluster_size}");
    }
    Ok(ReplicationMode::Quorum { cluster_size })
}

/// Seconds (as in the prototype's config) to milliseconds, refusing nonsense.
fn millis(key: &str, seconds: f64) -> anyhow::Result<u64> {
    if !seconds.is_finite() || !(0.001..=3600.0).contains(&seconds) {
        bail!("{key}: must be between 0.001 and 3600 seconds, not {seconds}");
    }
    Ok((seconds * 1000.0).round() as u64)
}

fn resolve_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to nothing"))
}

fn parse_peer(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("cluster.peers: {s:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("cluster.peers: {s:?} has no valid port"))?;
    if host.is_empty() {
        bail!("cluster.peers: {s:?} has no host");
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(v: &[&str]) -> Args {
        Args::parse_from(std::iter::once("ringchatd").chain(v.iter().copied()))
    }

    fn file(toml: &str) -> FileConfig {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn seed_command_line() {
        let s = resolve(&args(&["3", "--port", "5003"]), FileConfig::default()).unwrap();
        assert_eq!((s.id, s.port, s.client_port), (3, 5003, 5103));
        assert_eq!(s.discovery, DiscoveryMode::Multicast);
        assert_eq!(s.core.heartbeat_interval, 100);
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            "[node]\nid = 2\nport = 6002\n[timing]\nheartbeat_interval = 0.2\nheartbeat_timeout = 1.0\n[cluster]\npeers = [\"a:1\"]\n",
        );
        let s = resolve(&args(&["--port", "7002"]), f).unwrap();
        assert_eq!((s.id, s.port, s.client_port), (2, 7002, 7102));
        assert_eq!(
            (s.core.heartbeat_interval, s.core.heartbeat_timeout),
            (200, 1000)
        );
        assert_eq!(s.discovery, DiscoveryMode::Static);
    }

    #[test]
    fn shipped_config_files_are_valid() {
        let reference = file(include_str!("../../config/ringchatd.example.toml"));
        let s = resolve(&args(&["7"]), reference).unwrap();
        assert_eq!(
            (s.port, s.client_port, s.core.heartbeat_timeout),
            (5007, 5107, 500)
        );
        for (i, text) in [
            include_str!("../../config/cluster/node1.toml"),
            include_str!("../../config/cluster/node2.toml"),
            include_str!("../../config/cluster/node3.toml"),
        ]
        .into_iter()
        .enumerate()
        {
            let s = resolve(&args(&[]), file(text)).unwrap();
            assert_eq!(s.id, i as u64 + 1);
            assert_eq!(s.peers.len(), 3);
            assert_eq!(s.discovery, DiscoveryMode::Static);
        }
    }

    #[test]
    fn the_secret_is_read_from_a_file_and_never_shown() {
        let dir = tempfile_dir();
        let path = dir.join("key");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let toml = format!(
            "[cluster]\nsecret_file = {:?}\n",
            path.display().to_string()
        );
        let from_file = resolve(&args(&["1"]), file(&toml)).unwrap();
        let inline = resolve(
            &args(&["1"]),
            file("[cluster]\nsecret = \"0123456789abcdef0123\"\n"),
        )
        .unwrap();
        let (a, b) = (from_file.cluster_key.as_ref(), inline.cluster_key.as_ref());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.same_as(b), "the trailing newline is not part of the key");
        assert!(!format!("{inline:?}").contains("0123456789abcdef"));
        let keyless = resolve(&args(&["1"]), FileConfig::default()).unwrap();
        assert_eq!(
            keyless.reload_diff(&inline),
            (vec![], vec!["cluster.secret"])
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringchatd-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reload_sorts_keys_into_applied_and_restart_required() {
        let old = resolve(&args(&["1"]), FileConfig::default()).unwrap();
        let new = resolve(
            &args(&["1", "--port", "7001", "--log-level", "debug"]),
            file("[timing]\nheartbeat_interval = 0.2\n"),
        )
        .unwrap();
        let (applied, restart) = old.reload_diff(&new);
        assert_eq!(applied, ["log.level", "timing.heartbeat_interval"]);
        assert_eq!(restart, ["node.port", "node.client_port"]);
        assert_eq!(old.reload_diff(&old), (vec![], vec![]));
    }

    #[test]
    fn quorum_mode_knows_the_size_of_the_ring() {
        let mode = |a: &[&str], toml: &str| resolve(&args(a), file(toml)).map(|s| s.core.mode);
        let quorum = "[replication]\nmode = \"quorum\"\n";
        assert_eq!(mode(&["1"], "").unwrap(), ReplicationMode::Available);
        let peers = [
            "1",
            "--port",
            "5001",
            "--peer",
            "127.0.0.1:5002",
            "--peer",
            "127.0.0.1:5003",
        ];
        assert_eq!(
            mode(&peers, quorum).unwrap(),
            ReplicationMode::Quorum { cluster_size: 3 },
            "the peers and this server"
        );
        let mut listed = peers.to_vec();
        listed.extend(["--peer", "127.0.0.1:5001"]);
        assert_eq!(
            mode(&listed, quorum).unwrap(),
            ReplicationMode::Quorum { cluster_size: 3 },
            "this server among the peers"
        );
        let err = format!("{:#}", mode(&["1"], quorum).unwrap_err());
        assert!(err.contains("replication.cluster_size"), "{err}");
        assert_eq!(
            mode(
                &["1"],
                "[replication]\nmode = \"quorum\"\ncluster_size = 5\n"
            )
            .unwrap(),
            ReplicationMode::Quorum { cluster_size: 5 }
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err =
            |a: &[&str], toml: &str| format!("{:#}", resolve(&args(a), file(toml)).unwrap_err());
        assert!(err(&[], "").contains("node.id"));
        assert!(err(&["70000"], "").contains("node.id"));
        assert!(
            err(&["1"], "[timing]\nheartbeat_timeout = 0.05\n")
                .contains("timing.heartbeat_timeout")
        );
        assert!(err(&["1", "--peer", "nohost"], "").contains("cluster.peers"));
        assert!(err(&["1"], "[cluster]\nsecret = \"short\"\n").contains("cluster.secret:"));
        assert!(
            err(
                &["1"],
                "[cluster]\nsecret = \"0123456789abcdef\"\nsecret_file = \"/x\"\n"
            )
            .contains("set one, not both")
        );
        assert!(
            err(&["1"], "[cluster]\nsecret_file = \"/nonexistent/key\"\n")
                .contains("cluster.secret_file")
        );
        let unknown = config::Config::builder()
            .add_source(config::File::from_str(
                "[node]\nidd = 1\n",
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize::<FileConfig>()
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("idd"), "{unknown}");
    }
}
