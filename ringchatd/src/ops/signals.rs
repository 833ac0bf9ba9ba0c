//! Signals, via signal-hook on a plain thread: SIGTERM and SIGINT start a graceful leave;
//! a second SIGINT (or SIGTERM) exits at once.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio_util::sync::CancellationToken;

/// Starts watching for signals; the token is cancelled on the first one.
pub fn install() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let first = token.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen == 1 {
                    tracing::info!(
                        signal = sig,
                        "Shutting down gracefully (signal again to exit at once)."
                    );
                    first.cancel();
                } else {
                    tracing::warn!(signal = sig, "Second signal: exiting now.");
                    std::process::exit(130);
                }
            }
        })?;
    Ok(token)
}
