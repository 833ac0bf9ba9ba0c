//! Runs the built `ringchat-client` against fake servers that speak the client protocol
//! (PROTOCOL.md) on 127.0.0.1: a leader that stores and acknowledges, a follower that names
//! the leader, a leader that drops the connection before acknowledging, a multicast responder.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ringchat_proto::frame::{FrameCodec, frame_json};
use ringchat_proto::limits::MAX_CLIENT_FRAME;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// Deadline for anything a test waits for; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// How a fake server behaves.
#[derive(Clone, Default)]
struct Behaviour {
    /// Answer `client_connect` with `leader_info` naming this client address, then close.
    follower_of: Option<u16>,
    /// Close the connection instead of handling the first `client_message`.
    drop_first_message: bool,
    /// Answer a message with this content with `CONTENT_TOO_LONG`.
    refuse: Option<&'static str>,
    /// Entries stored before the client comes.
    history: Vec<Value>,
    /// After the connect answer, broadcast this already-stored sequence number (a gap if
    /// the history sent stops before it).
    push_after_connect: Option<u64>,
    /// The connect answer leaves out entries after this sequence number.
    connect_history_up_to: Option<u64>,
    /// Send `message_delivered` before the `chat_broadcast` of the same message.
    ack_before_broadcast: bool,
}

/// State shared by the connections of one fake server.
struct Shared {
    behaviour: Behaviour,
    /// Every frame received, as JSON.
    received: Mutex<Vec<Value>>,
    /// Every frame sent, as sent.
    sent: Mutex<Vec<String>>,
    /// Stored entries; the watch counts them.
    log: Mutex<Vec<Value>>,
    stored: watch::Sender<usize>,
}

struct Fake {
    port: u16,
    shared: Arc<Shared>,
}

impl Fake {
    async fn start(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stored = behaviour.history.len();
        let shared = Arc::new(Shared {
            log: Mutex::new(behaviour.history.clone()),
            behaviour,
            received: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            stored: watch::channel(stored).0,
        });
        let accept = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accept.clone()));
            }
        });
        Fake { port, shared }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn received(&self, msg_type: &str) -> Vec<Value> {
        let all = self.shared.received.lock().unwrap();
        all.iter()
            .filter(|v| v["msg_type"] == msg_type)
            .cloned()
            .collect()
    }

    async fn wait_stored(&self, n: usize) {
        let mut rx = self.shared.stored.subscribe();
        timeout(DEADLINE, rx.wait_for(|&stored| stored >= n))
            .await
            .expect("the fake leader stored the message in time")
            .unwrap();
    }
}

fn entry(seq: u64, message_id: &str, client_id: &str, username: &str, content: &str) -> Value {
    json!({
        "message_id": message_id, "sequence_number": seq, "client_id": client_id,
        "username": username, "content": content, "timestamp": 1_764_097_426.0 + seq as f64,
        "delivered": true, "epoch": 1,
    })
}

