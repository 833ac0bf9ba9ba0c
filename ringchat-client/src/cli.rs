//! The command line (DESIGN.md, "Interfaces") and the defaults that depend on each other:
//! discovery from `--server`, mode from the terminal, a username for scripts.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ringchat_proto::client::validate_username;
use ringchat_proto::limits::MAX_CLIENT_ID_CHARS;

use crate::connection::Options;
use crate::discovery::{Discovery, MulticastConfig};

/// RingChat chat client: talks to the leader of a RingChat ring and follows it when it moves.
///
/// Interactive when standard input is a terminal and none of --send, --json, --listen is
/// given; otherwise scripted: every --send TEXT (or else every line of standard input) is a
/// message, and the client exits once all are acknowledged (exit 1 if one was refused or
/// --timeout passed without an acknowledgement).
#[derive(Debug, Parser)]
#[command(name = "ringchat-client", version)]
pub struct Cli {
    /// Display name (1 to 32 characters). Asked for when interactive; scripts default to
    /// "user-" and the first 6 characters of the client id.
    #[arg(short, long, value_parser = parse_username)]
    pub username: Option<String>,

    /// A server's client port (HOST:PORT) to try, in order; repeatable.
    #[arg(short = 's', long = "server", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub servers: Vec<String>,

    /// How to find the leader [default: static with --server, else multicast].
    #[arg(long, value_enum)]
    pub discovery: Option<DiscoveryMode>,

    /// Send TEXT, wait until it is delivered; repeatable (scripted mode).
    #[arg(long = "send", value_name = "TEXT")]
    pub send: Vec<String>,

    /// Print every frame received from servers as one JSON line on stdout; human output
    /// goes to stderr.
    #[arg(long)]
    pub json: bool,

    /// Stay connected this long after sending, printing messages, then exit 0.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub listen: Option<Duration>,

    /// Multicast group of leader discovery.
    #[arg(long, value_name = "ADDR", default_value = "239.255.255.250")]
    pub multicast_group: Ipv4Addr,

    /// UDP port of leader discovery.
    #[arg(long, value_name = "PORT", default_value_t = 5000)]
    pub multicast_port: u16,

    /// Local IPv4 address whose interface sends the discovery query (0.0.0.0: the
    /// system's choice, as ringchatd's default; 127.0.0.1 keeps it on this host).
    #[arg(long, value_name = "IPV4", default_value = "0.0.0.0")]
    pub multicast_interface: Ipv4Addr,

    /// Cluster name; servers of other clusters do not answer.
    #[arg(long, value_name = "NAME", default_value = "ringchat")]
    pub cluster: String,

    /// File holding the cluster's `cluster.secret`: multicast answers without a valid MAC
    /// are then ignored, so a host without the key cannot pose as the leader.
    #[arg(long, value_name = "PATH")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Stable id of this client (1 to 64 characters) [default: a fresh random UUID].
    #[arg(long, value_name = "ID", value_parser = parse_client_id)]
    pub client_id: Option<String>,

    /// Most messages waiting for an acknowledgement; more input is refused (interactive)
    /// or waits (scripted).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending: u32,

    /// Scripted mode: give up (exit 1) after this long without progress: no leader found,
    /// or no acknowledgement while messages wait.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// The `--discovery` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryMode {
    /// Ask the multicast group who leads.
    Multicast,
    /// Try the --server addresses in turn.
    Static,
}

/// Everything the client runs with, defaults resolved.
#[derive(Debug)]
pub struct Settings {
    /// What the connection manager needs.
    pub options: Options,
    /// Interactive or scripted.
    pub mode: Mode,
}

/// How the client talks to its user.
#[derive(Debug)]
pub enum Mode {
    /// A terminal with line editing; `None` means "ask for the name".
    Interactive {
        /// `--username`.
        username: Option<String>,
    },
    /// Messages from `--send` or standard input.
    Scripted(Script),
}

/// What a scripted run does.
#[derive(Debug)]
pub struct Script {
    /// `--username`, or one made from the client id.
    pub username: String,
    /// Messages from `--send`; empty means "read standard input".
    pub send: Vec<String>,
    /// `--json`.
    pub json: bool,
    /// `--listen`.
    pub listen: Option<Duration>,
    /// `--timeout`.
    pub timeout: Duration,
}

