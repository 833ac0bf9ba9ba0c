//! `status` and `ring` against a live 3-node cluster agree with what a client sees: the
//! leader, its epoch, the members in ring order, and the followers' lag.

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::wait::{SHORT, wait_for};
use ringchat_cluster_tests::wire::{WireClient, ping_request};
use ringchat_proto::server::{LeaderInfo, ServerMessage};
use serde_json::Value;

use crate::support::{NodeProcess, ctl, ready};

/// What a connected client hears from the server it is on (`client_ping_ack`).
pub fn client_view(client: &mut WireClient) -> LeaderInfo {
    client.send(&ping_request(&client.client_id.clone()));
    match client.recv_until(|m| matches!(m, ServerMessage::ClientPingAck(_))) {
        ServerMessage::ClientPingAck(info) => info,
        _ => unreachable!(),
    }
}

fn ids(members: &Value) -> Vec<String> {
    members
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["id"].as_str().expect("ids are strings").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn status_and_ring_agree_with_what_clients_see() {
    let cluster = Cluster::start_all(&[1, 2, 3]);
    cluster.wait_converged(3, SHORT);
    let nodes: Vec<NodeProcess> = [1, 2, 3].map(|id| ready(&cluster, id)).into();
    let (mut client, _) = WireClient::session(&cluster.client_addr(3), "ctl-status", None);
    let mut last_seq = 0;
    for i in 1..=5 {
        last_seq = client.chat(&format!("message {i}"));
    }
    let seen = client_view(&mut client);
    assert!(seen.is_leader && seen.leader_id == Some(3), "{seen:?}");

    // Every node names the client's leader and epoch, the same ring, and holds every entry.
    for (i, node) in nodes.iter().enumerate() {
        let id = (i + 1).to_string();
        let status = wait_for(SHORT, &format!("node {id} to hold {last_seq}"), || {
            let out = ctl(&node.socket, &["status", "--json"]).success();
            let s = out.json();
            // Only the leader knows the commit point for sure.
            let committed = id != "3" || s["commit_seq"] == last_seq;
            if s["last_seq"] == last_seq && committed {
                Ok(s)
            } else {
                Err(out.stdout)
            }
        });
        assert_eq!(status["id"], id.as_str());
        assert_eq!(status["leader"]["id"], "3");
        let leader = &status["leader"];
        let client_addr = format!(
            "{}:{}",
            leader["address"].as_str().unwrap(),
            leader["client_port"]
        );
        assert_eq!(client_addr, cluster.client_addr(3));
        assert_eq!(status["epoch"], seen.epoch);
        assert_eq!(
            status["role"],
            if id == "3" { "leader" } else { "follower" }
        );
        assert_eq!(ids(&status["members"]), ["1", "2", "3"]);
        assert_eq!(status["clients"], if id == "3" { 1 } else { 0 });
    }

    // The leader's lag column: both followers caught up with the client's last message.
    let ring = wait_for(SHORT, "the followers' lag to reach 0", || {
        let out = ctl(&nodes[2].socket, &["ring", "--json"]).success();
        let r = out.json();
        let caught_up = r["members"].as_array().is_some_and(|m| {
            m.iter().all(|m| {
                m["state"] == "alive"
                    && if m["id"] == "3" {
                        m["lag_entries"].is_null()
                    } else {
                        m["lag_entries"] == 0 && m["replication"] == "replicating"
                    }
            })
        });
        if caught_up { Ok(r) } else { Err(out.stdout) }
    });
    assert_eq!(ring["leader"]["id"], "3");
    assert_eq!(ring["epoch"], seen.epoch);
    let members = ring["members"].as_array().unwrap();
    assert_eq!(ids(&ring["members"]), ["1", "2", "3"]);
    for (i, m) in members.iter().enumerate() {
        let id = i as u64 + 1;
        assert_eq!(m["position"], i + 1);
        assert_eq!(
            format!("{}:{}", m["address"].as_str().unwrap(), m["port"]),
            cluster.ring_addr(id)
        );
        assert_eq!(m["role"], if id == 3 { "leader" } else { "follower" });
    }
    let status = ctl(&nodes[2].socket, &["status", "--json"])
        .success()
        .json();
    let followers = status["followers"].as_array().unwrap();
    assert_eq!(ids(&status["followers"]), ["1", "2"]);
    assert!(followers.iter().all(|f| f["match_seq"] == last_seq));

    // A follower's view has no lag column.
    let ring1 = ctl(&nodes[0].socket, &["ring", "--json"]).success().json();
    assert!(
        ring1["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["lag_entries"].is_null())
    );
    assert_eq!(ring1["leader"]["id"], "3");

    // The human forms.
    for node in &nodes {
        let text = ctl(&node.socket, &["ring"]).success().stdout;
        let rows: Vec<&str> = text.lines().skip(2).take(3).collect();
        for (i, row) in rows.iter().enumerate() {
            let id = i as u64 + 1;
            assert!(
                row.starts_with(&format!("{id} ")) && row.contains(&cluster.ring_addr(id)),
                "row {i} of\n{text}"
            );
            assert_eq!(row.contains("leader"), id == 3, "{text}");
        }
    }
    let text = ctl(&nodes[2].socket, &["status"]).success().stdout;
    assert!(text.starts_with("node 3: leader, serving\n"), "{text}");
    assert!(
        text.contains(&format!("epoch:      {} (round", seen.epoch)),
        "{text}"
    );
    assert!(
        text.contains("members:    1, 2, 3 (3 in ring order)"),
        "{text}"
    );
    let text = ctl(&nodes[0].socket, &["history", "-n", "2"])
        .success()
        .stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("[4] [") && lines[0].ends_with("] ctl-status: message 4"));
    assert!(lines[1].starts_with("[5] [") && lines[1].ends_with("] ctl-status: message 5"));
    let history = ctl(&nodes[1].socket, &["history", "--json"])
        .success()
        .json();
    assert_eq!(history["entries"].as_array().map(Vec::len), Some(5));
}
