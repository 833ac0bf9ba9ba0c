//! Continuous chat load for the chaos tests: several clients, each on a thread of its own
//! inside a client host's network namespace, each sending numbered messages with unique
//! `message_id`s and following the leader through every failure.
//!
//! A client keeps a window of messages in flight. When its connection breaks, stalls, or
//! the server says the leadership moved, it reconnects (to the leader it was told of,
//! else to every server in turn, highest id first) with `from_sequence` set to the last
//! sequence number it saw, and resends every unacknowledged message with the same
//! `message_id`: the protocol's deduplication must store each once. It records every ack
//! (`message_id` -> `sequence_number`, epoch, the server that gave it) and, per connection,
//! every sequence number it received in history and broadcasts, for the invariant checker
//! ([`crate::invariants`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use ringchat_proto::limits::MAX_CLIENT_FRAME;
use ringchat_proto::server::ServerMessage;
use ringchat_proto::{NodeId, Seq};

use crate::lock;
use crate::wire::{chat_request, connect_request, frame};

/// Limit for opening a TCP connection to a server (a cut-off server never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a client waits for the first frame after `client_connect`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// With messages in flight and nothing received for this long, the connection is treated
/// as dead (a cut or frozen leader keeps TCP open) and the client reconnects.
const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Granularity of the read loop.
const READ_SLICE: Duration = Duration::from_millis(20);
/// Pause between two rounds over all servers when none took the client.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How the load is shaped.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Number of clients (spread over the client hosts).
    pub clients: usize,
    /// Messages each client keeps in flight at most.
    pub window: usize,
    /// Least time between two new messages of one client.
    pub pace: Duration,
    /// Messages each client sends in all (`None`: until stopped).
    pub limit: Option<usize>,
    /// Prefix of the client ids (unique per scenario, so runs never share ids).
    pub prefix: String,
}

/// A server a client may connect to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Server id.
    pub node: NodeId,
    /// Its client address.
    pub addr: SocketAddr,
}

/// One `message_delivered` a client got.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The sender's client id.
    pub client_id: String,
    /// The message id.
    pub message_id: String,
    /// The acknowledged sequence number.
    pub seq: Seq,
    /// The epoch the ack named.
    pub epoch: u64,
    /// The server that sent the ack.
    pub node: NodeId,
    /// When it arrived.
    pub at: Instant,
}

/// What a client received during one session (one `client_connect` on one TCP connection).
#[derive(Debug, Clone)]
pub struct Session {
    /// The client's id.
    pub client_id: String,
    /// The server.
    pub node: NodeId,
    /// The `from_sequence` it connected with.
    pub from_sequence: Option<Seq>,
    /// Whether the history answer said `reset: true`.
    pub reset: bool,
    /// Sequence numbers in the order they arrived: the connect history, then broadcasts.
    pub seqs: Vec<Seq>,
    /// How many of `seqs` came in the connect history.
    pub history_len: usize,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct LoadLog {
    /// Every ack, in arrival order per client.
    pub acks: Vec<Ack>,
    /// Every session.
    pub sessions: Vec<Session>,
    /// Messages sent for the first time.
    pub sent: usize,
    /// Messages still unacknowledged when the clients stopped.
    pub unacked: usize,
    /// Acks of one message with two different sequence numbers, described.
    pub conflicting_acks: Vec<String>,
}

impl LoadLog {
    /// Adds what another load run saw (an earlier phase of the same scenario).
    pub fn absorb(&mut self, other: LoadLog) {
        self.acks.extend(other.acks);
        self.sessions.extend(other.sessions);
        self.sent += other.sent;
        self.unacked += other.unacked;
        self.conflicting_acks.extend(other.conflicting_acks);
    }
}

/// Running load clients; [`Load::finish`] stops them.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<LoadLog>>,
    threads: Vec<JoinHandle<()>>,
    /// Deadline for the clients to get their last messages acked after `stop`.
    drain: Arc<Mutex<Option<Instant>>>,
}