fn envelope(msg_type: &str, mut body: Value) -> Value {
    body["msg_type"] = json!(msg_type);
    body["sender_id"] = json!("Server 3");
    if body.get("timestamp").is_none() {
        body["timestamp"] = json!(1_764_097_426.0);
    }
    body
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut conn = Framed::new(stream, FrameCodec::new(MAX_CLIENT_FRAME));
    let b = shared.behaviour.clone();
    while let Some(Ok(payload)) = conn.next().await {
        let msg: Value = serde_json::from_slice(&payload).unwrap();
        shared.received.lock().unwrap().push(msg.clone());
        let mut out = Vec::new();
        match msg["msg_type"].as_str().unwrap() {
            "client_connect" => {
                if let Some(port) = b.follower_of {
                    let info = json!({"leader_id": 2, "leader_address": "127.0.0.1",
                        "leader_port": port, "is_available": true, "is_leader": false, "epoch": 1});
                    out.push(envelope("leader_info", info));
                    send_all(&mut conn, &shared, out).await;
                    return;
                }
                let from = msg["from_sequence"].as_u64().unwrap_or(0);
                let up_to = b.connect_history_up_to.unwrap_or(u64::MAX);
                out.push(history(&shared, from, up_to));
                if let Some(seq) = b.push_after_connect {
                    let log = shared.log.lock().unwrap();
                    out.push(envelope("chat_broadcast", log[seq as usize - 1].clone()));
                }
            }
            "history_request" => {
                let from = msg["from_sequence"].as_u64().unwrap();
                let limit = msg["limit"].as_u64().unwrap();
                out.push(history(&shared, from, from + limit));
            }
            "client_message" => {
                let (id, content) = (&msg["message_id"], &msg["content"]);
                if b.drop_first_message
                    && shared
                        .received
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|m| m["msg_type"] == "client_message")
                        .count()
                        == 1
                {
                    return;
                }
                if b.refuse.is_some_and(|r| content == r) {
                    let err = json!({"code": "CONTENT_TOO_LONG", "message": "too long", "message_id": id});
                    out.push(envelope("error", err));
                } else {
                    let mut log = shared.log.lock().unwrap();
                    let existing = log
                        .iter()
                        .find(|e| e["message_id"] == *id && e["client_id"] == msg["client_id"])
                        .cloned();
                    let stored = existing.clone().unwrap_or_else(|| {
                        let seq = log.len() as u64 + 1;
                        let e = entry(
                            seq,
                            id.as_str().unwrap(),
                            msg["client_id"].as_str().unwrap(),
                            msg["username"].as_str().unwrap(),
                            content.as_str().unwrap(),
                        );
                        log.push(e.clone());
                        e
                    });
                    let ack = json!({"message_id": id, "sequence_number": stored["sequence_number"], "epoch": 1});
                    out.push(envelope("message_delivered", ack));
                    if existing.is_none() {
                        let at = if b.ack_before_broadcast { 1 } else { 0 };
                        out.insert(at, envelope("chat_broadcast", stored.clone()));
                    }
                    shared.stored.send_replace(log.len());
                }
            }
            "client_ping" => {
                let ack = json!({"leader_id": 3, "leader_address": "127.0.0.1", "leader_port": 0,
                    "is_available": true, "epoch": 1});
                out.push(envelope("client_ping_ack", ack));
            }
            "client_disconnect" => return,
            other => panic!("unexpected {other}"),
        }
        send_all(&mut conn, &shared, out).await;
    }
}

/// A one-frame `history_response` with the stored entries in `(from, up_to]`.
fn history(shared: &Shared, from: u64, up_to: u64) -> Value {
    let log = shared.log.lock().unwrap();
    let messages: Vec<Value> = log
        .iter()
        .filter(|e| (from + 1..=up_to).contains(&e["sequence_number"].as_u64().unwrap()))
        .cloned()
        .collect();
    envelope(
        "history_response",
        json!({"messages": messages, "from_sequence": from, "last_sequence": log.len(),
            "more": false, "reset": false}),
    )
}

async fn send_all(conn: &mut Framed<TcpStream, FrameCodec>, shared: &Shared, frames: Vec<Value>) {
    for frame in frames {
        shared.sent.lock().unwrap().push(frame.to_string());
        if conn.send(frame_json(&frame).unwrap()).await.is_err() {
            return;
        }
    }
}

fn client(args: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringchat-client"))
        .args(["--client-id", "c1", "--username", "Alice"])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn frames(&self, msg_type: &str) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("every stdout line is JSON"))
            .filter(|v| v["msg_type"] == msg_type)
            .collect()
    }
}

async fn finish(child: Child) -> Finished {
    let out = timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the client exits in time")
        .unwrap();
    let finished = Finished {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    eprintln!("client stderr:\n{}", finished.stderr);
    finished
}

fn contents(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["content"].as_str().unwrap())
        .collect()
}

