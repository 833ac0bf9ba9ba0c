//! `cluster.secret`: a keyed cluster works; a server without the key (or with another one)
//! is refused and can neither join, vote nor lead; forged ring frames and forged discovery
//! datagrams change nothing; clients (who have no key) still find the leader and chat; and
//! ring messages sent to the client port are refused there.
//!
//! Refusals are proven by the keyed servers' `ringchat_auth_failures_total` counters, and
//! "nothing changed" by their status (leader, epoch, ring) and history on the admin socket.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use ringchat_cluster_tests::NodeId;
use ringchat_cluster_tests::admin::Status;
use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::netns::{NetNs, netns_or_skip};
use ringchat_cluster_tests::ports::node_ports;
use ringchat_cluster_tests::real_client::RealClient;
use ringchat_cluster_tests::wait::{LONG, SHORT, wait_for};
use ringchat_cluster_tests::wire::{WireClient, frame};
use ringchat_proto::ErrorCode;
use ringchat_proto::auth::{
    AuthError, ClusterKey, Connector, DatagramAuth, HandshakeMessage, TAG_LEN, seal_datagram,
    to_hex,
};
use serde_json::{Value, json};

const SECRET_VAR: &str = "RINGCHAT_CLUSTER__SECRET";
const SECRET: &str = "the-test-cluster-secret-0123456789";
const WRONG: &str = "some-other-secret-of-enough-length";

/// Every ring `msg_type`, and the handshake's.
const RING_TYPES: &[&str] = &[
    "ring_join_request",
    "ring_join_accept",
    "ring_update",
    "ring_leave",
    "heartbeat",
    "heartbeat_ack",
    "election_start",
    "election_vote",
    "election_leader",
    "replication_sync",
    "replication_ack",
    "sync_request",
    "sync_response",
    "ring_auth_hello",
    "ring_auth_challenge",
    "ring_auth_proof",
];

/// Gives nodes `ids` the secret and a metrics endpoint; returns the endpoints by id.
fn keyed(cluster: &Cluster, ids: &[NodeId], secret: &str) -> BTreeMap<NodeId, String> {
    ids.iter()
        .map(|&id| {
            cluster.set_env(id, SECRET_VAR, secret);
            (id, with_metrics(cluster, id))
        })
        .collect()
}

/// Gives node `id` a metrics endpoint and returns its address.
fn with_metrics(cluster: &Cluster, id: NodeId) -> String {
    let metrics = format!("127.0.0.1:{}", node_ports().ring);
    cluster.set_env(id, "RINGCHAT_METRICS__ADDR", &metrics);
    metrics
}

/// Writes `secret` and a line break to a file in `dir`; returns its path.
fn secret_file(dir: &tempfile::TempDir, secret: &str) -> String {
    let path = dir.path().join("cluster.key");
    std::fs::write(&path, format!("{secret}\n")).expect("key file");
    path.display().to_string()
}

/// `ringchat_auth_failures_total{channel}` of the server whose metrics are at `addr`.
fn auth_failures(addr: &str, channel: &str) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("metrics at {addr}: {e}"))?;
    s.set_read_timeout(Some(SHORT)).map_err(|e| e.to_string())?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let series = format!("ringchat_auth_failures_total{{channel=\"{channel}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| format!("no {series}in the metrics of {addr}"))
}

/// Waits until every server of `metrics` counted at least `n` failures on `channel`.
fn wait_failures(metrics: &BTreeMap<NodeId, String>, channel: &str, n: u64) {
    for (id, addr) in metrics {
        wait_for(
            LONG,
            &format!("node {id} to count {n} {channel} auth failures"),
            || match auth_failures(addr, channel)? {
                got if got >= n => Ok(()),
                got => Err(format!("{got} so far")),
            },
        );
    }
}

/// Asserts that the keyed ring `ids` is as it was: same leader and epoch, same members.
fn assert_unchanged(cluster: &Cluster, ids: &[NodeId], before: &Status) {
    let leader = before.leader_id().expect("a leader before");
    let after = cluster.wait_converged_among(ids, leader, SHORT);
    assert_eq!(after.epoch, before.epoch, "the keyed ring held an election");
    assert_eq!(after.member_ids(), ids);
}

