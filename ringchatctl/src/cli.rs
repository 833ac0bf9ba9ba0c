//! The `ringchatctl` command line (DESIGN.md, "Interfaces"; binding for scripts).
//!
//! `--socket`, `--json` and `--timeout` are global: they may stand before or after the
//! command. Usage errors exit 2 (clap's own code), as an unreachable daemon does.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Where ringchatd listens for admin requests unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/ringchat/admin.sock";

/// `ringchatctl`: inspect and steer a local ringchatd through its admin socket.
///
/// Exit codes: 0 ok; 1 the operation failed (the reason is printed); 2 the daemon is
/// unreachable, or the command line is wrong.
#[derive(Debug, Parser)]
#[command(name = "ringchatctl", version, about, rename_all = "kebab-case")]
pub struct Args {
    /// The daemon's admin socket.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "RINGCHAT_ADMIN__SOCKET",
        default_value = DEFAULT_SOCKET
    )]
    pub socket: PathBuf,
    /// Print one JSON object (stable fields, ids as strings) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long `elect`, `drain` and `leave` wait for each outcome, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Id, role, epoch, leader, neighbours, members, sequence numbers, clients, lag, uptime.
    Status,
    /// The ring as this node sees it, in ring order, with role, liveness and lag.
    Ring,
    /// The newest chat messages this node holds.
    History {
        /// How many messages.
        #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 20)]
        count: u64,
    },
    /// Force an election and wait until a leader is known in the new round.
    Elect,
    /// Stop taking clients, hand leadership and clients to another node; stay a replica.
    Drain,
    /// Take clients again after a drain.
    Undrain,
    /// Drain, then leave the ring; the daemon exits.
    Leave,
    /// Re-read the configuration file and apply what can change at runtime.
    Reload,
    /// Change the log level at runtime (e.g. `info`, `debug`, `ringchatd=trace`).
    LogLevel {
        /// The new level or filter.
        level: String,
    },
}

/// Parses a positive number of seconds (fractions allowed).
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err("must be above 0 and at most 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("ringchatctl").chain(args.iter().copied()))
    }

    #[test]
    fn global_options_go_anywhere() {
        let a = parse(&["elect", "--json", "--timeout", "2.5", "--socket", "/x.sock"]).unwrap();
        assert_eq!(a.command, Command::Elect);
        assert!(a.json);
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert_eq!(a.socket, PathBuf::from("/x.sock"));
        let b = parse(&["--json", "history", "-n", "5"]).unwrap();
        assert_eq!(b.command, Command::History { count: 5 });
        assert!(b.json);
    }

    #[test]
    fn defaults() {
        let a = parse(&["history"]).unwrap();
        assert_eq!(a.command, Command::History { count: 20 });
        assert_eq!(a.timeout, Duration::from_secs(10));
        assert!(!a.json);
    }

    #[test]
    fn log_level_takes_its_argument() {
        let a = parse(&["log-level", "debug"]).unwrap();
        assert_eq!(
            a.command,
            Command::LogLevel {
                level: "debug".into()
            }
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        for bad in [
            &["frobnicate"][..],
            &["log-level"],
            &["elect", "--timeout", "0"],
            &["elect", "--timeout", "soon"],
            &["history", "-n", "-3"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
