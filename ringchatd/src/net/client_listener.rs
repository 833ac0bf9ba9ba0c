//! The client port: accepts chat clients (capped) and runs a session for each.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::accept::accept_loop;
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
    let next_id = AtomicU64::new(1);
    let stop = shutdown.clone();
    accept_loop(
        listener,
        "client",
        max_clients,
        shutdown,
        |_| crate::ops::metrics::client_connection("rejected_limit"),
        move |stream, _| {
            let conn = next_id.fetch_add(1, Ordering::Relaxed);
            client_session::serve(stream, conn, cfg.clone(), events.clone(), stop.clone())
        },
    )
    .await;
}
