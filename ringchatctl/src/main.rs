//! `ringchatctl`: the admin CLI of ringchatd (see [`cli`] for the commands).
//!
//! It speaks to one daemon over its local admin socket ([`client`]). `elect`, `drain` and
//! `leave` wait for their outcome and report it ([`elect`], [`drain`]); the others print
//! the daemon's answer ([`commands`]), as text ([`render`], [`ring`]) or as one JSON object.
//!
//! `--json` prints one object per command, ids always as strings:
//! - `status`, `undrain`, `log-level`, `reload`: the daemon's answer as it is.
//! - `history`: `{ok, last_seq, entries: [...]}` with the newest `-n` entries.
//! - `ring`: `{ok, id, epoch, round, leader, members: [{position, id, address, port,
//!   client_port, role, state: alive|silent|unknown|unwatched, silence_ms, lag_entries,
//!   replication}]}`.
//! - `elect`: the daemon's `{ok, epoch}` (the round's epoch) plus `leader`,
//!   `leader_epoch`, `round`, `elapsed_ms`.
//! - `drain`: `{ok, id, was_leader, leader, epoch, round, clients_moved, elapsed_ms}`.
//! - `leave`: `{ok, id, left, drain (as above, null for a lone node), elapsed_ms}`.
//! - on failure: `{ok: false, error}` (and the reason on stderr).
//!
//! `leader` is always `{id, address, port, client_port}` or null.

mod cli;
mod client;
mod commands;
mod drain;
mod elect;
mod error;
mod render;
mod ring;
mod status;
mod wait;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let (stdout, code) = match commands::run(&args) {
        Ok(report) if args.json => (format!("{}\n", report.json), 0),
        Ok(report) => (report.text, 0),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ringchatctl: {e}");
            let out = if args.json {
                format!("{}\n", json!({"ok": false, "error": e.to_string()}))
            } else {
                String::new()
            };
            (out, e.exit_code())
        }
    };
    // A closed stdout (`| head`) must not turn into a panic; the exit code still tells.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    ExitCode::from(code)
}
