//! systemd integration (`Type=notify`): READY=1 once the server listens and has joined a
//! ring (or after a bounded wait, so a lone first server never hits the start timeout),
//! STATUS= with role and leader, STOPPING=1 on leave, WATCHDOG=1 from the node task.
//! Outside systemd (no NOTIFY_SOCKET) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::node::NodeView;

/// READY=1 is sent at the latest after this long, joined or not.
const READY_WAIT: Duration = Duration::from_secs(5);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed.");
    }
}

fn describe(view: &NodeView) -> String {
    let leader = view
        .leader
        .as_ref()
        .map_or_else(|| "none".to_string(), |l| l.id.to_string());
    format!(
        "{}{}, leader {leader}, epoch {}, {} in ring",
        view.role.as_str(),
        if view.draining { " (drained)" } else { "" },
        view.epoch,
        view.members.len()
    )
}

/// Tells systemd we are ready, then keeps STATUS= current, until `shutdown`.
pub async fn report(mut view: watch::Receiver<NodeView>, shutdown: CancellationToken) {
    let joined = tokio::time::timeout(READY_WAIT, view.wait_for(|v| v.leader.is_some()))
        .await
        .is_ok_and(|r| r.is_ok());
    if !joined {
        tracing::warn!("No leader after {READY_WAIT:?}; reporting ready anyway.");
    }
    let status = describe(&view.borrow_and_update());
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
        let status = describe(&view.borrow_and_update());
        send(&[NotifyState::Status(&status)]);
    }
}

/// The server begins to leave.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("leaving the ring"),
    ]);
}

/// How often the event loop must say it lives (half of `WatchdogSec`), if systemd asks.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// The event loop lives.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
