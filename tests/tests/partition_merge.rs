//! Partition merge, real processes on loopback (available mode). Two sides that know
//! nothing of each other each elect a leader and acknowledge messages under the same
//! sequence numbers; then the higher side's leader finds the other through its `--peer`
//! seed. One leader results (the highest id); every server holds the winner's messages
//! first, at their sequence numbers, then the other side's, once each, in their order;
//! and a client of the losing side that reconnects with what it holds is told
//! `reset: true`.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::{LONG, SHORT};
use ringchat_cluster_tests::wire::{WireClient, connect_request};
use ringchat_cluster_tests::{Seq, assert_acked_once};
use ringchat_proto::server::ServerMessage;

#[test]
fn two_sides_that_acked_merge_into_one_history_and_reset_the_losers_clients() {
    let cluster = Cluster::new(&[1, 2, 3]);
    // Side {3}: its only seed (2) is not running yet, so it leads a ring of one.
    cluster.start_with(3, Some(&[2]), &[]);
    cluster.wait_converged_among(&[3], 3, SHORT);
    let (mut winner, _) = WireClient::session(&cluster.client_addr(3), "winner", None);
    let winner_acked: std::collections::BTreeMap<String, Seq> = (1..=5)
        .map(|i| winner.chat_with_id(&format!("winner {i}")))
        .collect();

    // Side {1, 2}, while 3 hangs: they know only each other.
    cluster.freeze(3);
    cluster.start_with(1, Some(&[2]), &[]);
    cluster.start_with(2, Some(&[1]), &[]);
    cluster.wait_converged_among(&[1, 2], 2, SHORT);
    let (mut loser, _) = WireClient::session(&cluster.client_addr(2), "loser", None);
    let loser_ids: Vec<String> = (1..=5)
        .map(|i| {
            let (id, seq) = loser.chat_with_id(&format!("loser {i}"));
            assert_eq!(seq, i, "the sides number independently");
            id
        })
        .collect();

    // Heal: 3 probes its seed 2, and the lower leader yields.
    cluster.thaw(3);
    cluster.wait_converged(3, LONG);
    let history = cluster.wait_same_history(&[1, 2, 3], 10);
    assert_acked_once(&history, &winner_acked);
    let merged: Vec<&str> = history[5..].iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(
        merged, loser_ids,
        "the losing side's messages follow, in their order"
    );

    // The winner's own client keeps its session and is sent the merged messages.
    let broadcast = winner.recv_chat(5, 0);
    let seqs: Vec<Seq> = broadcast.0.iter().map(|e| e.sequence_number).collect();
    assert_eq!(seqs, [6, 7, 8, 9, 10]);

    // The losing side's client was sent on to the new leader...
    match loser.recv_until(|m| matches!(m, ServerMessage::LeaderInfo(_))) {
        ServerMessage::LeaderInfo(info) => assert_eq!(info.leader_id, Some(3)),
        _ => unreachable!(),
    }
    // ...where what it holds (1..=5 of its side) is no longer this history.
    let mut back = WireClient::open(&cluster.client_addr(3), "loser");
    back.send(&connect_request("loser", "loser", Some(5)));
    let pages = back.recv_history();
    assert!(pages[0].reset, "a client of the losing side is reset");
    let entries: Vec<Seq> = pages
        .iter()
        .flat_map(|p| p.messages.iter().map(|e| e.sequence_number))
        .collect();
    assert_eq!(
        entries,
        (1..=10).collect::<Vec<Seq>>(),
        "the merged history"
    );

    // A client that holds only what both sides shared (nothing) is not reset.
    let (mut fresh, _) = WireClient::session(&cluster.client_addr(3), "fresh", Some(0));
    fresh.expect_ping_ack();
}
