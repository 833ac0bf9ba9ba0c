//! `ringchat-bench` binary: parses the command line and runs one mode (see the library).

use std::process::ExitCode;

use clap::Parser;
use ringchat_bench::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        // The run finished, and its report says what failed.
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ringchat-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
