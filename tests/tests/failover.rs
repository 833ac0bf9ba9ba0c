//! Failover: the leader dies (`kill -9`) while the real `ringchat-client` keeps sending.
//! The next highest id leads, the client follows by itself and gets every message acked,
//! and every survivor stores every acked message exactly once at the same
//! `sequence_number`. The time from the kill to the next ack is reported (not asserted).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::real_client::RealClient;
use ringchat_cluster_tests::wait::{LONG, SHORT, wait_until};
use ringchat_cluster_tests::wire::{WireClient, chat_request};
use ringchat_cluster_tests::{ChatEntry, NodeId, Seq, assert_acked_once, report};
use ringchat_proto::server::ServerMessage;

/// Gap between two lines the client is fed.
const PACE: Duration = Duration::from_millis(10);

/// Checks what the survivors hold against what the client saw acked: `total` entries,
/// identical everywhere, sequence numbers 1..=total, each acked message once at its
/// acked sequence number, no `(client_id, message_id)` twice, every line's text once.
fn check_survivors(
    cluster: &Cluster,
    survivors: &[NodeId],
    acked: &BTreeMap<String, Seq>,
    total: usize,
) -> Vec<ChatEntry> {
    let history = cluster.wait_same_history(survivors, total);
    let seqs: Vec<Seq> = history.iter().map(|e| e.sequence_number).collect();
    assert_eq!(
        seqs,
        (1..=total as Seq).collect::<Vec<_>>(),
        "sequence numbers"
    );
    let keys: BTreeSet<(&str, &str)> = history
        .iter()
        .map(|e| (e.client_id.as_str(), e.message_id.as_str()))
        .collect();
    assert_eq!(
        keys.len(),
        history.len(),
        "a (client_id, message_id) is stored twice"
    );
    assert_acked_once(&history, acked);
    let texts: BTreeSet<&str> = history.iter().map(|e| e.content.as_str()).collect();
    let expected: BTreeSet<String> = (1..=total).map(|i| format!("message {i}")).collect();
    assert_eq!(
        texts,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "every line is stored once"
    );
    history
}

/// Feeds `client` the lines `range`, PACE apart; when line `kill_at.0` is out and acked,
/// kills leader `kill_at.1` and returns when that happened.
fn feed(
    cluster: &Cluster,
    client: &mut RealClient,
    range: std::ops::RangeInclusive<usize>,
    kill_at: (usize, NodeId),
) -> Instant {
    let mut killed = None;
    for i in range {
        client.send_line(&format!("message {i}"));
        if i == kill_at.0 {
            wait_until(SHORT, &format!("{i} acks before the kill"), || {
                client.delivered().len() >= i
            });
            cluster.kill9(kill_at.1);
            killed = Some(Instant::now());
        }
        std::thread::sleep(PACE);
    }
    killed.expect("the kill point lies in the range")
}

/// Milliseconds from `since` to the first ack after it.
fn first_ack_after(client: &RealClient, since: Instant) -> u128 {
    client
        .deliveries()
        .iter()
        .filter(|(_, _, at)| *at > since)
        .map(|(_, _, at)| at.duration_since(since).as_millis())
        .min()
        .expect("an ack after the kill")
}

#[test]
fn leader_kill9_while_a_client_sends() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let mut client = RealClient::scripted(&cluster.client_addrs(), "sender", "failover-1");

    let total = 60;
    let killed = feed(&cluster, &mut client, 1..=total, (20, 3));
    let status = client.finish();
    assert!(
        status.success(),
        "ringchat-client exited with {status}; stderr:\n{}",
        client.stderr()
    );
    let acked = client.delivered();
    assert_eq!(
        acked.len(),
        total,
        "every line is acked once the client exits 0"
    );
    report(&format!(
        "failover: leader kill -9 to the next acked message: {} ms",
        first_ack_after(&client, killed)
    ));

    let after = cluster.wait_converged(2, SHORT);
    assert!(
        after.epoch > before.epoch,
        "a new election raises the epoch"
    );
    check_survivors(&cluster, &[1, 2], &acked, total);
}

