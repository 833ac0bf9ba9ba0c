//! The client sessions the node task writes to.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

/// Identifies one client connection for the lifetime of the process.
pub type ConnId = u64;

struct Client {
    outbox: mpsc::Sender<Bytes>,
    kick: CancellationToken,
    /// Set by `client_connect`: the client then receives broadcasts.
    session: Option<String>,
}

/// Connected clients and their bounded outboxes.
#[derive(Default)]
pub struct Clients {
    clients: HashMap<ConnId, Client>,
    slow_disconnects: u64,
}

impl Clients {
    pub fn open(&mut self, conn: ConnId, outbox: mpsc::Sender<Bytes>, kick: CancellationToken) {
        self.clients.insert(
            conn,
            Client {
                outbox,
                kick,
                session: None,
            },
        );
    }

    pub fn remove(&mut self, conn: ConnId) {
        self.clients.remove(&conn);
    }

    /// Queues a frame. A client whose queue is full reads too slowly: it is dropped.
    pub fn send(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.clients.get(&conn) else {
            return;
        };
        if let Err(e) = c.outbox.try_send(frame) {
            self.drop_client(conn, matches!(e, TrySendError::Full(_)));
        }
    }

    /// Forgets a client whose outbox refused a frame: `full` when it reads too slowly
    /// (then it is disconnected at once, so that it never slows the leader or the others),
    /// otherwise its connection is gone already.
    fn drop_client(&mut self, conn: ConnId, full: bool) {
        let Some(c) = self.clients.remove(&conn) else {
            return;
        };
        if full {
            tracing::warn!(conn, "Client reads too slowly; disconnecting it.");
            crate::ops::metrics::slow_client_disconnect();
            self.slow_disconnects += 1;
            c.kick.cancel();
        }
    }

    /// Queues a last frame and closes the connection once it is written.
    pub fn send_and_close(&mut self, conn: ConnId, frame: Bytes) {
        self.send(conn, frame);
        self.close(conn);
    }

    /// Closes the connection once what is queued for it is written.
    pub fn close(&mut self, conn: ConnId) {
        self.send(conn, Bytes::new());
        self.clients.remove(&conn);
    }

    /// Sends the same bytes to every client in a session. Runs once per message: it
    /// allocates only when a client has to go.
    pub fn broadcast(&mut self, frame: &Bytes) {
        let mut failed = Vec::new();
        for (conn, c) in &self.clients {
            if c.session.is_some()
                && let Err(e) = c.outbox.try_send(frame.clone())
            {
                failed.push((*conn, matches!(e, TrySendError::Full(_))));
            }
        }
        for (conn, full) in failed {
            self.drop_client(conn, full);
        }
    }

    pub fn start_session(&mut self, conn: ConnId, client_id: String) {
        if let Some(c) = self.clients.get_mut(&conn) {
            c.session = Some(client_id);
        }
    }

    pub fn in_session(&self, conn: ConnId) -> bool {
        self.clients.get(&conn).is_some_and(|c| c.session.is_some())
    }

    /// Every connection, in a session or not.
    pub fn all(&self) -> Vec<ConnId> {
        self.clients.keys().copied().collect()
    }

    pub fn sessions(&self) -> usize {
        self.clients
            .values()
            .filter(|c| c.session.is_some())
            .count()
    }

    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects
    }
}
