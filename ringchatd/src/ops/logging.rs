//! Structured logs on stderr (journald reads them there), as text or JSON lines, with a
//! level that can change at runtime (`ringchatctl log-level`, SIGHUP).

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::cli::LogFormat;

/// Changes the log filter of the running process.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    /// Applies a level or filter directive; a bad one changes nothing.
    pub fn set(&self, level: &str) -> anyhow::Result<()> {
        let filter = parse(level)?;
        self.handle
            .reload(filter)
            .map_err(|e| anyhow::anyhow!("cannot change the log level: {e}"))
    }
}

fn parse(level: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(level)
        .with_context(|| format!("log-level: {level:?} is not a level or filter"))
}

/// Installs the global subscriber. `level` is a level or a full filter directive.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<LogControl> {
    let (filter, handle) = reload::Layer::new(parse(level)?);
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(LogControl { handle })
}