#[test]
fn servers_without_the_key_are_refused() {
    // 4 has another key, 5 none; both have the highest ids and know every keyed server.
    let cluster = Cluster::new(&[1, 2, 3, 4, 5]);
    let mut metrics = keyed(&cluster, &[1, 3], SECRET);
    // Node 2 reads the same key from a file (`cluster.secret_file`).
    let dir = tempfile::tempdir().expect("temporary directory");
    cluster.set_env(
        2,
        "RINGCHAT_CLUSTER__SECRET_FILE",
        &secret_file(&dir, SECRET),
    );
    metrics.insert(2, with_metrics(&cluster, 2));
    cluster.set_env(4, SECRET_VAR, WRONG);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    let before = cluster.wait_converged_among(&[1, 2, 3], 3, LONG);
    let (mut c, _) = WireClient::session(&cluster.client_addr(3), "keyed", None);
    c.chat("before the intruders");

    cluster.start(4);
    cluster.start(5);
    // The intruders end up leading rings of their own, and never in the keyed one.
    for intruder in [4, 5] {
        wait_for(
            LONG,
            &format!("intruder {intruder} to lead a ring of its own"),
            || {
                for id in [1, 2, 3] {
                    let s = cluster.try_status(id)?;
                    let ids = s.member_ids();
                    assert!(
                        !ids.contains(&4) && !ids.contains(&5) && s.leader_id() == Some(3),
                        "an intruder got into the keyed ring: {}",
                        s.summary()
                    );
                }
                let s = cluster.try_status(intruder)?;
                if s.role == "leader" && s.member_ids() == [intruder] {
                    Ok(())
                } else {
                    Err(s.summary())
                }
            },
        );
    }
    wait_failures(&metrics, "ring", 1);
    assert_unchanged(&cluster, &[1, 2, 3], &before);
    c.chat("after the intruders");
    let history = cluster.wait_same_history(&[1, 2, 3], 2);
    assert_eq!(history[1].content, "after the intruders");
    assert!(cluster.history(4).is_empty() && cluster.history(5).is_empty());
}

/// Ring frames from a host without the key, as a keyless server would send them.
fn forged_frames(epoch: u64) -> Vec<Value> {
    let envelope = |from: u64, body: Value| {
        let mut v = json!({"from": from, "sender_id": format!("Server {from}"),
            "timestamp": 1.0, "cluster": "ringchat"});
        v.as_object_mut()
            .expect("object")
            .extend(body.as_object().expect("object").clone());
        v
    };
    let leader = json!({"id": 99, "address": "127.0.0.1", "port": 1, "client_port": 2});
    vec![
        envelope(
            99,
            json!({"msg_type": "election_leader", "epoch": epoch + 100, "leader": leader}),
        ),
        envelope(
            3,
            json!({"msg_type": "replication_sync", "epoch": epoch, "prev_seq": 0,
                "prev_epoch": 0, "entries": [], "reset": true, "commit": 0}),
        ),
        envelope(
            3,
            json!({"msg_type": "ring_update", "epoch": epoch, "members": [], "version": 1_000_000}),
        ),
        envelope(
            99,
            json!({"msg_type": "election_start", "epoch": epoch + 100}),
        ),
    ]
}

/// A handshake with the wrong key: the keyed server's challenge does not verify under it,
/// and a made-up proof gets the connection closed.
fn wrong_key_handshake(addr: &str) {
    let mut c = WireClient::open(addr, "forger");
    let wrong = ClusterKey::new(WRONG.as_bytes()).expect("key");
    let (state, hello) = Connector::start(&wrong, 99, "ringchat");
    c.write_raw(&frame(&hello.to_bytes())).expect("hello");
    let payload = c
        .read_frame(SHORT)
        .expect("challenge")
        .expect("a challenge, not a close");
    let challenge = HandshakeMessage::parse(&payload, "ring_auth_challenge").expect("challenge");
    assert_eq!(state.finish(&challenge).err(), Some(AuthError::BadMac));
    let forged = HandshakeMessage::RingAuthProof {
        proof: to_hex(&[0x5a; TAG_LEN]),
    };
    c.write_raw(&frame(&forged.to_bytes())).expect("proof");
    c.expect_closed();
}

