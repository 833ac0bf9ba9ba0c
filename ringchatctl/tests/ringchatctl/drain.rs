//! `drain` on the leader with a connected client: leadership goes to the highest other id,
//! the client is told where and chats on there, new clients are sent on, and no acked
//! message is lost. `undrain` and `elect` then bring the highest id back.

use std::collections::BTreeMap;

use ringchat_cluster_tests::assert_acked_once;
use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::SHORT;
use ringchat_cluster_tests::wire::{WireClient, connect_request, parse};
use ringchat_proto::server::{LeaderInfo, ServerMessage};

use crate::elect::parse_elected;
use crate::support::{CTL_TIMEOUT, ctl, ready};

#[test]
fn drain_hands_leader_and_clients_over_and_undrain_takes_them_back() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let node3 = ready(&cluster, 3);
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "ctl-drain", None);
    for i in 1..=3 {
        let (id, seq) = client.chat_with_id(&format!("before drain {i}"));
        acked.insert(id, seq);
    }

    let out = ctl(&node3.socket, &["drain", "--timeout", CTL_TIMEOUT]).success();
    let last = out.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("drained: leader is now 2 (epoch ") && last.ends_with("; 1 client moved"),
        "{out:?}"
    );
    let after = cluster.wait_converged(2, SHORT);
    assert!(after.epoch > before.epoch);
    assert!(
        last.contains(&format!("(epoch {}, round", after.epoch)),
        "{last}"
    );
    let status = ctl(&node3.socket, &["status", "--json"]).success().json();
    assert_eq!(status["draining"], true);
    assert_eq!(status["serving"], false);
    assert_eq!(status["clients"], 0);

    // The client was told where the new leader is, and goes on there.
    let info = told_leader(&mut client);
    assert_eq!(info.leader_id, Some(2), "{info:?}");
    let addr = format!(
        "{}:{}",
        info.leader_address.as_deref().expect("leader address"),
        info.leader_port.expect("leader port")
    );
    assert_eq!(addr, cluster.client_addr(2));
    let (mut client, missed) = WireClient::session(&addr, "ctl-drain", Some(3));
    assert!(missed.is_empty(), "{missed:?}");
    for i in 1..=2 {
        let (id, seq) = client.chat_with_id(&format!("after drain {i}"));
        acked.insert(id, seq);
    }

    // A new client of the drained node is sent on to the new leader.
    let mut newcomer = WireClient::open(&cluster.client_addr(3), "ctl-newcomer");
    newcomer.send(&connect_request("ctl-newcomer", "newcomer", None));
    match newcomer.recv() {
        ServerMessage::LeaderInfo(i) => assert_eq!(i.leader_id, Some(2), "{i:?}"),
        other => panic!("a drained node must answer with leader_info, got {other:?}"),
    }

    // Every acked message, once, at its sequence number, on every node.
    let history = cluster.wait_same_history(&[1, 2, 3], acked.len());
    assert_acked_once(&history, &acked);

    // Undrain, then a forced round: the highest id leads again.
    let out = ctl(&node3.socket, &["undrain"]).success();
    assert_eq!(out.stdout, "undrained: the node takes clients again\n");
    let out = ctl(&node3.socket, &["elect", "--timeout", CTL_TIMEOUT]).success();
    let (leader, epoch, _) = parse_elected(&out.stdout);
    assert_eq!(leader, "3");
    let back = cluster.wait_converged(3, SHORT);
    assert!(epoch > after.epoch && back.epoch >= epoch);
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "ctl-drain", Some(5));
    let seq = client.chat("back on 3");
    assert_eq!(seq, 6);
}

/// The `leader_info` naming a leader that the client's server sent it before closing it;
/// fails listing what came instead.
fn told_leader(client: &mut WireClient) -> LeaderInfo {
    let mut got = Vec::new();
    while let Some(payload) = client.read_frame(SHORT).expect("read a frame") {
        match parse(&payload) {
            ServerMessage::LeaderInfo(info) if info.leader_id.is_some() => return info,
            other => got.push(other),
        }
    }
    panic!("the drained leader closed its client without naming the new leader; it sent {got:?}");
}
