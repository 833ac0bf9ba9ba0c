//! Hostile input on the client port and on the ring port: each broken frame gets the
//! error PROTOCOL.md names (and a close where the framing is lost), recoverable errors keep
//! the connection open, stalled and byte-by-byte connections harm nobody, and all the while
//! a normal client keeps chatting, the daemon stays up and the ring keeps its leader.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::random_u64;
use ringchat_cluster_tests::wait::SHORT;
use ringchat_cluster_tests::wire::{
    WireClient, chat_request, connect_request, frame, ping_request, steady_chatter,
};
use ringchat_proto::ErrorCode;
use ringchat_proto::limits::MAX_PEER_FRAME;
use ringchat_proto::server::ServerMessage;
use serde_json::json;

/// Random bytes, for garbage.
fn garbage(len: usize) -> Vec<u8> {
    (0..len).map(|_| random_u64() as u8).collect()
}

/// A connection that writes `bytes` and expects one `error` with `code`, then a close.
fn expect_fatal(addr: &str, bytes: &[u8], code: ErrorCode) {
    let mut c = WireClient::open(addr, "hostile");
    c.write_raw(bytes).expect("write");
    c.expect_error(code);
    c.expect_closed();
}

/// Half a frame: the announced length is never reached. Kept open by the caller.
fn stalled(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(br#"{"msg_type""#);
    s.write_all(&bytes).expect("write");
    s
}

#[test]
fn client_port_survives_hostile_input() {
    let cluster = Cluster::start_all(&[1, 2]);
    let before = cluster.wait_converged(2, SHORT);
    let addr = cluster.client_addr(2);
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = steady_chatter(addr.clone(), Arc::clone(&stop), None);

    // Connections that stall mid-frame (and one mid-header) stay open throughout.
    let mut stalls: Vec<TcpStream> = (0..20).map(|_| stalled(&addr)).collect();
    let mut mid_header = TcpStream::connect(&addr).expect("connect");
    mid_header.write_all(&[0, 0]).expect("write");
    stalls.push(mid_header);

    // Framing errors: one error frame, then the server closes.
    expect_fatal(&addr, &[0, 0, 0, 0], ErrorCode::BadFrame);
    expect_fatal(&addr, &[0xff, 0xff, 0xff, 0xff], ErrorCode::FrameTooLarge);
    expect_fatal(&addr, &65_537u32.to_be_bytes(), ErrorCode::FrameTooLarge);
    expect_fatal(&addr, &frame(&[0xff, 0xfe, 0xfd]), ErrorCode::BadFrame);
    expect_fatal(&addr, &frame(b"{not json"), ErrorCode::BadJson);
    expect_fatal(&addr, &frame(b"[1,2,3]"), ErrorCode::BadJson);
    expect_fatal(&addr, &frame(b"\"just a string\""), ErrorCode::BadJson);

    // Recoverable errors: the connection stays open and in sync.
    let mut c = WireClient::open(&addr, "picky");
    c.send(&json!({"msg_type": "teleport", "client_id": "picky"}));
    c.expect_error(ErrorCode::UnknownType);
    c.expect_ping_ack();
    c.send(&json!({"msg_type": "client_connect", "client_id": 7, "username": "A"}));
    c.expect_error(ErrorCode::BadField);
    c.send(&json!({"msg_type": 5}));
    c.expect_error(ErrorCode::BadField);
    c.send(&json!({"client_id": "picky"}));
    c.expect_error(ErrorCode::BadField);
    c.send(&json!({"msg_type": "history_request", "limit": "many"}));
    c.expect_error(ErrorCode::BadField);
    c.expect_ping_ack();

    // Before client_connect only ping and connect are accepted.
    c.send(&chat_request("picky", "picky", "too early", "picky:1"));
    let e = c.expect_error(ErrorCode::NotConnected);
    assert_eq!(e.message_id.as_deref(), Some("picky:1"));
    c.send(&json!({"msg_type": "history_request"}));
    c.expect_error(ErrorCode::NotConnected);
    c.expect_ping_ack();

    // Content length is counted in characters: 4097 is refused, 4096 multi-byte ones pass.
    c.send(&connect_request("picky", "picky", None));
    c.recv_history();
    c.send(&chat_request(
        "picky",
        "picky",
        &"x".repeat(4097),
        "picky:2",
    ));
    let e = c.expect_error(ErrorCode::ContentTooLong);
    assert_eq!(e.message_id.as_deref(), Some("picky:2"));
    c.send(&chat_request(
        "picky",
        "picky",
        &"ü".repeat(4096),
        "picky:3",
    ));
    c.recv_until(|m| matches!(m, ServerMessage::MessageDelivered(d) if d.message_id == "picky:3"));

    // A whole session written one byte at a time.
    let mut slow = WireClient::open(&addr, "slow");
    let mut bytes = frame(connect_request("slow", "slow", None).to_string().as_bytes());
    bytes.extend(frame(ping_request("slow").to_string().as_bytes()));
    bytes.extend(frame(
        chat_request("slow", "slow", "byte by byte", "slow:1")
            .to_string()
            .as_bytes(),
    ));
    for b in bytes {
        slow.write_raw(&[b]).expect("write");
    }
    slow.recv_history();
    assert!(matches!(
        slow.recv_until(|m| !matches!(m, ServerMessage::ChatBroadcast(_))),
        ServerMessage::ClientPingAck(_)
    ));
    slow.recv_until(
        |m| matches!(m, ServerMessage::MessageDelivered(d) if d.message_id == "slow:1"),
    );

    // Many frames in one write.
    let mut burst = WireClient::open(&addr, "burst");
    let mut bytes = frame(
        connect_request("burst", "burst", None)
            .to_string()
            .as_bytes(),
    );
    for i in 1..=30 {
        let id = format!("burst:{i}");
        bytes.extend(frame(
            chat_request("burst", "burst", &format!("burst {i}"), &id)
                .to_string()
                .as_bytes(),
        ));
    }
    burst.write_raw(&bytes).expect("write");
    burst.recv_history();
    let mut acked = Vec::new();
    while acked.len() < 30 {
        if let ServerMessage::MessageDelivered(d) = burst.recv() {
            acked.push(d.sequence_number);
        }
    }
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acks in order: {acked:?}"
    );

    // Garbage, and connections that vanish mid-frame.
    for _ in 0..5 {
        let mut s = TcpStream::connect(&addr).expect("connect");
        let _ = s.write_all(&garbage(4096));
    }

    // Through all of it: the steady client chats, the daemon answers, nothing changed.
    stop.store(true, Ordering::Relaxed);
    let steady = chatter.join().expect("the steady client failed");
    assert!(steady > 0);
    let mut after_stalls = WireClient::session(&addr, "late", None).0;
    after_stalls.chat("after all that");
    let after = cluster.wait_converged(2, SHORT);
    assert_eq!(
        after.epoch, before.epoch,
        "hostile clients caused an election"
    );
    drop(stalls);
}

