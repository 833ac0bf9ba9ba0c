//! A tiny in-test RingChat "cluster": a leader that stores and acknowledges everything at
//! once (with deduplication on client id + message id, as the protocol demands), and a
//! follower that redirects to it. Knobs make the leader refuse every k-th message, drop a
//! connection once, or answer far-behind `from_sequence`s with `reset`, so that the bench
//! tool's counting and paging can be checked on small runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ringchat_proto::ChatEntry;
use ringchat_proto::frame::{FrameCodec, frame_json};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

/// How the fake leader misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Refuse every k-th new message with `error BAD_FIELD` naming it.
    pub refuse_every: Option<u64>,
    /// Store the n-th new message, then close the connection without acking it (once).
    pub drop_at: Option<u64>,
    /// A `client_connect` whose `from_sequence` is further behind than this gets
    /// `reset: true` and only the newest 10 entries.
    pub max_catch_up: Option<u64>,
}

#[derive(Default)]
struct State {
    log: Vec<ChatEntry>,
    dedup: HashMap<(String, String), u64>,
    sessions: Vec<mpsc::UnboundedSender<Bytes>>,
    new_messages: u64,
    dropped: bool,
}

/// A running fake leader.
#[derive(Clone)]
pub struct FakeLeader {
    /// Its client address.
    pub addr: String,
    state: Arc<Mutex<State>>,
    knobs: Knobs,
}

fn frame(v: Value) -> Bytes {
    frame_json(&v).expect("json encodes")
}

impl FakeLeader {
    /// Starts a leader on 127.0.0.1:0.
    pub async fn start(knobs: Knobs) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let me = FakeLeader {
            addr,
            state: Arc::default(),
            knobs,
        };
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        });
        me
    }

    /// Entries stored so far.
    pub fn log(&self) -> Vec<ChatEntry> {
        self.state.lock().expect("lock").log.clone()
    }

    /// Appends entries as if other clients had sent them.
    pub fn seed(&self, client_id: &str, ids: &[String]) {
        let mut st = self.state.lock().expect("lock");
        for id in ids {
            let seq = st.log.len() as u64 + 1;
            st.log.push(entry(seq, client_id, id));
        }
    }

    async fn serve(self, stream: TcpStream) {
        let mut framed = Framed::new(stream, FrameCodec::new(65_536));
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        loop {
            tokio::select! {
                out = rx.recv() => {
                    let Some(out) = out else { return };
                    if out.is_empty() || framed.send(out).await.is_err() {
                        return;
                    }
                }
                inp = framed.next() => {
                    let Some(Ok(payload)) = inp else { return };
                    let Ok(req) = serde_json::from_slice::<Value>(&payload) else { return };
                    self.handle(&req, &tx);
                }
            }
        }
    }

    fn handle(&self, req: &Value, tx: &mpsc::UnboundedSender<Bytes>) {
        let mut st = self.state.lock().expect("lock");
        match req["msg_type"].as_str().unwrap_or_default() {
            "client_connect" => {
                let last = st.log.len() as u64;
                let (from, reset) = match req["from_sequence"].as_u64() {
                    Some(f)
                        if self
                            .knobs
                            .max_catch_up
                            .is_some_and(|m| last.saturating_sub(f) > m) =>
                    {
                        (last.saturating_sub(10), true)
                    }
                    Some(f) => (f.min(last), false),
                    None => (last.saturating_sub(100), false),
                };
                for f in history(&st.log, from, last, reset) {
                    let _ = tx.send(f);
                }
                st.sessions.push(tx.clone());
            }
            "history_request" => {
                let last = st.log.len() as u64;
                let from = req["from_sequence"].as_u64().unwrap_or(0).min(last);
                let limit = req["limit"].as_u64().unwrap_or(100).min(1000);
                let upto = (from + limit).min(last);
                for f in history(&st.log, from, upto, false) {
                    let _ = tx.send(f);
                }
            }
            "client_ping" => {
                let _ = tx.send(frame(json!({
                    "msg_type": "client_ping_ack", "sender_id": "Server 1", "timestamp": 1.0,
                    "leader_id": 1, "leader_address": "127.0.0.1", "leader_port": 0,
                    "is_available": true, "is_leader": true, "epoch": 1
                })));
            }
            "client_message" => {
                let client = req["client_id"].as_str().unwrap_or_default().to_string();
                let id = req["message_id"].as_str().unwrap_or_default().to_string();
                if let Some(&seq) = st.dedup.get(&(client.clone(), id.clone())) {
                    let _ = tx.send(delivered(&id, seq));
                    return;
                }
                st.new_messages += 1;
                let n = st.new_messages;
                if self.knobs.refuse_every.is_some_and(|k| n.is_multiple_of(k)) {
                    let _ = tx.send(frame(json!({
                        "msg_type": "error", "sender_id": "Server 1", "timestamp": 1.0,
                        "code": "BAD_FIELD", "message": "refused by the fake", "message_id": id
                    })));
                    return;
                }
                let seq = st.log.len() as u64 + 1;
                let e = entry(seq, &client, &id);
                st.log.push(e.clone());
                st.dedup.insert((client, id.clone()), seq);
                if self.knobs.drop_at == Some(n) && !st.dropped {
                    st.dropped = true;
                    // Stored but never acknowledged on this connection: close it.
                    let _ = tx.send(Bytes::new());
                    return;
                }
                let mut b = serde_json::to_value(&e).expect("entry encodes");
                b["msg_type"] = json!("chat_broadcast");
                b["sender_id"] = json!("Server 1");
                let bcast = frame(b);
                st.sessions.retain(|s| s.send(bcast.clone()).is_ok());
                let _ = tx.send(delivered(&id, seq));
            }
            _ => {}
        }
    }
}

