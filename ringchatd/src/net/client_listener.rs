//! The client port: accepts chat clients (capped) and runs a session for each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::client_session::{self, SessionConfig};
use crate::node::Event;

/// Accepts clients until `shutdown`.
pub async fn run(
    listener: TcpListener,
    cfg: SessionConfig,
    max_clients: usize,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_clients));
    let next_id = AtomicU64::new(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Client accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "Client limit reached; refusing a connection.");
            crate::ops::metrics::client_connection("rejected_limit");
            continue;
        };
        let conn = next_id.fetch_add(1, Ordering::Relaxed);
        let events = events.clone();
        let cfg = cfg.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            client_session::serve(stream, conn, cfg, events, shutdown).await;
            drop(permit);
        });
    }
}
