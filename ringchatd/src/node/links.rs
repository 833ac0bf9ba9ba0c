//! Outbound ring links, one per server, keyed by address.

use std::collections::HashMap;

use bytes::Bytes;
use ringchat_proto::NodeId;
use ringchat_proto::frame::frame_json;
use ringchat_proto::ids::{server_sender_id, unix_timestamp};
use ringchat_proto::peer::{NodeInfo, PeerBody, PeerMessage};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::net::peer_link::{self, LinkConfig};
use crate::node::Event;

/// Frames queued for one peer before the link counts as broken.
const LINK_QUEUE: usize = 65_536;

struct Link {
    tx: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<()>,
    /// The peer's id, if known when the link started: only then are failures reported.
    id: Option<NodeId>,
}

/// The node task's outbound links. Messages go out on our own connection to the
/// receiver, never as a reply on the connection they came in on.
pub struct Links {
    me: NodeInfo,
    cluster: String,
    cfg: LinkConfig,
    events: mpsc::Sender<Event>,
    links: HashMap<(String, u16), Link>,
}

impl Links {
    pub fn new(
        me: NodeInfo,
        cluster: String,
        cfg: LinkConfig,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            me,
            cluster,
            cfg,
            events,
            links: HashMap::new(),
        }
    }

    /// Queues a message for the server at `address:port` (`id` when known, for failure
    /// reports).
    pub fn send(&mut self, id: Option<NodeId>, address: &str, port: u16, body: PeerBody) {
        let msg = PeerMessage {
            from: self.me.id,
            sender_id: server_sender_id(self.me.id),
            timestamp: unix_timestamp(),
            cluster: self.cluster.clone(),
            origin: Some(self.me.clone()),
            body,
        };
        let frame = match frame_json(&msg) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "Cannot encode a ring message.");
                return;
            }
        };
        let key = (address.to_string(), port);
        if id.is_some() && self.links.get(&key).is_some_and(|l| l.id.is_none()) {
            // Opened by a join probe before the peer's id was known: reopen it with the id,
            // so that its failure is reported.
            self.links.remove(&key);
        }
        // A link whose task ended (its peer was unreachable) is replaced once.
        for _ in 0..2 {
            let link = self.links.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                let task = tokio::spawn(peer_link::run(
                    key.0.clone(),
                    key.1,
                    id,
                    rx,
                    self.cfg.clone(),
                    self.events.clone(),
                ));
                Link { tx, task, id }
            });
            match link.tx.try_send(frame.clone()) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(peer = ?id, %address, port, "Ring link backlog is full; dropping the link.");
                    self.links.remove(&key);
                    if let Some(id) = id {
                        let _ = self.events.try_send(Event::PeerUnreachable(id));
                    }
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.links.remove(&key);
                }
            }
        }
    }

    /// Drops every link and waits (at most `grace`) until their tasks wrote what was
    /// queued: a goodbye must reach the ring before the process exits.
    pub async fn close_all(&mut self, grace: std::time::Duration) {
        let tasks: Vec<_> = self.links.drain().map(|(_, l)| l.task).collect();
        let _ = tokio::time::timeout(grace, futures::future::join_all(tasks)).await;
    }
}