impl Load {
    /// Starts `spec.clients` clients, client `i` inside namespace `netns[i % netns.len()]`,
    /// knowing the servers `endpoints`.
    pub fn start(spec: &LoadSpec, netns: &[String], endpoints: &[Endpoint]) -> Load {
        assert!(!netns.is_empty(), "load clients need a client namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(LoadLog::default()));
        let drain = Arc::new(Mutex::new(None));
        let mut endpoints = endpoints.to_vec();
        endpoints.sort_by_key(|e| std::cmp::Reverse(e.node));
        let threads = (0..spec.clients)
            .map(|i| {
                let client = Client {
                    id: format!("{}-{i}", spec.prefix),
                    netns: PathBuf::from("/run/netns").join(&netns[i % netns.len()]),
                    endpoints: endpoints.clone(),
                    spec: spec.clone(),
                    stop: Arc::clone(&stop),
                    drain: Arc::clone(&drain),
                    log: Arc::clone(&log),
                };
                std::thread::spawn(move || client.run())
            })
            .collect();
        Load {
            stop,
            log,
            threads,
            drain,
        }
    }

    /// Acks received so far.
    pub fn acked(&self) -> usize {
        lock(&self.log).acks.len()
    }

    /// Acks given by the servers `nodes` since `since`.
    pub fn acks_from(&self, nodes: &[NodeId], since: Instant) -> usize {
        lock(&self.log)
            .acks
            .iter()
            .filter(|a| a.at >= since && nodes.contains(&a.node))
            .count()
    }

    /// When the first ack after `since` arrived.
    pub fn first_ack_after(&self, since: Instant) -> Option<Instant> {
        lock(&self.log)
            .acks
            .iter()
            .map(|a| a.at)
            .filter(|at| *at > since)
            .min()
    }

    /// Stops sending new messages, gives the clients up to `drain` to get the ones in
    /// flight acked, and returns what they saw.
    pub fn finish(mut self, drain: Duration) -> LoadLog {
        *lock(&self.drain) = Some(Instant::now() + drain);
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                panic!("a load client thread panicked");
            }
        }
        std::mem::take(&mut *lock(&self.log))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        *lock(&self.drain) = Some(Instant::now());
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One load client (runs on its own thread).
struct Client {
    id: String,
    netns: PathBuf,
    endpoints: Vec<Endpoint>,
    spec: LoadSpec,
    stop: Arc<AtomicBool>,
    drain: Arc<Mutex<Option<Instant>>>,
    log: Arc<Mutex<LoadLog>>,
}

/// A client's messages: the next counter, and those not acknowledged yet.
struct Outbox {
    next: u64,
    /// counter -> message id, oldest first (resent in this order).
    pending: BTreeMap<u64, String>,
    /// message id -> acknowledged sequence number.
    acked: BTreeMap<String, Seq>,
    last_sent: Option<Instant>,
}

/// Why a session ended.
enum End {
    /// Reconnect (to this server first, if named).
    Reconnect(Option<SocketAddr>),
    /// Stopped, nothing left in flight (or the drain deadline passed).
    Done,
}

impl Client {
    fn run(self) {
        let entered = File::open(&self.netns)
            .map_err(|e| e.to_string())
            .and_then(|f| setns(f, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string()));
        if let Err(e) = entered {
            panic!(
                "load client {}: cannot enter {}: {e}",
                self.id,
                self.netns.display()
            );
        }
        let mut out = Outbox {
            next: 1,
            pending: BTreeMap::new(),
            acked: BTreeMap::new(),
            last_sent: None,
        };
        let mut last_seq: Option<Seq> = None;
        let mut preferred: Option<SocketAddr> = None;
        loop {
            if self.finished(&out) {
                break;
            }
            let Some((conn, session)) = self.connect(preferred.take(), last_seq) else {
                std::thread::sleep(RETRY_PAUSE);
                continue;
            };
            let mut session = session;
            let end = self.serve(conn, &mut session, &mut out, &mut last_seq);
            lock(&self.log).sessions.push(session);
            match end {
                End::Done => break,
                End::Reconnect(next) => preferred = next,
            }
        }
        lock(&self.log).unacked += out.pending.len();
    }

