//! The accept loop both TCP listeners share: a bounded number of connections, each served
//! on its own task, a refused one logged, and a failing `accept` never a busy loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Accepts connections until `shutdown`, at most `max` at once, serving each with `serve`;
/// `refused` is told of each connection turned away at the limit.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    max: usize,
    shutdown: CancellationToken,
    refused: impl Fn(SocketAddr),
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, listener = what, "Connection limit reached; refusing one.");
            refused(addr);
            continue;
        };
        let connection = serve(stream, addr);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}