#[test]
fn forged_ring_frames_and_ring_messages_to_clients_change_nothing() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let metrics = keyed(&cluster, &[1, 2, 3], SECRET);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    let before = cluster.wait_converged(3, LONG);
    let (mut c, _) = WireClient::session(&cluster.client_addr(3), "keyed", None);
    c.chat("the only message");

    let mut refused = 0;
    for target in [3, 1] {
        let addr = cluster.ring_addr(target);
        for forged in forged_frames(before.epoch) {
            // Bare, and with a made-up MAC appended: closed before anything is read.
            let text = forged.to_string().into_bytes();
            let mut tagged = text.clone();
            tagged.extend_from_slice(&[0xa5; TAG_LEN]);
            for payload in [text, tagged] {
                let mut raw = WireClient::open(&addr, "forger");
                raw.write_raw(&frame(&payload)).expect("write");
                raw.expect_closed();
                refused += 1;
            }
        }
        wrong_key_handshake(&addr);
        refused += 1;
    }
    let per_node = refused / 2;
    for id in [1, 3] {
        let addr = BTreeMap::from([(id, metrics[&id].clone())]);
        wait_failures(&addr, "ring", per_node);
    }

    // The client port refuses every ring message with UNKNOWN_TYPE, before and after
    // `client_connect`, on the leader and on a follower, and keeps the session open.
    for target in [3, 1] {
        let mut client = WireClient::open(&cluster.client_addr(target), "ringer");
        // A follower redirects `client_connect`: there only the unconnected case.
        let states: &[bool] = if target == 3 {
            &[false, true]
        } else {
            &[false]
        };
        for &connected in states {
            if connected {
                client.send(&ringchat_cluster_tests::wire::connect_request(
                    "ringer", "ringer", None,
                ));
                client.recv_history();
            }
            for forged in forged_frames(before.epoch) {
                for kind in RING_TYPES {
                    let mut msg = forged.clone();
                    msg["msg_type"] = json!(kind);
                    client.send(&msg);
                    let e = client.expect_error(ErrorCode::UnknownType);
                    assert!(e.message.contains(kind), "{}", e.message);
                }
            }
            client.expect_ping_ack();
        }
    }

    assert_unchanged(&cluster, &[1, 2, 3], &before);
    let history = cluster.wait_same_history(&[1, 2, 3], 1);
    assert_eq!(history[0].content, "the only message");

    // The keyed ring still fails over: new links, new handshakes, a new election.
    cluster.kill9(3);
    cluster.wait_converged(2, LONG);
    let (mut c, held) = WireClient::session(&cluster.client_addr(2), "after", None);
    assert_eq!(held.len(), 1);
    c.chat("after the failover");
    cluster.wait_same_history(&[1, 2], 2);
}

/// Runs `f` on a thread inside network namespace `ns` (the test's own thread stays put).
fn in_netns<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let path = format!("/run/netns/{}", ns.name());
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .expect("the namespace thread panicked")
    })
}

/// The value after `flag` in the client's multicast arguments.
fn arg_after(args: &[String], flag: &str) -> String {
    let at = args.iter().position(|a| a == flag).expect(flag);
    args[at + 1].clone()
}

/// Asks like a client (no key, `server_port` 0) and returns the first answer, parsed and
/// as received.
fn ask_for_leader(sock: &UdpSocket, group: SocketAddr, cluster: &str) -> (Value, Vec<u8>) {
    let question = json!({"msg_type": "discovery_announce", "sender_id": "auth-test",
        "timestamp": 1.0, "server_address": "", "server_port": 0, "is_leader": false,
        "cluster": cluster});
    let mut buf = [0u8; 9000];
    wait_for(SHORT, "an answer to a client's discovery question", || {
        sock.send_to(question.to_string().as_bytes(), group)
            .map_err(|e| e.to_string())?;
        let (n, _) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&buf[..n]).map_err(|e| e.to_string())?;
        if v["msg_type"] == "discovery_response" {
            Ok((v, buf[..n].to_vec()))
        } else {
            Err(format!("got {v}"))
        }
    })
}

