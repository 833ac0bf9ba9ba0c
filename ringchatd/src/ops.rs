//! What operators touch: logs, metrics, the admin socket, signals, reloads.

pub mod admin;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod signals;
pub mod systemd;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::settings::Settings;

/// What the running server needs to change itself at runtime.
pub struct Controls {
    /// The log filter.
    pub log: logging::LogControl,
    /// Reads the configuration again (file, environment, the original flags).
    pub reload: Box<dyn Fn() -> anyhow::Result<Settings> + Send>,
    /// The chat text limit the client sessions check.
    pub max_text: Arc<AtomicUsize>,
}
