//! `ringchat-client`: the RingChat chat client. It finds the leader of a RingChat ring,
//! follows it across failovers, resends what was not acknowledged, and shows every message
//! once and in the global order. See `ringchat-client --help` and PROTOCOL.md.

mod backoff;
mod cli;
mod connection;
mod discovery;
mod interactive;
mod pending;
mod render;
mod scripted;
mod sequence;
mod session;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Mode};

fn main() -> ExitCode {
    let settings = match Cli::parse().settings(std::io::stdin().is_terminal()) {
        Ok(settings) => settings,
        Err(why) => Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let code = match settings.mode {
        Mode::Scripted(script) => runtime.block_on(async {
            let (client, events, manager) =
                connection::spawn(settings.options, script.username.clone(), script.json);
            scripted::run(script, client, events, manager).await
        }),
        Mode::Interactive { username } => {
            match interactive::run(&runtime, settings.options, username) {
                Ok(code) => code,
                Err(e) => fail(&e),
            }
        }
    };
    // A blocked read of standard input must not hold the exit.
    runtime.shutdown_background();
    code
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("ringchat-client: {e:#}");
    ExitCode::FAILURE
}
