//! `elect` on a live cluster: a new round, whose leader (the highest id) it reports with
//! the new epoch, and clients see that epoch.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::SHORT;
use ringchat_cluster_tests::wire::WireClient;

use crate::status::client_view;
use crate::support::{CTL_TIMEOUT, ctl, ready};

/// `(leader, epoch, round)` from "new leader 3, epoch N (round R)".
pub fn parse_elected(stdout: &str) -> (String, u64, u64) {
    let rest = stdout
        .trim_end()
        .strip_prefix("new leader ")
        .unwrap_or_else(|| panic!("unexpected elect output {stdout:?}"));
    let (leader, rest) = rest.split_once(", epoch ").expect("epoch");
    let (epoch, rest) = rest.split_once(" (round ").expect("round");
    let round = rest.strip_suffix(')').expect("closing parenthesis");
    (
        leader.to_owned(),
        epoch.parse().expect("epoch number"),
        round.parse().expect("round number"),
    )
}

#[test]
fn elect_reports_the_leader_of_a_newer_epoch() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    let before = cluster.wait_converged(3, SHORT);
    let node1 = ready(&cluster, 1);
    let node3 = ready(&cluster, 3);

    let out = ctl(&node1.socket, &["elect", "--timeout", CTL_TIMEOUT]).success();
    let (leader, epoch, round) = parse_elected(&out.stdout);
    assert_eq!(leader, "3");
    assert!(epoch > before.epoch, "{epoch} after {}", before.epoch);
    let after = cluster.wait_converged(3, SHORT);
    assert_eq!(after.epoch, epoch, "the reported epoch is the ring's");
    let status = ctl(&node1.socket, &["status", "--json"]).success().json();
    assert_eq!(status["round"], round);

    // On the leader itself, as JSON; a client then sees that epoch.
    let out = ctl(
        &node3.socket,
        &["elect", "--json", "--timeout", CTL_TIMEOUT],
    )
    .success();
    let v = out.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["leader"]["id"], "3");
    let leader_epoch = v["leader_epoch"].as_u64().expect("leader_epoch");
    let round_epoch = v["epoch"].as_u64().expect("epoch");
    assert!(round_epoch > epoch && leader_epoch >= round_epoch, "{v}");
    assert!(v["round"].as_u64().is_some_and(|r| r > round), "{v}");
    cluster.wait_converged(3, SHORT);
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "ctl-elect", None);
    assert_eq!(client_view(&mut client).epoch, leader_epoch);
}
