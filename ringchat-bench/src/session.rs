//! Client sessions on the leader: connect, follow `leader_info` redirects, read the
//! `history_response` that opens a session, and one-shot `client_ping`s.
//!
//! A follower answers `client_connect` with `leader_info` and closes; a server that knows
//! no leader (election running) says `is_available: false`. [`open`] follows the redirect
//! at once and otherwise tries the next server, pausing `retry_delay` after each round, until
//! `give_up_after` has passed. The retry delay is small (default 10 ms) so that a failover
//! measurement shows the cluster's reaction, not the client's back-off.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use ringchat_proto::frame::FrameCodec;
use ringchat_proto::limits::MAX_CLIENT_FRAME;
use ringchat_proto::server::{LeaderInfo, ServerMessage};
use ringchat_proto::{ChatEntry, NodeId, Seq};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_util::codec::Framed;

use crate::wire;

/// A framed client connection.
pub type Conn = Framed<TcpStream, FrameCodec>;

/// How to reach the leader.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Client ports of the servers, `HOST:PORT`.
    pub servers: Vec<String>,
    /// Limit for one TCP connect and for each answer.
    pub attempt_timeout: Duration,
    /// Pause after a round in which no server led.
    pub retry_delay: Duration,
    /// Give up after trying this long.
    pub give_up_after: Duration,
}

impl ConnectOptions {
    /// Defaults for `servers`: 1 s per attempt, 10 ms between rounds, 30 s in all.
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            attempt_timeout: Duration::from_secs(1),
            retry_delay: Duration::from_millis(10),
            give_up_after: Duration::from_secs(30),
        }
    }
}

/// Who we are in `client_connect`.
#[derive(Debug, Clone)]
pub struct Hello {
    /// `client_id`.
    pub client_id: String,
    /// `username`.
    pub username: String,
    /// `from_sequence`.
    pub from_sequence: Option<Seq>,
}

/// A session on the serving leader.
#[derive(Debug)]
pub struct Session {
    /// The framed connection.
    pub conn: Conn,
    /// The leader's client address we are connected to.
    pub addr: String,
    /// The leader's id, from its `history_response` `sender_id` or the redirect.
    pub leader_id: Option<NodeId>,
    /// When the last `history_response` frame arrived (the session is live from then on).
    pub started: Instant,
    /// The leader's newest sequence number when the session opened.
    pub last_sequence: Seq,
    /// Whether the leader told us to drop what we held.
    pub reset: bool,
    /// The history entries the leader sent on connect.
    pub history: Vec<ChatEntry>,
    /// Redirects followed and servers tried before this session opened.
    pub attempts: u32,
}

enum Attempt {
    Leader(Box<Session>),
    Redirect(LeaderInfo),
}

/// Opens a session on the leader, trying `hint` first (a leader named by `leader_info`).
pub async fn open(opts: &ConnectOptions, hello: &Hello, hint: Option<String>) -> Result<Session> {
    if opts.servers.is_empty() {
        bail!("no servers given");
    }
    let deadline = Instant::now() + opts.give_up_after;
    let mut hint = hint;
    let mut next = 0usize;
    let mut attempts = 0u32;
    let mut last_err = anyhow!("no server answered");
    loop {
        let (addr, from_hint) = match hint.take() {
            Some(a) => (a, true),
            None => {
                let a = opts.servers[next % opts.servers.len()].clone();
                next += 1;
                (a, false)
            }
        };
        attempts += 1;
        match try_one(&addr, hello, opts.attempt_timeout).await {
            Ok(Attempt::Leader(mut s)) => {
                s.attempts = attempts;
                return Ok(*s);
            }
            Ok(Attempt::Redirect(info)) => {
                let target = match (&info.leader_address, info.leader_port) {
                    (Some(a), Some(p)) if info.is_available => Some(format!("{a}:{p}")),
                    _ => None,
                };
                last_err = anyhow!(
                    "{addr} does not lead (leader {:?}, available {})",
                    info.leader_id,
                    info.is_available
                );
                // Follow a redirect once; a server pointing at itself is not ready yet.
                if let Some(t) = target.filter(|t| !from_hint && *t != addr) {
                    hint = Some(t);
                    continue;
                }
            }
            Err(e) => last_err = e,
        }
        if Instant::now() >= deadline {
            return Err(last_err.context(format!(
                "no leader found among {} within {:?}",
                opts.servers.join(","),
                opts.give_up_after
            )));
        }
        if from_hint || next.is_multiple_of(opts.servers.len()) {
            sleep(opts.retry_delay).await;
        }
    }
}