fn entry(seq: u64, client: &str, id: &str) -> ChatEntry {
    ChatEntry {
        message_id: id.to_string(),
        sequence_number: seq,
        client_id: client.to_string(),
        username: "u".into(),
        content: "x".into(),
        timestamp: 1.0,
        delivered: true,
        epoch: 1,
    }
}

fn delivered(id: &str, seq: u64) -> Bytes {
    frame(json!({
        "msg_type": "message_delivered", "sender_id": "Server 1", "timestamp": 1.0,
        "message_id": id, "sequence_number": seq, "epoch": 1
    }))
}

/// Entries `(from, upto]` in frames of at most 100 entries (`more` on all but the last).
fn history(log: &[ChatEntry], from: u64, upto: u64, reset: bool) -> Vec<Bytes> {
    let all = &log[from as usize..upto as usize];
    let pages: Vec<&[ChatEntry]> = if all.is_empty() {
        vec![all]
    } else {
        all.chunks(100).collect()
    };
    let n = pages.len();
    let mut start = from;
    pages
        .into_iter()
        .enumerate()
        .map(|(i, page)| {
            let f = frame(json!({
                "msg_type": "history_response", "sender_id": "Server 1", "timestamp": 1.0,
                "messages": page, "from_sequence": start, "last_sequence": log.len(),
                "more": i + 1 < n, "reset": reset && i == 0
            }));
            start += page.len() as u64;
            f
        })
        .collect()
}

/// A follower, server 2: answers `client_connect` with `leader_info` naming `leader` (server
/// 1) and closes, and `client_ping` with a `client_ping_ack` naming the same leader.
pub async fn start_follower(leader: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (host, port) = leader.rsplit_once(':').expect("host:port");
    let view = |msg_type: &str| {
        frame(json!({
            "msg_type": msg_type, "sender_id": "Server 2", "timestamp": 1.0,
            "leader_id": 1, "leader_address": host,
            "leader_port": port.parse::<u16>().expect("port"),
            "is_available": true, "is_leader": false, "epoch": 1
        }))
    };
    let (info, ping_ack) = (view("leader_info"), view("client_ping_ack"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (info, ping_ack) = (info.clone(), ping_ack.clone());
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, FrameCodec::new(65_536));
                if let Some(Ok(req)) = framed.next().await {
                    let is_ping = serde_json::from_slice::<Value>(&req)
                        .is_ok_and(|v| v["msg_type"] == "client_ping");
                    let _ = framed.send(if is_ping { ping_ack } else { info }).await;
                }
            });
        }
    });
    addr
}
