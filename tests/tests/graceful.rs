//! Graceful leave: SIGTERM (or SIGINT) makes a server hand off and exit 0. The leader's
//! clients are told where the new leader is, a new leader is elected quickly, and the
//! real client goes on without losing a message.

use std::time::Instant;

use nix::sys::signal::Signal;
use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::real_client::RealClient;
use ringchat_cluster_tests::wait::{SHORT, wait_until};
use ringchat_cluster_tests::wire::WireClient;
use ringchat_cluster_tests::{assert_acked_once, report};
use ringchat_proto::server::ServerMessage;

#[test]
fn sigterm_on_the_leader_hands_over() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let mut client = RealClient::scripted(&cluster.client_addrs(), "sender", "graceful-1");
    let (mut watcher, _) = WireClient::session(&cluster.client_addr(3), "watcher", None);
    for i in 1..=10 {
        client.send_line(&format!("message {i}"));
    }
    wait_until(SHORT, "10 acks", || client.delivered().len() == 10);

    let stopping = Instant::now();
    let status = cluster.stop(3);
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0, got {status}");
    let exited = stopping.elapsed();

    // Clients of the old leader hear where to go before it closes them.
    let info = watcher.recv_until(|m| matches!(m, ServerMessage::LeaderInfo(_)));
    if let ServerMessage::LeaderInfo(info) = info {
        assert!(
            info.leader_id == Some(2) || !info.is_available,
            "the leaving leader names its successor (or none yet): {info:?}"
        );
        assert!(!info.is_leader);
    }
    watcher.expect_closed();

    let after = cluster.wait_converged(2, SHORT);
    report(&format!(
        "graceful leave: exit after {} ms, new leader after {} ms",
        exited.as_millis(),
        stopping.elapsed().as_millis()
    ));
    assert!(after.epoch > before.epoch);

    for i in 11..=20 {
        client.send_line(&format!("message {i}"));
    }
    let status = client.finish();
    assert!(status.success(), "stderr:\n{}", client.stderr());
    let acked = client.delivered();
    assert_eq!(acked.len(), 20);
    let history = cluster.wait_same_history(&[1, 2], 20);
    assert_acked_once(&history, &acked);
}

#[test]
fn sigint_on_a_follower_leaves_the_ring() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let status = cluster.stop_with(1, Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "SIGINT must exit 0, got {status}");
    let after = cluster.wait_converged(3, SHORT);
    assert_eq!(
        after.epoch, before.epoch,
        "a follower leaving needs no election"
    );
    let (mut c, _) = WireClient::session(&cluster.client_addr(3), "c", None);
    assert_eq!(c.chat("still here"), 1);
}
