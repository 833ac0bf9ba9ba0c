//! Follower failure: a killed follower is spliced out of the ring on every server (not
//! only its neighbours) and writes go on; restarted, it rejoins and catches up. A frozen
//! follower (alive but silent) must not block writes either.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::report;
use ringchat_cluster_tests::wait::{LONG, SHORT, wait_for};
use ringchat_cluster_tests::wire::WireClient;
use std::time::Instant;

#[test]
fn killed_follower_is_spliced_out_then_rejoins_and_catches_up() {
    let cluster = Cluster::start_all(&[1, 2, 3, 4]);
    cluster.wait_converged(4, SHORT);
    let (mut writer, _) = WireClient::session(&cluster.client_addr(4), "writer", None);
    for i in 0..10 {
        writer.chat(&format!("before {i}"));
    }

    // 2 sits between 1 and 3; 4 is no neighbour of 2 but must learn of the change too.
    cluster.kill9(2);
    cluster.wait_converged(4, SHORT);

    // Writes go on, more than one sync chunk of them, so 2 has a real gap to fill later.
    for i in 0..150 {
        writer.send_chat(&format!("while 2 is down {i}"));
    }
    writer.recv_chat(150, 150);
    let history = cluster.wait_same_history(&[1, 3, 4], 160);

    cluster.start(2);
    cluster.wait_converged(4, LONG);
    let caught_up = cluster.wait_same_history(&[1, 2, 3, 4], 160);
    assert_eq!(caught_up, history);
    assert_eq!(cluster.status(2).last_seq, 160);
    // The leader counts it as a replicating follower again, fully matched.
    wait_for(SHORT, "the leader to replicate to 2 again", || {
        let leader = cluster.status(4);
        let follower = leader.followers.iter().find(|f| f.id == 2).cloned();
        match follower {
            Some(f)
                if f.state == "replicating" && f.match_seq == 160 && leader.commit_seq == 160 =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}, commit_seq {}", leader.commit_seq)),
        }
    });

    // And it keeps up with new writes.
    assert_eq!(writer.chat("after the rejoin"), 161);
    cluster.wait_same_history(&[1, 2, 3, 4], 161);
}

#[test]
fn frozen_follower_does_not_block_writes() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let (mut writer, _) = WireClient::session(&cluster.client_addr(3), "writer", None);
    writer.chat("before the freeze");

    cluster.freeze(1);
    let frozen = Instant::now();
    // The first write after the freeze waits for 1's replication timeout at most.
    writer.chat("during the freeze");
    report(&format!(
        "frozen follower: first write acked after {} ms",
        frozen.elapsed().as_millis()
    ));
    cluster.wait_converged_among(&[2, 3], 3, SHORT);
    for i in 0..20 {
        writer.chat(&format!("still frozen {i}"));
    }
    cluster.wait_same_history(&[2, 3], 22);
}

#[test]
fn thawed_follower_rejoins_and_catches_up() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let (mut writer, _) = WireClient::session(&cluster.client_addr(3), "writer", None);
    writer.chat("before the freeze");
    cluster.freeze(1);
    cluster.wait_converged_among(&[2, 3], 3, SHORT);
    for i in 0..20 {
        writer.chat(&format!("while 1 is frozen {i}"));
    }

    // Woken up, 1 finds every timer expired; it must end up a follower of 3 again (the
    // highest id leads), not the leader of a ring of its own.
    cluster.thaw(1);
    cluster.wait_converged(3, LONG);
    cluster.wait_same_history(&[1, 2, 3], 21);
    // The merge may have moved leadership (and so closed sessions) on the way.
    drop(writer);
    let (mut writer, _) = WireClient::session(&cluster.client_addr(3), "writer", Some(21));
    writer.chat("after the thaw");
    cluster.wait_same_history(&[1, 2, 3], 22);
}