fn ids(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["message_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn sends_and_waits_for_every_acknowledgement() {
    let leader = Fake::start(Behaviour::default()).await;
    let args = [
        "--server",
        &leader.address(),
        "--send",
        "hello",
        "--send",
        "world",
        "--json",
    ];
    let done = finish(client(&args, Stdio::null())).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.frames("history_response").len(), 1);
    assert_eq!(contents(&done.frames("chat_broadcast")), ["hello", "world"]);
    assert_eq!(ids(&done.frames("message_delivered")), ["c1:1", "c1:2"]);
    let sent = leader.shared.sent.lock().unwrap().clone();
    let printed: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(printed, sent, "every frame, as received");

    let connect = &leader.received("client_connect")[0];
    assert_eq!(connect["username"], "Alice");
    assert_eq!(connect["client_id"], "c1");
    assert!(connect.get("from_sequence").is_none());
    let sent = leader.received("client_message");
    assert_eq!(ids(&sent), ["c1:1", "c1:2"]);
    assert_eq!(sent[0]["sender_id"], "c1");
}

#[tokio::test]
async fn follows_a_follower_to_the_leader() {
    let leader = Fake::start(Behaviour::default()).await;
    let follower = Fake::start(Behaviour {
        follower_of: Some(leader.port),
        ..Behaviour::default()
    })
    .await;
    let args = ["--server", &follower.address(), "--send", "hi", "--json"];
    let done = finish(client(&args, Stdio::null())).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.frames("leader_info").len(), 1);
    assert!(done.frames("history_response").len() == 1);
    assert_eq!(ids(&done.frames("message_delivered")), ["c1:1"]);
    assert_eq!(follower.received("client_connect").len(), 1);
    assert!(follower.received("client_message").is_empty());
    assert_eq!(ids(&leader.received("client_message")), ["c1:1"]);
}

#[tokio::test]
async fn resends_with_the_same_id_after_losing_the_connection() {
    let leader = Fake::start(Behaviour {
        drop_first_message: true,
        ..Behaviour::default()
    })
    .await;
    let args = ["--server", &leader.address(), "--send", "once", "--json"];
    let done = finish(client(&args, Stdio::null())).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr.contains("[reconnecting: leader lost"),
        "{}",
        done.stderr
    );
    assert_eq!(ids(&leader.received("client_message")), ["c1:1", "c1:1"]);
    let connects = leader.received("client_connect");
    assert_eq!(connects.len(), 2);
    assert_eq!(
        connects[1]["from_sequence"], 0,
        "the reconnect names what it holds"
    );
    assert_eq!(contents(&done.frames("chat_broadcast")), ["once"]);
}

