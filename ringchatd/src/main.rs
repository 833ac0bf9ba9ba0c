//! `ringchatd`: parses flags, sets up logging and signals, runs the server.

use std::process::ExitCode;

use clap::Parser;
use ringchatd::cli::Args;
use ringchatd::ops::{logging, signals};
use ringchatd::server;
use ringchatd::settings::Settings;

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringchatd: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(settings.log_format, &settings.log_level) {
        eprintln!("ringchatd: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringchatd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = match signals::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "Cannot install signal handlers.");
                return ExitCode::FAILURE;
            }
        };
        match server::run(settings, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "Server failed.");
                ExitCode::FAILURE
            }
        }
    })
}
