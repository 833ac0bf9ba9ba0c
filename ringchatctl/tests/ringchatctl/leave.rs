//! `leave`: the node drains, leaves the ring and exits 0; the ring shrinks without an
//! election when a follower leaves, and the clients go on chatting.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::SHORT;
use ringchat_cluster_tests::wire::WireClient;

use crate::support::{CTL_TIMEOUT, ctl, ready, wait_exited};

#[test]
fn leave_on_a_follower_exits_0_and_shrinks_the_ring() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let node1 = ready(&cluster, 1);
    let node3 = ready(&cluster, 3);
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "ctl-leave", None);
    assert_eq!(client.chat("before leave"), 1);

    let out = ctl(
        &node1.socket,
        &["leave", "--json", "--timeout", CTL_TIMEOUT],
    )
    .success();
    let v = out.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["id"], "1");
    assert_eq!(v["left"], true);
    assert_eq!(v["drain"]["was_leader"], false);
    assert_eq!(v["drain"]["leader"]["id"], "3");

    wait_exited(node1.pid, SHORT);
    let status = cluster.stop(1);
    assert_eq!(status.code(), Some(0), "ringchatd after leave: {status}");
    assert!(!node1.socket.exists(), "the socket is removed on exit");

    let after = cluster.wait_converged(3, SHORT);
    assert_eq!(
        after.epoch, before.epoch,
        "a follower leaving needs no election"
    );
    let ring = ctl(&node3.socket, &["ring", "--json"]).success().json();
    let ids: Vec<&str> = ring["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["2", "3"]);

    assert_eq!(client.chat("after leave"), 2);
    cluster.wait_same_history(&[2, 3], 2);
}

#[test]
fn leave_on_the_leader_hands_over_first_then_exits_0() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let node3 = ready(&cluster, 3);
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "ctl-leave-3", None);
    let (first, seq) = client.chat_with_id("before leave");

    let out = ctl(&node3.socket, &["leave", "--timeout", CTL_TIMEOUT]).success();
    let lines: Vec<&str> = out.stdout.lines().rev().take(2).collect();
    assert_eq!(lines[0], "left the ring", "{out:?}");
    assert!(
        lines[1].starts_with("drained: leader is now 2 (epoch ")
            && lines[1].ends_with("; 1 client moved"),
        "{out:?}"
    );
    wait_exited(node3.pid, SHORT);
    assert_eq!(cluster.stop(3).code(), Some(0), "ringchatd after leave");
    let after = cluster.wait_converged(2, SHORT);
    assert!(after.epoch > before.epoch);

    // The client goes on with the new leader; the acked message is there, once.
    let (mut client, missed) =
        WireClient::session(&cluster.client_addr(2), "ctl-leave-3", Some(seq));
    assert!(missed.is_empty(), "{missed:?}");
    assert_eq!(client.chat("after leave"), seq + 1);
    let history = cluster.wait_same_history(&[1, 2], 2);
    assert_eq!(history[0].message_id, first);
}
