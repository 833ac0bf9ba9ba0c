//! Join: a server with a higher id joins a running ring that already holds more history
//! than one sync chunk (`sync_chunk_size` 100). It becomes leader, holds exactly the old
//! history (nothing lost, nothing wiped on the others), and numbering goes on from there.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::{LONG, SHORT};
use ringchat_cluster_tests::wire::WireClient;
use ringchat_proto::server::ServerMessage;

#[test]
fn higher_id_joins_and_leads_with_the_full_history() {
    let cluster = Cluster::start_all(&[1, 2]);
    let before = cluster.wait_converged(2, SHORT);
    let (mut writer, _) = WireClient::session(&cluster.client_addr(2), "writer", None);
    let total = 250;
    for batch in 0..5 {
        for i in 0..50 {
            writer.send_chat(&format!("batch {batch} line {i}"));
        }
        writer.recv_chat(50, 50);
    }
    let old = cluster.wait_same_history(&[1, 2], total);

    // Node 3 knows 1 and 2; they do not know it yet.
    cluster.add(3);
    cluster.start(3);
    let after = cluster.wait_converged(3, LONG);
    assert!(after.epoch > before.epoch, "the takeover is a new epoch");
    let synced = cluster.wait_same_history(&[1, 2, 3], total);
    assert_eq!(synced, old, "the new leader holds exactly the old history");

    // The old leader hands its client over before closing it.
    let handover = writer.recv_until(|m| matches!(m, ServerMessage::LeaderInfo(_)));
    if let ServerMessage::LeaderInfo(info) = handover {
        assert!(
            info.leader_id == Some(3) || !info.is_available,
            "the old leader names the new one (or none yet): {info:?}"
        );
    }
    writer.expect_closed();

    // New clients get the last 100 entries on connect, and numbering continues.
    let (mut next, history) = WireClient::session(&cluster.client_addr(3), "next", None);
    assert_eq!(history, old[total - 100..].to_vec());
    assert_eq!(next.chat("after the join"), total as u64 + 1);
    let stored = cluster.wait_same_history(&[1, 2, 3], total + 1);
    assert_eq!(stored[..total], old[..]);
}