    /// Whether the client should stop: stopped and nothing in flight, or past the drain
    /// deadline.
    fn finished(&self, out: &Outbox) -> bool {
        if !self.stop.load(Ordering::SeqCst) {
            return false;
        }
        out.pending.is_empty() || lock(&self.drain).is_some_and(|d| Instant::now() >= d)
    }

    /// Opens a session on the leader: `first`, then every server in turn. `None` if none
    /// took the client this round.
    fn connect(&self, first: Option<SocketAddr>, from: Option<Seq>) -> Option<(Conn, Session)> {
        let mut candidates: Vec<SocketAddr> = first.into_iter().collect();
        candidates.extend(self.endpoints.iter().map(|e| e.addr));
        let mut tried = Vec::new();
        let mut i = 0;
        while i < candidates.len() {
            let addr = candidates[i];
            i += 1;
            if tried.contains(&addr) {
                continue;
            }
            tried.push(addr);
            match self.handshake(addr, from) {
                Handshake::Open(conn, session) => return Some((conn, session)),
                Handshake::Redirect(leader) => {
                    // Try the named leader next.
                    if !tried.contains(&leader) {
                        candidates.insert(i, leader);
                    }
                }
                Handshake::Failed => {}
            }
            if self.finished_early() {
                return None;
            }
        }
        None
    }

    /// Past the drain deadline: stop trying.
    fn finished_early(&self) -> bool {
        lock(&self.drain).is_some_and(|d| Instant::now() >= d)
    }

    fn node_of(&self, addr: SocketAddr) -> NodeId {
        self.endpoints
            .iter()
            .find(|e| e.addr == addr)
            .map_or(0, |e| e.node)
    }

    fn handshake(&self, addr: SocketAddr, from: Option<Seq>) -> Handshake {
        let Ok(stream) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
            return Handshake::Failed;
        };
        let mut conn = Conn::new(stream);
        let hello = connect_request(&self.id, &self.id, from);
        if conn.send(&hello).is_err() {
            return Handshake::Failed;
        }
        let mut session = Session {
            client_id: self.id.clone(),
            node: self.node_of(addr),
            from_sequence: from,
            reset: false,
            seqs: Vec::new(),
            history_len: 0,
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            match conn.next(deadline) {
                Ok(Some(ServerMessage::HistoryResponse(page))) => {
                    session.reset |= page.reset;
                    session
                        .seqs
                        .extend(page.messages.iter().map(|e| e.sequence_number));
                    if !page.more {
                        session.history_len = session.seqs.len();
                        return Handshake::Open(conn, session);
                    }
                }
                Ok(Some(ServerMessage::LeaderInfo(info))) => {
                    let leader = match (info.leader_address, info.leader_port) {
                        (Some(a), Some(p)) if info.is_available => {
                            format!("{a}:{p}").parse::<SocketAddr>().ok()
                        }
                        _ => None,
                    };
                    return match leader {
                        Some(l) if l != addr => Handshake::Redirect(l),
                        _ => Handshake::Failed,
                    };
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Handshake::Failed,
            }
        }
    }

