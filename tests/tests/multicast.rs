//! Multicast discovery, inside a network namespace of the test's own (multicast never
//! leaves the machine): servers started without `--peer` find each other and elect the
//! highest id, and the real client finds the leader with `--discovery multicast`.
//! Without root or namespace support the test prints `SKIP: <reason>` and passes.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::netns::netns_or_skip;
use ringchat_cluster_tests::real_client::RealClient;
use ringchat_cluster_tests::wait::LONG;

#[test]
fn servers_and_client_find_each_other_by_multicast() {
    let Some(ns) = netns_or_skip("multicast discovery") else {
        return;
    };
    let cluster = Cluster::multicast(&[1, 2, 3], &ns);
    for id in [2, 1, 3] {
        cluster.start(id);
    }
    cluster.wait_converged(3, LONG);

    let mut args = cluster.multicast_client_args();
    args.extend(
        [
            "-u",
            "mc",
            "--client-id",
            "mc-client",
            "--send",
            "found you",
        ]
        .map(String::from),
    );
    let mut client = RealClient::spawn(&args, Some(ns.name()));
    let status = client.finish();
    assert!(
        status.success(),
        "client exited with {status}; stderr:\n{}",
        client.stderr()
    );
    assert_eq!(client.delivered().len(), 1);
    let history = cluster.wait_same_history(&[1, 2, 3], 1);
    assert_eq!(history[0].content, "found you");
    assert_eq!(history[0].client_id, "mc-client");
}
