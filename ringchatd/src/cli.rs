//! The `ringchatd` command line (DESIGN.md, "Interfaces"; binding for scripts).
//!
//! Every option is optional here: what is not given comes from the environment
//! (`RINGCHAT_*`), then the TOML file, then the defaults (see [`crate::settings`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// How a server finds the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryMode {
    /// UDP multicast announcements (the seed's way).
    Multicast,
    /// Only the `--peer` addresses.
    Static,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    #[arg(long = "id", value_name = "N")]
    pub id: Option<u64>,
    /// Ring port (server to server). Default: 5000 + id.
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Address the ring and client ports listen on and that others reach us at
    /// [default: 127.0.0.1].
    #[arg(short, long)]
    pub address: Option<String>,
    /// Client port. Default: ring port + 100.
    #[arg(long)]
    pub client_port: Option<u16>,
    /// TOML configuration file (`config/ringchatd.example.toml` documents every key).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Another server's ring address (repeatable); implies `--discovery static` unless
    /// multicast is asked for explicitly.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// How to find the other servers. Default: static with peers, else multicast.
    #[arg(long, value_enum)]
    pub discovery: Option<DiscoveryMode>,
    /// Multicast group of the discovery protocol [default: 239.255.255.250].
    #[arg(long)]
    pub multicast_group: Option<Ipv4Addr>,
    /// UDP port of the discovery protocol [default: 5000].
    #[arg(long)]
    pub multicast_port: Option<u16>,
    /// IPv4 address of the interface multicast uses (0.0.0.0: the system's choice)
    /// [default: 0.0.0.0].
    #[arg(long)]
    pub multicast_interface: Option<Ipv4Addr>,
    /// Cluster name: servers and clients of another cluster are ignored [default: ringchat].
    #[arg(long)]
    pub cluster: Option<String>,
    /// Unix socket for local administration (JSON requests) [default: /run/ringchat/admin.sock].
    #[arg(long, value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`/metrics`); off unless given.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (`info`, `debug`, `ringchatd=debug,info`) [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}
