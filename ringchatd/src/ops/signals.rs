//! Signals, via signal-hook on a plain thread: SIGTERM and SIGINT start a graceful leave;
//! a second one exits at once; SIGHUP asks for a configuration reload.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the signals tell the server.
pub struct SignalEvents {
    /// Cancelled on the first SIGTERM or SIGINT.
    pub shutdown: CancellationToken,
    /// One item per SIGHUP.
    pub reload: mpsc::UnboundedReceiver<()>,
}

/// Starts watching for signals.
pub fn install() -> std::io::Result<SignalEvents> {
    let token = CancellationToken::new();
    let (reload_tx, reload) = mpsc::unbounded_channel();
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let first = token.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    let _ = reload_tx.send(());
                    continue;
                }
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
    Ok(SignalEvents {
        shutdown: token,
        reload,
    })
}
