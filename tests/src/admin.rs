//! The daemon's admin socket: one JSON line in, one JSON line out.
//!
//! [`Status`] holds the fields of `{"cmd":"status"}` the tests look at (ids arrive as
//! strings and are parsed to integers); [`history`] pages through `{"cmd":"history"}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ringchat_proto::{ChatEntry, NodeId, Seq};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// Most entries the daemon returns for one `history` call.
const HISTORY_PAGE: usize = 10_000;

/// A node as the status names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeRef {
    /// Server id.
    #[serde(deserialize_with = "id")]
    pub id: NodeId,
    /// Ring address.
    pub address: String,
    /// Ring port.
    pub port: u16,
    /// Client port.
    pub client_port: u16,
}

/// A follower's replication state, as the leader reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Follower {
    /// Server id.
    #[serde(deserialize_with = "id")]
    pub id: NodeId,
    /// `replicating`, `syncing`, ...
    pub state: String,
    /// Newest sequence number the follower is known to hold.
    pub match_seq: Seq,
}

/// The answer to `{"cmd":"status"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// This server's id.
    #[serde(deserialize_with = "id")]
    pub id: NodeId,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// Whether it is the leader and takes clients.
    pub serving: bool,
    /// Current epoch.
    pub epoch: u64,
    /// The leader it knows of.
    pub leader: Option<NodeRef>,
    /// Next server in the ring.
    #[serde(deserialize_with = "opt_id")]
    pub successor: Option<NodeId>,
    /// Previous server in the ring.
    #[serde(deserialize_with = "opt_id")]
    pub predecessor: Option<NodeId>,
    /// The ring as this server sees it.
    pub members: Vec<NodeRef>,
    /// Newest stored sequence number.
    pub last_seq: Seq,
    /// Newest sequence number stored on every live server.
    pub commit_seq: Seq,
    /// Connected client sessions.
    pub clients: u64,
    /// Per-follower replication state (leader only).
    pub followers: Vec<Follower>,
}

impl Status {
    /// The leader's id, if one is known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader.as_ref().map(|l| l.id)
    }

    /// The ids of the ring members, ascending.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }

    /// A one-line summary for wait messages.
    pub fn summary(&self) -> String {
        format!(
            "[{} {} serving={} epoch={} leader={:?} members={:?} pred={:?} succ={:?} last_seq={}]",
            self.id,
            self.role,
            self.serving,
            self.epoch,
            self.leader_id(),
            self.member_ids(),
            self.predecessor,
            self.successor,
            self.last_seq
        )
    }
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NodeId>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// Sends one request and returns the answer, which must say `"ok": true`.
pub fn request(socket: &Path, req: &Value) -> Result<Value, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let limit = Some(Duration::from_secs(5));
    stream.set_read_timeout(limit).map_err(|e| e.to_string())?;
    stream.set_write_timeout(limit).map_err(|e| e.to_string())?;
    let mut line = req.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("admin write: {e}"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| format!("admin read: {e}"))?;
    let value: Value =
        serde_json::from_str(&answer).map_err(|e| format!("admin answer {answer:?}: {e}"))?;
    if value["ok"] != Value::Bool(true) {
        return Err(format!("admin refused {req}: {value}"));
    }
    Ok(value)
}

/// The daemon's status.
pub fn status(socket: &Path) -> Result<Status, String> {
    let value = request(socket, &json!({"cmd": "status"}))?;
    serde_json::from_value(value.clone()).map_err(|e| format!("status {value}: {e}"))
}

/// The daemon's whole history, in sequence order.
pub fn history(socket: &Path) -> Result<Vec<ChatEntry>, String> {
    let mut all: Vec<ChatEntry> = Vec::new();
    loop {
        let from = all.last().map_or(0, |e| e.sequence_number);
        let value = request(
            socket,
            &json!({"cmd": "history", "from": from, "limit": HISTORY_PAGE}),
        )?;
        let page: Vec<ChatEntry> = serde_json::from_value(value["entries"].clone())
            .map_err(|e| format!("history entries: {e}"))?;
        let last_seq = value["last_seq"].as_u64().unwrap_or(0);
        let done = page.is_empty() || page.last().map(|e| e.sequence_number) >= Some(last_seq);
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}
