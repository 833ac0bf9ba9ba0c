//! Election: whatever order the servers start in, the highest id leads, every server
//! agrees on the leader and the epoch, and the ring (members, successor, predecessor) is
//! the same on all of them. Followers send clients to the leader.

use std::time::Duration;

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::SHORT;
use ringchat_cluster_tests::wire::{WireClient, connect_request};
use ringchat_cluster_tests::{NodeId, random_u64};
use ringchat_proto::server::ServerMessage;

/// Starts `order` one after the other (each once its admin socket answers, then after a
/// random 0-250 ms pause) and checks the outcome.
fn start_in_order(order: &[NodeId]) {
    let cluster = Cluster::new(order);
    for &id in order {
        cluster.start(id);
        cluster.wait_ready(id);
        std::thread::sleep(Duration::from_millis(random_u64() % 250));
    }
    let highest = *order.iter().max().expect("ids");
    let leader = cluster.wait_converged(highest, SHORT);
    assert!(leader.epoch > 0, "the epoch rises with each election");

    // Still true a moment later (no second election started behind our back), and the
    // followers name the same leader to clients.
    let again = cluster.wait_converged(highest, SHORT);
    assert_eq!(
        again.epoch, leader.epoch,
        "the epoch changed without a failure"
    );
    for &id in order.iter().filter(|&&id| id != highest) {
        let mut c = WireClient::open(&cluster.client_addr(id), &format!("probe-{id}"));
        c.send(&connect_request(&c.client_id.clone(), "probe", None));
        match c.recv() {
            ServerMessage::LeaderInfo(info) => {
                assert_eq!(
                    info.leader_id,
                    Some(highest),
                    "leader_info of follower {id}"
                );
                assert!(info.is_available && !info.is_leader, "{info:?}");
                assert_eq!(
                    format!("127.0.0.1:{}", info.leader_port.expect("leader_port")),
                    cluster.client_addr(highest)
                );
            }
            other => panic!("follower {id} answered client_connect with {other:?}"),
        }
        c.expect_closed();
    }
}

#[test]
fn ascending_start_order() {
    start_in_order(&[1, 2, 3]);
}

#[test]
fn descending_start_order() {
    start_in_order(&[3, 2, 1]);
}

#[test]
fn mixed_start_order() {
    start_in_order(&[2, 3, 1]);
}

#[test]
fn sparse_ids_in_random_order() {
    let mut ids: Vec<NodeId> = vec![7, 300, 42, 65_535];
    for i in (1..ids.len()).rev() {
        ids.swap(i, (random_u64() % (i as u64 + 1)) as usize);
    }
    start_in_order(&ids);
}

#[test]
fn simultaneous_start() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
}
