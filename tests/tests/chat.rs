//! Chat through the leader: every client sees every message in one `sequence_number`
//! order without gaps, a late client gets the history on connect, a reconnecting client
//! gets only its gap, and long histories are split into frames within the 64 KiB limit.

use std::collections::BTreeSet;

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::real_client::RealClient;
use ringchat_cluster_tests::wait::{SHORT, wait_for, wait_until};
use ringchat_cluster_tests::wire::{WireClient, chat_request, connect_request};
use ringchat_cluster_tests::{ChatEntry, Seq};
use ringchat_proto::limits::MAX_CLIENT_FRAME;
use ringchat_proto::server::ServerMessage;
use serde_json::json;

fn seqs(entries: &[ChatEntry]) -> Vec<Seq> {
    entries.iter().map(|e| e.sequence_number).collect()
}

#[test]
fn two_clients_see_one_order_and_late_clients_get_history() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let leader = cluster.client_addr(3);
    let (mut alice, history) = WireClient::session(&leader, "alice", None);
    assert!(history.is_empty(), "fresh cluster has history {history:?}");
    let (mut bob, _) = WireClient::session(&leader, "bob", None);

    // Both send at once, pipelined, so their messages interleave on the leader.
    let rounds = 25;
    let mut alice_ids = Vec::new();
    let mut bob_ids = Vec::new();
    for i in 0..rounds {
        alice_ids.push(alice.send_chat(&format!("alice says {i}")));
        bob_ids.push(bob.send_chat(&format!("bob says {i}")));
    }
    let total = 2 * rounds;
    let (seen_by_alice, alice_acks) = alice.recv_chat(total, rounds);
    let (seen_by_bob, bob_acks) = bob.recv_chat(total, rounds);

    assert_eq!(
        seen_by_alice, seen_by_bob,
        "both clients see the same entries in the same order"
    );
    assert_eq!(
        seqs(&seen_by_alice),
        (1..=total as Seq).collect::<Vec<_>>(),
        "ascending, no gaps"
    );
    let acked: Vec<String> = alice_acks.iter().map(|d| d.message_id.clone()).collect();
    assert_eq!(
        acked.iter().collect::<BTreeSet<_>>(),
        alice_ids.iter().collect::<BTreeSet<_>>(),
        "alice gets one ack per message"
    );
    assert_eq!(bob_acks.len(), rounds);
    // Each client's own messages keep their sending order.
    for (who, ids) in [("alice", &alice_ids), ("bob", &bob_ids)] {
        let order: Vec<&String> = seen_by_alice
            .iter()
            .filter(|e| e.username == who)
            .map(|e| &e.message_id)
            .collect();
        assert_eq!(
            order,
            ids.iter().collect::<Vec<_>>(),
            "{who}'s messages in sending order"
        );
    }

    // A client connecting later gets the whole (short) history on connect, equal to what
    // the others saw, and every server stores exactly that.
    let (_carol, carol_history) = WireClient::session(&leader, "carol", None);
    assert_eq!(carol_history, seen_by_alice);
    assert_eq!(
        cluster.status(3).clients,
        3,
        "alice, bob and carol are connected"
    );
    let stored = cluster.wait_same_history(&[1, 2, 3], total);
    assert_eq!(stored, seen_by_alice);

    // Messages after carol joined reach all three, in order.
    let seq = alice.chat("one more");
    assert_eq!(seq, total as Seq + 1);
}

#[test]
fn reconnect_with_from_sequence_gets_only_the_gap() {
    let cluster = Cluster::start_all(&[1, 2]);
    cluster.wait_converged(2, SHORT);
    let leader = cluster.client_addr(2);

    let (mut alice, _) = WireClient::session(&leader, "alice", None);
    for i in 0..5 {
        alice.chat(&format!("before {i}"));
    }
    drop(alice);

    let (mut bob, history) = WireClient::session(&leader, "bob", None);
    assert_eq!(seqs(&history), vec![1, 2, 3, 4, 5]);
    for i in 0..7 {
        bob.chat(&format!("while alice is away {i}"));
    }

    let mut alice = WireClient::open(&leader, "alice");
    alice.send(&connect_request("alice", "alice", Some(5)));
    let pages = alice.recv_history();
    let gap: Vec<ChatEntry> = pages.iter().flat_map(|p| p.messages.clone()).collect();
    assert_eq!(seqs(&gap), (6..=12).collect::<Vec<_>>(), "only the gap");
    assert!(gap.iter().all(|e| e.username == "bob"));
    assert_eq!(pages[0].from_sequence, 5);
    assert!(pages.iter().all(|p| p.last_sequence == 12 && !p.reset));

    // Up to date: an empty answer.
    let (_, nothing) = WireClient::session(&leader, "carol", Some(12));
    assert!(nothing.is_empty(), "{nothing:?}");

    // A from_sequence this history never had: the client is told to reset.
    let mut stranger = WireClient::open(&leader, "stranger");
    stranger.send(&connect_request("stranger", "stranger", Some(1000)));
    let pages = stranger.recv_history();
    assert!(
        pages[0].reset,
        "from_sequence beyond the history must reset: {:?}",
        pages[0]
    );
    let entries: Vec<ChatEntry> = pages.into_iter().flat_map(|p| p.messages).collect();
    assert_eq!(seqs(&entries), (1..=12).collect::<Vec<_>>());
}