#[tokio::test]
async fn stdin_lines_are_sent_as_they_arrive_and_shown_in_order() {
    let leader = Fake::start(Behaviour {
        history: vec![entry(1, "b:1", "b", "Bob", "earlier")],
        ack_before_broadcast: true,
        ..Behaviour::default()
    })
    .await;
    let mut child = client(&["--server", &leader.address()], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n\n").await.unwrap();
    leader.wait_stored(2).await;
    stdin.write_all(b"second\r\n").await.unwrap();
    leader.wait_stored(3).await;
    drop(stdin);
    let done = finish(child).await;
    assert!(done.status.success(), "{}", done.stderr);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", done.stdout);
    for (line, text) in lines
        .iter()
        .zip(["Bob: earlier", "Alice: first", "Alice: second"])
    {
        assert!(line.starts_with('[') && line.ends_with(text), "{line}");
    }
    assert!(
        done.stderr
            .contains("[connected to leader Server 3 at 127.0.0.1:")
    );
}

#[tokio::test]
async fn a_gap_is_filled_before_later_messages_show() {
    let stored: Vec<Value> = (1..=4)
        .map(|s| entry(s, &format!("b:{s}"), "b", "Bob", &format!("m{s}")))
        .collect();
    let leader = Fake::start(Behaviour {
        history: stored,
        connect_history_up_to: Some(2),
        push_after_connect: Some(4),
        ..Behaviour::default()
    })
    .await;
    let mut child = client(&["--server", &leader.address()], Stdio::piped());
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut shown = Vec::new();
    while shown.len() < 4 {
        let line = timeout(DEADLINE, stdout.next_line())
            .await
            .unwrap()
            .unwrap();
        shown.push(line.expect("the client prints four messages"));
    }
    drop(child.stdin.take());
    assert!(finish(child).await.status.success());
    let texts: Vec<&str> = shown
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(texts, ["m1", "m2", "m3", "m4"]);
    let fill = &leader.received("history_request")[0];
    assert_eq!(
        (fill["from_sequence"].as_u64(), fill["limit"].as_u64()),
        (Some(2), Some(1000))
    );
}

#[tokio::test]
async fn a_refused_message_makes_the_exit_code_1() {
    let leader = Fake::start(Behaviour {
        refuse: Some("too much"),
        ..Behaviour::default()
    })
    .await;
    let args = [
        "--server",
        &leader.address(),
        "--send",
        "fine",
        "--send",
        "too much",
    ];
    let done = finish(client(&args, Stdio::null())).await;
    assert_eq!(done.status.code(), Some(1));
    assert!(
        done.stderr
            .contains("message c1:2 refused: CONTENT_TOO_LONG"),
        "{}",
        done.stderr
    );
    assert!(done.stdout.ends_with("Alice: fine\n"), "{}", done.stdout);
}

#[tokio::test]
async fn gives_up_after_the_timeout_when_no_leader_answers() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let args = ["--server", &address, "--send", "x", "--timeout", "0.5"];
    let done = finish(client(&args, Stdio::null())).await;
    assert_eq!(done.status.code(), Some(1));
    assert!(
        done.stderr.contains("found no leader within 0.5 s"),
        "{}",
        done.stderr
    );
}

#[tokio::test]
async fn multicast_discovery_finds_the_leader() {
    let leader = Fake::start(Behaviour::default()).await;
    let group = std::net::Ipv4Addr::new(239, 255, 255, 250);
    let responder = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let port = responder.local_addr().unwrap().port();
    responder
        .join_multicast_v4(group, std::net::Ipv4Addr::LOCALHOST)
        .unwrap();
    let cluster = format!("test-{}", std::process::id());
    let leader_port = leader.port;
    let expected_cluster = cluster.clone();
    let questions = tokio::spawn(async move {
        let mut buf = vec![0; 8192];
        loop {
            let (n, from) = responder.recv_from(&mut buf).await.unwrap();
            let question: Value = serde_json::from_slice(&buf[..n]).unwrap();
            if question["cluster"] != expected_cluster.as_str() {
                continue; // someone else's test on this machine
            }
            assert_eq!(question["msg_type"], "discovery_announce");
            assert_eq!(
                (&question["server_address"], &question["server_port"]),
                (&json!(""), &json!(0))
            );
            let answer = json!({"msg_type": "discovery_response", "sender_id": "Server 3",
                "timestamp": 1.0, "server_address": "127.0.0.1", "server_port": 5003,
                "is_leader": true, "leader_id": 3, "leader_address": "127.0.0.1",
                "leader_port": leader_port, "epoch": 1, "cluster": expected_cluster});
            responder
                .send_to(answer.to_string().as_bytes(), from)
                .await
                .unwrap();
            return question;
        }
    });
    let port = port.to_string();
    let args = [
        "--multicast-interface",
        "127.0.0.1",
        "--multicast-port",
        &port,
        "--cluster",
        &cluster,
        "--send",
        "found you",
    ];
    let done = finish(client(&args, Stdio::null())).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(questions.await.unwrap()["sender_id"], "c1");
    assert_eq!(ids(&leader.received("client_message")), ["c1:1"]);
}
