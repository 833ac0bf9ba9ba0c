//! `ringchatd`: parses flags, sets up logging and signals, runs the server.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use clap::Parser;
use ringchatd::cli::Args;
use ringchatd::ops::{Controls, logging, signals};
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
    let log = match logging::init(settings.log_format, &settings.log_level) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("ringchatd: {e:#}");
            return ExitCode::from(2);
        }
    };
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
    let controls = Controls {
        log,
        max_text: Arc::new(AtomicUsize::new(settings.max_content_chars)),
        reload: Box::new(move || Settings::load(&args)),
    };
    runtime.block_on(async {
        let signals = match signals::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "Cannot install signal handlers.");
                return ExitCode::FAILURE;
            }
        };
        match server::run(settings, signals, controls).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "Server failed.");
                ExitCode::FAILURE
            }
        }
    })
}