    /// Runs one session: resends what is in flight, then sends and reads until the
    /// connection ends or the client is done.
    fn serve(
        &self,
        mut conn: Conn,
        session: &mut Session,
        out: &mut Outbox,
        last_seq: &mut Option<Seq>,
    ) -> End {
        if let Some(&s) = session.seqs.last() {
            *last_seq = Some(s);
        }
        for (n, id) in &out.pending {
            if conn.send(&self.message(*n, id)).is_err() {
                return End::Reconnect(None);
            }
        }
        let mut last_heard = Instant::now();
        loop {
            if self.finished(out) {
                return End::Done;
            }
            if let Err(()) = self.send_new(&mut conn, out) {
                return End::Reconnect(None);
            }
            let msg = match conn.next(Instant::now() + READ_SLICE) {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if !out.pending.is_empty() && last_heard.elapsed() > STALL_TIMEOUT {
                        return End::Reconnect(None);
                    }
                    continue;
                }
                Err(()) => return End::Reconnect(None),
            };
            last_heard = Instant::now();
            match msg {
                ServerMessage::ChatBroadcast(b) => {
                    session.seqs.push(b.entry.sequence_number);
                    *last_seq = Some(b.entry.sequence_number);
                }
                ServerMessage::MessageDelivered(d) => self.record_ack(session.node, d, out),
                ServerMessage::LeaderInfo(info) => {
                    let next = match (info.leader_address, info.leader_port) {
                        (Some(a), Some(p)) => format!("{a}:{p}").parse().ok(),
                        _ => None,
                    };
                    return End::Reconnect(next);
                }
                ServerMessage::Error(_) => return End::Reconnect(None),
                ServerMessage::HistoryResponse(_) | ServerMessage::ClientPingAck(_) => {}
            }
        }
    }

    /// Sends the next new message if the window, the pace and the limit allow.
    fn send_new(&self, conn: &mut Conn, out: &mut Outbox) -> Result<(), ()> {
        if self.stop.load(Ordering::SeqCst)
            || out.pending.len() >= self.spec.window
            || self.spec.limit.is_some_and(|l| out.next > l as u64)
            || out.last_sent.is_some_and(|t| t.elapsed() < self.spec.pace)
        {
            return Ok(());
        }
        let n = out.next;
        out.next += 1;
        let id = format!("{}:{n}", self.id);
        out.pending.insert(n, id.clone());
        out.last_sent = Some(Instant::now());
        lock(&self.log).sent += 1;
        conn.send(&self.message(n, &id)).map_err(|_| ())
    }

    fn message(&self, n: u64, id: &str) -> serde_json::Value {
        chat_request(&self.id, &self.id, &format!("load {n}"), id)
    }

    fn record_ack(
        &self,
        node: NodeId,
        d: ringchat_proto::server::MessageDelivered,
        out: &mut Outbox,
    ) {
        let mut log = lock(&self.log);
        if let Some(&prev) = out.acked.get(&d.message_id) {
            if prev != d.sequence_number {
                log.conflicting_acks.push(format!(
                    "{} acked at {prev}, then at {} (node {node}, epoch {})",
                    d.message_id, d.sequence_number, d.epoch
                ));
            }
            return;
        }
        let Some(n) = out
            .pending
            .iter()
            .find(|(_, id)| **id == d.message_id)
            .map(|(n, _)| *n)
        else {
            return;
        };
        out.pending.remove(&n);
        out.acked.insert(d.message_id.clone(), d.sequence_number);
        log.acks.push(Ack {
            client_id: self.id.clone(),
            message_id: d.message_id,
            seq: d.sequence_number,
            epoch: d.epoch,
            node,
            at: Instant::now(),
        });
    }
}

enum Handshake {
    Open(Conn, Session),
    Redirect(SocketAddr),
    Failed,
}

/// A client connection with a receive buffer, so reads can time out mid-frame without
/// losing the framing.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(STALL_TIMEOUT));
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, value: &serde_json::Value) -> std::io::Result<()> {
        self.stream.write_all(&frame(value.to_string().as_bytes()))
    }

    /// The next server message, waiting until `deadline`: `Ok(None)` if none arrived by
    /// then, `Err` if the connection closed or broke the protocol.
    fn next(&mut self, deadline: Instant) -> Result<Option<ServerMessage>, ()> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len == 0 || len > MAX_CLIENT_FRAME {
                    return Err(());
                }
                if self.buf.len() >= 4 + len {
                    let payload: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return serde_json::from_slice(&payload).map(Some).map_err(|_| ());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|_| ())?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }
}