#[test]
fn forged_discovery_changes_nothing_and_clients_are_still_answered() {
    let Some(ns) = netns_or_skip("authenticated multicast discovery") else {
        return;
    };
    let cluster = Cluster::multicast(&[1, 2, 3], &ns);
    let metrics = keyed(&cluster, &[1, 2, 3], SECRET);
    for id in [2, 1, 3] {
        cluster.start(id);
    }
    let before = cluster.wait_converged(3, LONG);
    let args = cluster.multicast_client_args();
    let port: u16 = arg_after(&args, "--multicast-port").parse().expect("port");
    let name = arg_after(&args, "--cluster");
    let group = SocketAddr::from((Ipv4Addr::new(239, 255, 255, 250), port));

    in_netns(&ns, || {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let (answer, genuine) = ask_for_leader(&sock, group, &name);
        assert_eq!(answer["leader_id"], 3, "{answer}");
        assert!(
            answer["auth"]["mac"].is_string(),
            "answers carry a MAC: {answer}"
        );

        // A host without the key announces itself as a leader with a higher id and epoch,
        // without an auth field and with a made-up one.
        let forged = |auth: Option<Value>| {
            let mut v = json!({"msg_type": "discovery_announce", "sender_id": "Server 99",
                "timestamp": 1.0, "server_address": "127.0.0.1", "server_port": 1,
                "is_leader": true, "leader_id": 99, "leader_address": "127.0.0.1",
                "leader_port": 2, "epoch": before.epoch + 100, "cluster": name,
                "node_id": 99, "client_port": 2, "leader_ring_port": 1});
            if let Some(a) = auth {
                v["auth"] = a;
            }
            v.to_string()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let made_up = json!({"nonce": to_hex(&[7; 16]), "ts": now, "mac": to_hex(&[9; 32])});
        // With the right key but 2 minutes old: outside the window.
        let key = ClusterKey::new(SECRET.as_bytes()).expect("key");
        let stale = serde_json::to_value(DatagramAuth::unsealed(now - 120)).expect("auth");
        let mut stale = forged(Some(stale)).into_bytes();
        seal_datagram(&key, &mut stale).expect("seal");
        // A server's genuine answer, sent twice: the second copy is a replay everywhere.
        for datagram in [
            forged(None).as_bytes(),
            forged(Some(made_up)).as_bytes(),
            &stale,
            &genuine,
            &genuine,
        ] {
            sock.send_to(datagram, group).expect("send");
        }
        wait_failures(&metrics, "discovery", 4);
        // Nobody relays the forged leader.
        let (answer, _) = ask_for_leader(&sock, group, &name);
        assert_eq!(answer["leader_id"], 3, "{answer}");
    });
    assert_unchanged(&cluster, &[1, 2, 3], &before);

    // The real client finds the leader and chats without the key, and with it (then it
    // takes only answers with a valid MAC).
    let dir = tempfile::tempdir().expect("temporary directory");
    let with_key = [
        "--cluster-secret-file".to_string(),
        secret_file(&dir, SECRET),
    ];
    for (i, extra) in [&[][..], &with_key[..]].into_iter().enumerate() {
        let mut args = args.clone();
        args.extend_from_slice(extra);
        let id = format!("mc-auth-{i}");
        args.extend(["-u", "mc", "--client-id", &id, "--send", &id].map(String::from));
        let mut client = RealClient::spawn(&args, Some(ns.name()));
        let status = client.finish();
        assert!(status.success(), "client: {status}\n{}", client.stderr());
        let history = cluster.wait_same_history(&[1, 2, 3], i + 1);
        assert_eq!(history[i].content, id);
    }
}