#[test]
fn two_leaders_killed_in_a_row() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let mut client = RealClient::scripted(&cluster.client_addrs(), "sender", "failover-2");

    let killed = feed(&cluster, &mut client, 1..=20, (10, 3));
    cluster.wait_converged(2, SHORT);
    report(&format!(
        "failover 3 -> 2: {} ms to the next acked message",
        first_ack_after(&client, killed)
    ));
    let killed = feed(&cluster, &mut client, 21..=40, (30, 2));
    let status = client.finish();
    assert!(status.success(), "stderr:\n{}", client.stderr());
    report(&format!(
        "failover 2 -> 1: {} ms to the next acked message",
        first_ack_after(&client, killed)
    ));

    cluster.wait_converged(1, SHORT);
    let acked = client.delivered();
    assert_eq!(acked.len(), 40);
    check_survivors(&cluster, &[1], &acked, 40);
}

#[test]
fn frozen_leader_is_replaced() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let mut client = RealClient::scripted(&cluster.client_addrs(), "sender", "failover-3");
    for i in 1..=10 {
        client.send_line(&format!("message {i}"));
    }
    wait_until(SHORT, "10 acks", || client.delivered().len() == 10);

    // A hung leader keeps its sockets open: only heartbeats and client pings can tell.
    cluster.freeze(3);
    let frozen = Instant::now();
    cluster.wait_converged_among(&[1, 2], 2, SHORT);
    report(&format!(
        "frozen leader: new leader serving after {} ms",
        frozen.elapsed().as_millis()
    ));
    for i in 11..=20 {
        client.send_line(&format!("message {i}"));
    }
    let status = client.finish();
    assert!(status.success(), "stderr:\n{}", client.stderr());
    report(&format!(
        "frozen leader: next acked message after {} ms",
        first_ack_after(&client, frozen)
    ));
    let acked = client.delivered();
    assert_eq!(acked.len(), 20);
    check_survivors(&cluster, &[1, 2], &acked, 20);
}

#[test]
fn thawed_leader_rejoins_and_keeps_every_acked_message() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let mut acked = BTreeMap::new();
    let (mut first, _) = WireClient::session(&cluster.client_addr(3), "first", None);
    for i in 1..=10 {
        let (id, seq) = first.chat_with_id(&format!("message {i}"));
        acked.insert(id, seq);
    }
    cluster.freeze(3);
    cluster.wait_converged_among(&[1, 2], 2, SHORT);
    let (mut second, _) = WireClient::session(&cluster.client_addr(2), "second", None);
    for i in 11..=20 {
        let (id, seq) = second.chat_with_id(&format!("message {i}"));
        acked.insert(id, seq);
    }

    // The old leader wakes up in an old epoch. One ring must result, led by the highest
    // id, holding every message acked on either side exactly once.
    cluster.thaw(3);
    cluster.wait_converged(3, LONG);
    check_survivors(&cluster, &[1, 2, 3], &acked, 20);
    let (mut third, _) = WireClient::session(&cluster.client_addr(3), "third", None);
    assert_eq!(third.chat("message 21"), 21);
}

#[test]
fn a_resend_after_failover_is_deduplicated() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let (mut c, _) = WireClient::session(&cluster.client_addr(3), "dedup", None);
    let (id, seq) = c.chat_with_id("acked by the old leader");
    cluster.kill9(3);
    cluster.wait_converged(2, SHORT);

    // The client did not see the ack (say) and resends with the same message id.
    let (mut c, _) = WireClient::session(&cluster.client_addr(2), "dedup", Some(0));
    c.send(&chat_request(
        "dedup",
        "dedup",
        "acked by the old leader",
        &id,
    ));
    match c.recv_until(|m| matches!(m, ServerMessage::MessageDelivered(_))) {
        ServerMessage::MessageDelivered(d) => {
            assert_eq!(d.message_id, id);
            assert_eq!(d.sequence_number, seq, "the new leader knows the message");
        }
        _ => unreachable!(),
    }
    assert_eq!(c.chat("a new one"), seq + 1);
    cluster.wait_same_history(&[1, 2], 2);
}
