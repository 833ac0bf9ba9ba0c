//! What operators touch: logs, the admin socket, signals.

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod signals;