impl Cli {
    /// Resolves the defaults; `stdin_is_terminal` picks the mode.
    pub fn settings(self, stdin_is_terminal: bool) -> Result<Settings, String> {
        let client_id = self
            .client_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let mode = self.discovery.unwrap_or(if self.servers.is_empty() {
            DiscoveryMode::Multicast
        } else {
            DiscoveryMode::Static
        });
        let discovery = match mode {
            DiscoveryMode::Static if self.servers.is_empty() => {
                return Err("--discovery static needs at least one --server HOST:PORT".into());
            }
            DiscoveryMode::Static => Discovery::Static(self.servers),
            DiscoveryMode::Multicast if !self.servers.is_empty() => {
                return Err("--server cannot be combined with --discovery multicast".into());
            }
            DiscoveryMode::Multicast => Discovery::Multicast(MulticastConfig {
                group: self.multicast_group,
                port: self.multicast_port,
                interface: self.multicast_interface,
                cluster: self.cluster,
                client_id: client_id.clone(),
                key: self
                    .cluster_secret_file
                    .as_deref()
                    .map(read_key)
                    .transpose()?,
            }),
        };
        if self.cluster_secret_file.is_some() && matches!(discovery, Discovery::Static(_)) {
            return Err(
                "--cluster-secret-file checks multicast answers: it needs --discovery multicast"
                    .into(),
            );
        }
        let interactive =
            stdin_is_terminal && self.send.is_empty() && !self.json && self.listen.is_none();
        let mode = if interactive {
            Mode::Interactive {
                username: self.username,
            }
        } else {
            Mode::Scripted(Script {
                username: self
                    .username
                    .unwrap_or_else(|| default_username(&client_id)),
                send: self.send,
                json: self.json,
                listen: self.listen,
                timeout: self.timeout,
            })
        };
        let options = Options {
            client_id,
            discovery,
            max_pending: self.max_pending as usize,
        };
        Ok(Settings { options, mode })
    }
}

/// The key in `--cluster-secret-file`.
fn read_key(path: &std::path::Path) -> Result<ringchat_proto::auth::ClusterKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--cluster-secret-file: cannot read {}: {e}", path.display()))?;
    ringchat_proto::auth::ClusterKey::from_file_text(&text)
        .map_err(|e| format!("--cluster-secret-file {}: {e}", path.display()))
}

/// `user-` and the first 6 characters of the client id, or `user` if that is no valid name.
fn default_username(client_id: &str) -> String {
    let name = format!("user-{}", client_id.chars().take(6).collect::<String>());
    if validate_username(&name).is_ok() {
        name
    } else {
        "user".into()
    }
}

fn parse_username(s: &str) -> Result<String, String> {
    validate_username(s).map(|()| s.to_owned())
}

fn parse_client_id(s: &str) -> Result<String, String> {
    let n = s.chars().count();
    if (1..=MAX_CLIENT_ID_CHARS).contains(&n) {
        Ok(s.to_owned())
    } else {
        Err(format!("must have 1 to {MAX_CLIENT_ID_CHARS} characters"))
    }
}

fn parse_host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err("expected HOST:PORT, e.g. 127.0.0.1:5101".into()),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, e.g. 2 or 0.5".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str], terminal: bool) -> Result<Settings, String> {
        let argv = std::iter::once("ringchat-client").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .settings(terminal)
    }

    /// The scripted settings of `args`; panics when they are interactive.
    fn script(args: &[&str], terminal: bool) -> Script {
        match settings(args, terminal).unwrap().mode {
            Mode::Scripted(script) => script,
            Mode::Interactive { .. } => panic!("{args:?} is interactive"),
        }
    }

    #[test]
    fn servers_imply_static_discovery() {
        let s = settings(&["-s", "127.0.0.1:5101", "--server", "h:5102"], false).unwrap();
        assert!(
            matches!(s.options.discovery, Discovery::Static(ref v) if v == &["127.0.0.1:5101", "h:5102"])
        );
        let s = settings(&[], false).unwrap();
        assert!(matches!(s.options.discovery, Discovery::Multicast(ref m)
            if m.group == Ipv4Addr::new(239, 255, 255, 250) && m.port == 5000 && m.cluster == "ringchat"));
        assert!(settings(&["--discovery", "static"], false).is_err());
        assert!(settings(&["--discovery", "multicast", "-s", "h:1"], false).is_err());
    }

    #[test]
    fn mode_follows_the_terminal_and_the_flags() {
        let s = settings(&["-u", "Alice"], true).unwrap();
        assert!(matches!(s.mode, Mode::Interactive { username: Some(ref u) } if u == "Alice"));
        assert!(matches!(
            settings(&[], true).unwrap().mode,
            Mode::Interactive { username: None }
        ));
        for args in [&["--send", "hi"][..], &["--json"], &["--listen", "0.5"]] {
            assert!(script(args, true).send.len() <= 1, "{args:?}");
        }
        let script = script(&["--listen", "0.5", "--timeout", "2"], false);
        assert_eq!(script.listen, Some(Duration::from_millis(500)));
        assert_eq!(script.timeout, Duration::from_secs(2));
        assert!(script.send.is_empty());
    }

    #[test]
    fn scripts_get_a_username_from_the_client_id() {
        let s = script(&["--client-id", "abcdef123", "--send", "x"], true);
        assert_eq!(s.username, "user-abcdef");
        assert_eq!(default_username("ab "), "user");
        let fresh = settings(&[], false).unwrap().options;
        assert_eq!(fresh.client_id.len(), 32);
        assert_eq!(fresh.max_pending, 1000);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["-u", " Alice"][..],
            &["-u", ""],
            &["-s", "nohost"],
            &["-s", "h:99999"],
            &["--client-id", ""],
            &["--max-pending", "0"],
            &["--listen", "-1"],
            &["--timeout", "soon"],
        ] {
            assert!(settings(args, false).is_err(), "{args:?}");
        }
    }
}