async fn try_one(addr: &str, hello: &Hello, limit: Duration) -> Result<Attempt> {
    let mut conn = dial(addr, limit).await?;
    let frame = wire::connect(&hello.client_id, &hello.username, hello.from_sequence);
    timeout(limit, conn.send(frame))
        .await
        .with_context(|| format!("{addr}: timed out sending client_connect"))?
        .with_context(|| format!("{addr}: sending client_connect"))?;
    let mut history = Vec::new();
    let mut reset = false;
    loop {
        let msg = next_message(&mut conn, addr, limit).await?;
        match msg {
            ServerMessage::HistoryResponse(h) => {
                reset |= h.reset;
                history.extend(h.messages);
                if !h.more {
                    return Ok(Attempt::Leader(Box::new(Session {
                        conn,
                        addr: addr.to_string(),
                        leader_id: wire::server_id(&h.sender_id),
                        started: Instant::now(),
                        last_sequence: h.last_sequence,
                        reset,
                        history,
                        attempts: 0,
                    })));
                }
            }
            ServerMessage::LeaderInfo(info) => return Ok(Attempt::Redirect(info)),
            ServerMessage::Error(e) => {
                bail!("{addr} refused client_connect: {}: {}", e.code, e.message)
            }
            // Nothing else belongs before the history; skip it.
            _ => {}
        }
    }
}

/// A TCP connection with `TCP_NODELAY` (a load generator must not wait for Nagle), within
/// `limit`.
pub async fn tcp(addr: &str, limit: Duration) -> Result<TcpStream> {
    let stream = timeout(limit, TcpStream::connect(addr))
        .await
        .with_context(|| format!("{addr}: connect timed out"))?
        .with_context(|| format!("{addr}: connect failed"))?;
    stream
        .set_nodelay(true)
        .with_context(|| format!("{addr}: setting TCP_NODELAY"))?;
    Ok(stream)
}

/// A TCP connection with `TCP_NODELAY`, framed for the client protocol.
pub async fn dial(addr: &str, limit: Duration) -> Result<Conn> {
    Ok(Framed::new(
        tcp(addr, limit).await?,
        FrameCodec::new(MAX_CLIENT_FRAME),
    ))
}

/// The next frame as a [`ServerMessage`], within `limit`.
pub async fn next_message(conn: &mut Conn, addr: &str, limit: Duration) -> Result<ServerMessage> {
    let frame = timeout(limit, conn.next())
        .await
        .with_context(|| format!("{addr}: no answer within {limit:?}"))?
        .ok_or_else(|| anyhow!("{addr}: connection closed"))?
        .with_context(|| format!("{addr}: reading a frame"))?;
    serde_json::from_slice(&frame).with_context(|| format!("{addr}: invalid frame from server"))
}

/// One `client_ping` on a fresh connection: the server's view of the leader.
pub async fn ping(addr: &str, client_id: &str, limit: Duration) -> Result<LeaderInfo> {
    let mut conn = dial(addr, limit).await?;
    timeout(limit, conn.send(wire::ping(client_id)))
        .await
        .with_context(|| format!("{addr}: timed out sending client_ping"))?
        .with_context(|| format!("{addr}: sending client_ping"))?;
    loop {
        match next_message(&mut conn, addr, limit).await? {
            ServerMessage::ClientPingAck(info) => return Ok(info),
            ServerMessage::Error(e) => {
                bail!("{addr} refused client_ping: {}: {}", e.code, e.message)
            }
            _ => {}
        }
    }
}
