//! Quorum mode (`replication.mode = "quorum"`), real processes on loopback: a leader that
//! loses its majority refuses writes with `NO_LEADER` and says `is_available: false`; once
//! the majority is back, writes work again and no acknowledged message is lost.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;

use ringchat_cluster_tests::bins::binaries;
use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::process;
use ringchat_cluster_tests::wait::{LONG, SHORT, wait_until};
use ringchat_cluster_tests::wire::{WireClient, ping_request};
use ringchat_cluster_tests::{NodeId, Seq, assert_acked_once};
use ringchat_proto::ErrorCode;
use ringchat_proto::server::ServerMessage;

/// `replication.mode = "quorum"`; with `--peer` lists the ring's size is their count.
const QUORUM: [(&str, &str); 1] = [("RINGCHAT_REPLICATION__MODE", "quorum")];

fn quorum_cluster(ids: &[NodeId]) -> Cluster {
    let cluster = Cluster::new(ids);
    for &id in ids {
        cluster.start_with(id, None, &QUORUM);
    }
    cluster
}

/// Three servers in quorum mode led by 3, and a client on it that got `n` messages acked.
fn three_with_acked(n: usize) -> (Cluster, WireClient, BTreeMap<String, Seq>) {
    let cluster = quorum_cluster(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "quorum", None);
    let acked = (1..=n)
        .map(|i| client.chat_with_id(&format!("message {i}")))
        .collect();
    (cluster, client, acked)
}

#[test]
fn a_leader_without_a_majority_refuses_writes_until_it_is_back() {
    let (cluster, mut client, mut acked) = three_with_acked(5);

    // Both followers hang: the leader alone is a minority of the configured three.
    cluster.freeze(1);
    cluster.freeze(2);
    wait_until(SHORT, "node 3 to lead without a majority", || {
        cluster
            .try_status(3)
            .is_ok_and(|s| s.role == "leader" && !s.serving)
    });
    let refused = client.send_chat("refused without a majority");
    let err = client.expect_error(ErrorCode::NoLeader);
    assert_eq!(err.message_id.as_deref(), Some(refused.as_str()));
    client.send(&ping_request("quorum"));
    match client.recv_until(|m| matches!(m, ServerMessage::ClientPingAck(_))) {
        ServerMessage::ClientPingAck(ack) => {
            assert!(!ack.is_available, "no leader takes writes: {ack:?}");
            assert_eq!(ack.leader_id, None);
        }
        _ => unreachable!(),
    }
    // The session stays open and reads still work (what is committed).
    let (_, history) = WireClient::session(&cluster.client_addr(3), "reader", Some(0));
    assert_eq!(history.len(), 5);

    cluster.thaw(1);
    cluster.thaw(2);
    cluster.wait_converged(3, LONG);
    for i in 6..=10 {
        let (id, seq) = client.chat_with_id(&format!("message {i}"));
        acked.insert(id, seq);
    }
    let history = cluster.wait_same_history(&[1, 2, 3], 10);
    assert_acked_once(&history, &acked);
    assert!(
        history.iter().all(|e| e.message_id != refused),
        "a refused message is not stored"
    );
}

#[test]
fn a_lone_follower_elects_nobody() {
    let (cluster, mut client, mut acked) = three_with_acked(3);
    // Node 1 stays alone: in available mode it would lead a ring of one by now.
    cluster.freeze(2);
    cluster.freeze(3);
    wait_until(SHORT, "node 1 to lose its leader", || {
        cluster.try_status(1).is_ok_and(|s| s.leader.is_none())
    });
    // Several election timeouts (1 s) later it still has no leader and never led.
    let since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_secs(3) {
        let s = cluster.status(1);
        assert!(
            s.role != "leader" && !s.serving,
            "a minority must not lead: {s:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cluster.thaw(2);
    cluster.thaw(3);
    cluster.wait_converged(3, LONG);
    let (id, seq) = client.chat_with_id("message 4");
    acked.insert(id, seq);
    let history = cluster.wait_same_history(&[1, 2, 3], 4);
    assert_acked_once(&history, &acked);
}

#[test]
fn quorum_mode_with_multicast_refuses_to_start_without_the_cluster_size() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = process::command(&binaries().ringchatd, None)
        .args(["1", "--discovery", "multicast", "--admin-socket"])
        .arg(dir.path().join("never.sock"))
        .env("RINGCHAT_REPLICATION__MODE", "quorum")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringchatd");
    let status = process::wait_exit(&mut child, SHORT).expect("exits at once");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("replication.cluster_size"),
        "the message names the key: {stderr}"
    );
}
