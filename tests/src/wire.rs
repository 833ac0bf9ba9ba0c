//! A small blocking client of the client protocol (PROTOCOL.md), for precise assertions.
//!
//! It writes whatever the test asks (whole frames, raw bytes, broken frames) and reads
//! frames exactly: a 4-byte big-endian length, then that many bytes. A frame the server
//! sends that breaks the protocol's own limits (empty, over 64 KiB, not a known
//! server message) fails the test.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ringchat_proto::limits::MAX_CLIENT_FRAME;
use ringchat_proto::server::{ErrorMessage, HistoryResponse, MessageDelivered, ServerMessage};
use ringchat_proto::{ChatEntry, ErrorCode, Seq};
use serde_json::{Value, json};

use crate::wait::SHORT;

/// `payload` with its 4-byte big-endian length prefix.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A `client_message` request object.
pub fn chat_request(client_id: &str, username: &str, content: &str, message_id: &str) -> Value {
    json!({
        "msg_type": "client_message",
        "sender_id": client_id,
        "timestamp": 0.0,
        "client_id": client_id,
        "username": username,
        "content": content,
        "message_id": message_id,
    })
}

/// A `client_connect` request object.
pub fn connect_request(client_id: &str, username: &str, from_sequence: Option<Seq>) -> Value {
    let mut req = json!({
        "msg_type": "client_connect",
        "client_id": client_id,
        "username": username,
    });
    if let Some(seq) = from_sequence {
        req["from_sequence"] = json!(seq);
    }
    req
}

/// A `client_ping` request object.
pub fn ping_request(client_id: &str) -> Value {
    json!({"msg_type": "client_ping", "client_id": client_id})
}

/// A client that chats on `addr` (one message every 20 ms, each acked before the next)
/// until `stop`, from inside network namespace `netns` if one is given; returns how many
/// messages were acked. It panics, failing the test when joined, if an ack takes longer
/// than the harness's timeout: the "everyone else keeps being served" half of a hostile
/// or abusive test.
pub fn steady_chatter(
    addr: String,
    stop: Arc<AtomicBool>,
    netns: Option<String>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            crate::netns::enter(&ns).unwrap_or_else(|e| panic!("{e}"));
        }
        let (mut c, _) = WireClient::session(&addr, "steady", None);
        let mut acked = 0;
        while !stop.load(Ordering::Relaxed) {
            c.chat(&format!("steady {acked}"));
            acked += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        acked
    })
}

/// One TCP connection to a server's client port.
#[derive(Debug)]
pub struct WireClient {
    stream: TcpStream,
    /// This client's `client_id`.
    pub client_id: String,
    /// This client's `username`.
    pub username: String,
    largest_frame: usize,
}

