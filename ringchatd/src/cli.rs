//! The `ringchatd` command line (DESIGN.md, "Interfaces"; binding for scripts).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How a server finds the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryMode {
    /// UDP multicast announcements (the seed's way).
    Multicast,
    /// Only the `--peer` addresses.
    Static,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for journald and log pipelines.
    Json,
}

/// `ringchatd`: a replicated RingChat server.
#[derive(Debug, Parser)]
#[command(name = "ringchatd", version, about, rename_all = "kebab-case")]
pub struct Args {
    /// Server id (1-65535); the highest id among the servers that reach each other leads.
    #[arg(value_name = "ID")]
    pub id_positional: Option<u64>,
    /// Server id, as an option.
    #[arg(long = "id", value_name = "N", env = "RINGCHAT_NODE__ID")]
    pub id: Option<u64>,
    /// Ring port (server-to-server). Default: 5000 + id.
    #[arg(short, long, env = "RINGCHAT_NODE__PORT")]
    pub port: Option<u16>,
    /// Address the ring and client ports listen on and that other servers and clients use.
    #[arg(
        short,
        long,
        default_value = "127.0.0.1",
        env = "RINGCHAT_NODE__ADDRESS"
    )]
    pub address: String,
    /// Client port. Default: ring port + 100.
    #[arg(long, env = "RINGCHAT_NODE__CLIENT_PORT")]
    pub client_port: Option<u16>,
    /// Another server's ring address (repeatable); implies `--discovery static` unless
    /// multicast is asked for explicitly.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// How to find the other servers. Default: static with `--peer`, else multicast.
    #[arg(long, value_enum)]
    pub discovery: Option<DiscoveryMode>,
    /// Multicast group of the discovery protocol.
    #[arg(long, default_value = "239.255.255.250")]
    pub multicast_group: Ipv4Addr,
    /// UDP port of the discovery protocol.
    #[arg(long, default_value_t = 5000)]
    pub multicast_port: u16,
    /// IPv4 address of the interface multicast is sent and received on (0.0.0.0: the
    /// system's choice).
    #[arg(long, default_value = "0.0.0.0")]
    pub multicast_interface: Ipv4Addr,
    /// Cluster name: servers and clients of another cluster are ignored.
    #[arg(long, default_value = "ringchat", env = "RINGCHAT_CLUSTER__NAME")]
    pub cluster: String,
    /// Unix socket for `ringchatctl`.
    #[arg(
        long,
        default_value = "/run/ringchat/admin.sock",
        env = "RINGCHAT_ADMIN__SOCKET"
    )]
    pub admin_socket: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `ringchatd=debug,info`).
    #[arg(long, default_value = "info", env = "RINGCHAT_LOG__LEVEL")]
    pub log_level: String,
}