#[test]
fn ring_port_survives_hostile_input() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = steady_chatter(cluster.client_addr(3), Arc::clone(&stop), None);
    let mut stalls = Vec::new();

    for target in [3, 1] {
        let addr = cluster.ring_addr(target);
        stalls.push(stalled(&addr));
        expect_fatal(&addr, &[0, 0, 0, 0], ErrorCode::BadFrame);
        expect_fatal(&addr, &[0xff, 0xff, 0xff, 0xff], ErrorCode::FrameTooLarge);
        expect_fatal(
            &addr,
            &(MAX_PEER_FRAME as u32 + 1).to_be_bytes(),
            ErrorCode::FrameTooLarge,
        );
        expect_fatal(&addr, &frame(&[0xc3, 0x28]), ErrorCode::BadFrame);
        expect_fatal(&addr, &frame(b"{\"from\": 1, "), ErrorCode::BadJson);
        expect_fatal(&addr, &frame(b"[]"), ErrorCode::BadJson);

        // Valid JSON that is no ring message: an error, and the listener keeps reading.
        let mut c = WireClient::open(&addr, "impostor");
        c.send(&connect_request("impostor", "impostor", None));
        c.expect_error(ErrorCode::BadField);
        c.send(&json!({"from": 77, "msg_type": "teleport"}));
        c.expect_error(ErrorCode::UnknownType);
        c.send(&json!({"from": "seven", "msg_type": "heartbeat"}));
        c.expect_error(ErrorCode::BadField);

        for _ in 0..3 {
            let mut s = TcpStream::connect(&addr).expect("connect");
            let _ = s.write_all(&garbage(4096));
        }
    }

    stop.store(true, Ordering::Relaxed);
    let steady = chatter.join().expect("the steady client failed");
    assert!(steady > 0);
    let after = cluster.wait_converged(3, SHORT);
    assert_eq!(
        after.epoch, before.epoch,
        "hostile ring input caused an election"
    );
    let (mut c, _) = WireClient::session(&cluster.client_addr(3), "after", None);
    c.chat("still chatting");
    drop(stalls);
}