#[test]
fn history_over_64_kib_is_split_into_frames() {
    let cluster = Cluster::start_all(&[1, 2]);
    cluster.wait_converged(2, SHORT);
    let leader = cluster.client_addr(2);
    let (mut writer, _) = WireClient::session(&leader, "writer", None);

    // 4096 characters each; control characters and quotes grow when JSON-escaped, so
    // some entries are about 24 KiB on the wire.
    let contents = [
        "\u{1}".repeat(4096),
        "\"".repeat(4096),
        "\u{1F600}".repeat(4096),
        "x".repeat(4096),
    ];
    let total = 40;
    for i in 0..total {
        writer.send_chat(&contents[i % contents.len()]);
    }
    writer.recv_chat(total, total);
    let stored = cluster.wait_same_history(&[1, 2], total);
    let wire_bytes: usize = stored
        .iter()
        .map(|e| serde_json::to_vec(e).expect("json").len())
        .sum();
    assert!(
        wire_bytes > 4 * MAX_CLIENT_FRAME,
        "history is only {wire_bytes} bytes"
    );

    // On connect (the last 100 entries, so all 40) and via history_request.
    let mut reader = WireClient::open(&leader, "reader");
    reader.send(&connect_request("reader", "reader", None));
    let on_connect = reader.recv_history();
    reader.send(&json!({"msg_type": "history_request", "from_sequence": 0, "limit": 1000}));
    let requested = reader.recv_history();
    for pages in [&on_connect, &requested] {
        assert!(
            pages.len() > 1,
            "one frame for {wire_bytes} bytes of history"
        );
        for (i, page) in pages.iter().enumerate() {
            assert_eq!(page.more, i + 1 < pages.len(), "`more` of frame {i}");
            assert_eq!(page.last_sequence, total as Seq);
        }
        let entries: Vec<ChatEntry> = pages.iter().flat_map(|p| p.messages.clone()).collect();
        assert_eq!(entries, stored, "the frames together hold the history");
    }
    assert!(reader.largest_frame() <= MAX_CLIENT_FRAME);

    // The session is still usable after the long answers.
    reader.send(&json!({"msg_type": "client_ping", "client_id": "reader"}));
    assert!(matches!(reader.recv(), ServerMessage::ClientPingAck(_)));
}

/// Sends `(client_id, message_id)` on `c` and returns the acked sequence number; counts the
/// broadcasts of that message id seen on the way in `broadcasts`.
fn send_and_ack(c: &mut WireClient, message_id: &str, broadcasts: &mut usize) -> Seq {
    let req = chat_request(&c.client_id.clone(), "dup", "same message", message_id);
    c.send(&req);
    loop {
        match c.recv() {
            ServerMessage::ChatBroadcast(b) if b.entry.message_id == message_id => *broadcasts += 1,
            ServerMessage::MessageDelivered(d) if d.message_id == message_id => {
                return d.sequence_number;
            }
            _ => {}
        }
    }
}

#[test]
fn a_resent_message_id_is_stored_and_broadcast_once() {
    let cluster = Cluster::start_all(&[1, 2]);
    cluster.wait_converged(2, SHORT);
    let leader = cluster.client_addr(2);
    let (mut c, _) = WireClient::session(&leader, "dup", None);
    let mut broadcasts = 0;
    let first = send_and_ack(&mut c, "dup:resent", &mut broadcasts);
    let again = send_and_ack(&mut c, "dup:resent", &mut broadcasts);
    assert_eq!(
        again, first,
        "a resend is acked with the same sequence number"
    );
    drop(c);

    // After a reconnect (same client_id) too.
    let (mut c, _) = WireClient::session(&leader, "dup", Some(first));
    let after_reconnect = send_and_ack(&mut c, "dup:resent", &mut broadcasts);
    assert_eq!(after_reconnect, first);
    // A later message proves the stream has moved past any late duplicate broadcast.
    let next = c.chat("next");
    assert_eq!(next, first + 1);
    assert_eq!(broadcasts, 1, "the message is broadcast once");
    let stored = cluster.wait_same_history(&[1, 2], 2);
    assert_eq!(stored[0].message_id, "dup:resent");
}

#[test]
fn real_clients_chat_and_a_late_one_gets_the_history() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let addrs = cluster.client_addrs();
    let mut alice = RealClient::scripted(&addrs, "alice", "real-alice");
    let mut bob = RealClient::scripted(&addrs, "bob", "real-bob");
    // Connected (history received) before anyone sends, so both see every broadcast.
    wait_until(SHORT, "both clients to connect", || {
        !alice.frames("history_response").is_empty() && !bob.frames("history_response").is_empty()
    });
    for i in 0..10 {
        alice.send_line(&format!("alice line {i}"));
        bob.send_line(&format!("bob line {i}"));
    }
    wait_for(SHORT, "both clients to see 20 broadcasts", || {
        let (a, b) = (alice.broadcasts(), bob.broadcasts());
        if a.len() >= 20 && b.len() >= 20 {
            Ok(())
        } else {
            Err(format!("alice saw {a:?}, bob saw {b:?}"))
        }
    });
    for client in [&mut alice, &mut bob] {
        let status = client.finish();
        assert!(status.success(), "stderr:\n{}", client.stderr());
        assert_eq!(client.delivered().len(), 10);
    }
    let seen = alice.broadcasts();
    assert_eq!(seen, bob.broadcasts(), "one order for both");
    let order: Vec<Seq> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(order, (1..=20).collect::<Vec<_>>());

    let mut carol = RealClient::scripted(&addrs, "carol", "real-carol");
    wait_until(SHORT, "carol's history on connect", || {
        !carol.frames("history_response").is_empty()
    });
    let history = carol.frames("history_response");
    let ids: Vec<&str> = history[0]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["message_id"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(carol.finish().success());
}