impl WireClient {
    /// Opens a connection to `addr` and sends nothing yet.
    pub fn open(addr: &str, client_id: &str) -> WireClient {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(SHORT))
            .expect("write timeout");
        WireClient {
            stream,
            client_id: client_id.to_string(),
            username: client_id.chars().take(32).collect(),
            largest_frame: 0,
        }
    }

    /// Opens a session on the leader at `addr` (`client_connect`, optionally with
    /// `from_sequence`) and returns it with the history it got on connect, checking the
    /// history frames: `more` on all but the last, ascending sequence numbers.
    pub fn session(
        addr: &str,
        client_id: &str,
        from_sequence: Option<Seq>,
    ) -> (WireClient, Vec<ChatEntry>) {
        let mut c = Self::open(addr, client_id);
        c.send(&connect_request(
            client_id,
            &c.username.clone(),
            from_sequence,
        ));
        let pages = c.recv_history();
        let entries = pages.into_iter().flat_map(|p| p.messages).collect();
        (c, entries)
    }

    /// Writes `bytes` as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `value` as one frame; panics if the write fails.
    pub fn send(&mut self, value: &Value) {
        let bytes = frame(value.to_string().as_bytes());
        self.write_raw(&bytes)
            .unwrap_or_else(|e| panic!("send {value}: {e}"));
    }

    /// Sends a `client_message` with a fresh message id (`<client_id>:<n>`, `n` unique in
    /// the test process, so reconnecting with the same `client_id` never repeats an id by
    /// accident) and returns that id.
    pub fn send_chat(&mut self, content: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = format!(
            "{}:{}",
            self.client_id,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let req = chat_request(&self.client_id, &self.username, content, &id);
        self.send(&req);
        id
    }

    /// Sends a message and waits for its `message_delivered`; returns its sequence number.
    /// Other frames (broadcasts) that arrive meanwhile are dropped.
    pub fn chat(&mut self, content: &str) -> Seq {
        self.chat_with_id(content).1
    }

    /// [`WireClient::chat`], returning the message id too.
    pub fn chat_with_id(&mut self, content: &str) -> (String, Seq) {
        let id = self.send_chat(content);
        match self
            .recv_until(|m| matches!(m, ServerMessage::MessageDelivered(d) if d.message_id == id))
        {
            ServerMessage::MessageDelivered(d) => (id, d.sequence_number),
            _ => unreachable!(),
        }
    }

    /// Reads one frame's payload, waiting up to `timeout`. `Ok(None)`: the server closed
    /// the connection (cleanly or with a reset) before a new frame began.
    pub fn read_frame(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < header.len() {
            match self.stream.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && got == 0 => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > MAX_CLIENT_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server sent a frame of {len} bytes"),
            ));
        }
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload)?;
        self.largest_frame = self.largest_frame.max(len);
        Ok(Some(payload))
    }

    /// The largest frame payload received so far, in bytes.
    pub fn largest_frame(&self) -> usize {
        self.largest_frame
    }

    /// The next message; panics on timeout, close, or a frame that is no server message.
    pub fn recv(&mut self) -> ServerMessage {
        let payload = self
            .read_frame(SHORT)
            .unwrap_or_else(|e| panic!("client {}: reading a frame: {e}", self.client_id))
            .unwrap_or_else(|| {
                panic!(
                    "client {}: the server closed the connection",
                    self.client_id
                )
            });
        parse(&payload)
    }

    /// Reads messages until one matches `pred`, and returns it (the others are dropped).
    pub fn recv_until(&mut self, mut pred: impl FnMut(&ServerMessage) -> bool) -> ServerMessage {
        loop {
            let msg = self.recv();
            if pred(&msg) {
                return msg;
            }
        }
    }

    /// Reads the frames of one history answer (up to the one with `more: false`), checking
    /// that its entries ascend without gaps.
    pub fn recv_history(&mut self) -> Vec<HistoryResponse> {
        let mut pages: Vec<HistoryResponse> = Vec::new();
        loop {
            match self.recv() {
                ServerMessage::HistoryResponse(page) => {
                    let more = page.more;
                    pages.push(page);
                    if !more {
                        break;
                    }
                }
                other => panic!("expected history_response, got {other:?}"),
            }
        }
        let seqs: Vec<Seq> = pages
            .iter()
            .flat_map(|p| p.messages.iter().map(|e| e.sequence_number))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "history entries are not consecutive: {seqs:?}"
        );
        pages
    }

    /// Reads until `broadcasts` chat broadcasts and `acks` deliveries arrived, and returns
    /// them; checks that each delivery names the sequence number its broadcast had.
    pub fn recv_chat(
        &mut self,
        broadcasts: usize,
        acks: usize,
    ) -> (Vec<ChatEntry>, Vec<MessageDelivered>) {
        let mut entries: Vec<ChatEntry> = Vec::new();
        let mut delivered: Vec<MessageDelivered> = Vec::new();
        while entries.len() < broadcasts || delivered.len() < acks {
            match self.recv() {
                ServerMessage::ChatBroadcast(b) => entries.push(b.entry),
                ServerMessage::MessageDelivered(d) => delivered.push(d),
                other => panic!("client {}: unexpected {other:?}", self.client_id),
            }
        }
        for ack in &delivered {
            if let Some(e) = entries.iter().find(|e| e.message_id == ack.message_id) {
                assert_eq!(
                    e.sequence_number, ack.sequence_number,
                    "ack and broadcast of {}",
                    ack.message_id
                );
            }
        }
        (entries, delivered)
    }

    /// Reads the next message other than a chat broadcast (other clients' chat may
    /// interleave), which must be an `error` with `code`; returns it.
    pub fn expect_error(&mut self, code: ErrorCode) -> ErrorMessage {
        match self.recv_skipping_broadcasts() {
            ServerMessage::Error(e) if e.code == code => e,
            other => panic!("expected error {code}, got {other:?}"),
        }
    }

    /// Sends a `client_ping` and expects `client_ping_ack` as the next message other than a
    /// chat broadcast: the connection is open and in sync.
    pub fn expect_ping_ack(&mut self) {
        let ping = ping_request(&self.client_id);
        self.send(&ping);
        match self.recv_skipping_broadcasts() {
            ServerMessage::ClientPingAck(_) => {}
            other => panic!("expected client_ping_ack, got {other:?}"),
        }
    }

    fn recv_skipping_broadcasts(&mut self) -> ServerMessage {
        self.recv_until(|m| !matches!(m, ServerMessage::ChatBroadcast(_)))
    }

    /// Expects the server to close the connection, with no further frame.
    pub fn expect_closed(&mut self) {
        match self.read_frame(SHORT) {
            Ok(None) => {}
            Ok(Some(payload)) => panic!(
                "expected the connection to close, got {}",
                String::from_utf8_lossy(&payload)
            ),
            Err(e) => panic!("expected the connection to close, got {e}"),
        }
    }
}

/// Parses a payload the server sent; panics if it is no server message.
pub fn parse(payload: &[u8]) -> ServerMessage {
    serde_json::from_slice(payload).unwrap_or_else(|e| {
        panic!(
            "not a server message ({e}): {}",
            String::from_utf8_lossy(payload)
        )
    })
}
