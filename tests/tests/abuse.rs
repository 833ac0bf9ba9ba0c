//! Resource bounds under abuse (DESIGN.md invariant 7, ARCHITECTURE.md section 8), against
//! real daemons: a thousand idle client connections and more than `max_clients`, a client
//! that never reads while others flood, ring-port peers that stall mid-frame or announce
//! the largest frame and never finish it, and a flood of forged discovery datagrams.
//!
//! In each case the daemon's resident memory stays within [`RSS_GROWTH_KIB`] of what it
//! was before the abuse (a bound, not a measurement: unbounded memory per connection or
//! per forged id would break it), the abusers are cut off, and a normal client keeps
//! getting its acks throughout. `hostile.rs` covers malformed input; this file covers
//! well-formed abuse of resources. Figures go to stderr (`abuse: ...`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ringchat_cluster_tests::cluster::Cluster;
use ringchat_cluster_tests::netns::{self, netns_or_skip};
use ringchat_cluster_tests::wait::{LONG, SHORT, wait_for, wait_until};
use ringchat_cluster_tests::wire::{WireClient, connect_request, frame, steady_chatter};
use ringchat_cluster_tests::{NodeId, random_u64, report};
use ringchat_proto::limits::MAX_PEER_FRAME;
use ringchat_proto::server::ServerMessage;
use serde_json::json;

/// How much a daemon's resident memory may grow under one abuse case. Generous (the cases
/// cost a few MB when bounded), yet 64 KiB per idle connection, or a few KiB per forged id,
/// kept forever would exceed it.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

/// The ring port closes a connection that has not completed a frame in this long
/// (`IDLE` in `ringchatd/src/net/peer_listener.rs`).
const RING_IDLE: Duration = Duration::from_secs(60);

/// Resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Asserts that node `id` grew by less than [`RSS_GROWTH_KIB`] since `baseline`.
fn assert_rss_bounded(cluster: &Cluster, id: NodeId, baseline: u64, case: &str) {
    let now = rss_kib(cluster.pid(id));
    report(&format!(
        "abuse: {case}: node {id} RSS {baseline} KiB before, {now} KiB under abuse"
    ));
    assert!(
        now < baseline + RSS_GROWTH_KIB,
        "{case}: node {id} grew from {baseline} KiB to {now} KiB"
    );
}

/// Lets this process (and the daemons it starts, which inherit it) open `need` files.
fn raise_fd_limit(need: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < need {
        setrlimit(Resource::RLIMIT_NOFILE, need.min(hard), hard).expect("setrlimit");
    }
}

/// Waits until the server closes `s` (end of stream or reset), reading and dropping
/// whatever it sent before.
fn wait_closed(s: &mut TcpStream, timeout: Duration, what: &str) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: still open after {timeout:?}"
                );
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A client that keeps chatting on `addr` until the returned guard is finished.
struct Chatter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Chatter {
    fn start(addr: String, netns: Option<String>) -> Chatter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = steady_chatter(addr, Arc::clone(&stop), netns);
        Chatter { stop, thread }
    }

    /// Stops it and asserts that it was served throughout.
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self
            .thread
            .join()
            .expect("the steady client was not served");
        assert!(acked > 0, "the steady client got no ack");
        report(&format!(
            "abuse: the steady client got {acked} acks meanwhile"
        ));
    }
}

/// 1000 idle connections (a tenth of them sessions that never speak again): memory stays
/// bounded, a chatting client is served, and every idle one is closed after
/// `client_idle_timeout`.
#[test]
fn a_thousand_idle_clients_are_bounded_and_closed() {
    raise_fd_limit(4096);
    let cluster = Cluster::new(&[1]);
    cluster.set_config("[limits]\nclient_idle_timeout = 5.0\n");
    cluster.start(1);
    cluster.wait_converged(1, SHORT);
    let addr = cluster.client_addr(1);
    let pid = cluster.pid(1);
    let chatter = Chatter::start(addr.clone(), None);
    let baseline = rss_kib(pid);
    let fds_before = open_fds(pid);

    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            if i % 10 == 0 {
                let hello = connect_request(&format!("idle{i}"), "idle", None).to_string();
                s.write_all(&frame(hello.as_bytes())).expect("write");
            }
            s
        })
        .collect();
    let held = wait_for(SHORT, "the daemon to hold the idle connections", || {
        let n = open_fds(pid).saturating_sub(fds_before);
        if n >= 1000 {
            Ok(n)
        } else {
            Err(format!("{n} more descriptors"))
        }
    });
    report(&format!(
        "abuse: 1000 idle clients: the daemon holds {held} more descriptors"
    ));
    assert_rss_bounded(&cluster, 1, baseline, "1000 idle clients");

    for (i, s) in idle.iter_mut().enumerate() {
        wait_closed(s, LONG, &format!("idle connection {i}"));
    }
    wait_until(SHORT, "only the steady session to remain", || {
        cluster.status(1).clients == 1
    });
    chatter.finish();
}

/// With `max_clients` low, the connections beyond it are closed at once, those within it
/// are served, and a freed slot is taken by the next client.
#[test]
fn connections_beyond_max_clients_are_refused() {
    let cluster = Cluster::new(&[1]);
    cluster.set_config("[limits]\nmax_clients = 20\n");
    cluster.start(1);
    cluster.wait_converged(1, SHORT);
    let addr = cluster.client_addr(1);
    let chatter = Chatter::start(addr.clone(), None);
    wait_until(SHORT, "the steady client's session", || {
        cluster.status(1).clients == 1
    });
    let mut held: Vec<WireClient> = (0..19)
        .map(|i| WireClient::open(&addr, &format!("held{i}")))
        .collect();
    for c in &mut held {
        c.expect_ping_ack();
    }
    for i in 0..10 {
        let mut extra = TcpStream::connect(&addr).expect("connect");
        wait_closed(
            &mut extra,
            SHORT,
            &format!("connection {i} beyond the limit"),
        );
    }
    for c in &mut held {
        c.expect_ping_ack();
    }
    held.truncate(14);
    let mut late = wait_for(SHORT, "a freed slot to be given out", || {
        let mut c = WireClient::open(&addr, "late");
        c.write_raw(&frame(b"{\"msg_type\":\"client_ping\"}"))
            .map_err(|e| e.to_string())?;
        match c.read_frame(SHORT) {
            Ok(Some(_)) => Ok(c),
            other => Err(format!("{other:?}")),
        }
    });
    late.expect_ping_ack();
    chatter.finish();
}

/// A session that never reads while another client floods large messages: it is
/// disconnected as a slow client, the leader's memory stays bounded, the others are
/// served throughout.
#[test]
fn a_client_that_never_reads_is_disconnected() {
    let cluster = Cluster::new(&[1, 2]);
    cluster.set_config("[limits]\nclient_queue = 1024\nhistory_retention = 1000\n");
    cluster.start(1);
    cluster.start(2);
    let before = cluster.wait_converged(2, SHORT);
    let addr = cluster.client_addr(2);
    let baseline = rss_kib(cluster.pid(2));
    let chatter = Chatter::start(addr.clone(), None);

    let mut deaf = TcpStream::connect(&addr).expect("connect");
    let hello = connect_request("deaf", "deaf", None).to_string();
    deaf.write_all(&frame(hello.as_bytes())).expect("write");
    wait_until(SHORT, "the deaf client's session", || {
        cluster.status(2).clients == 2
    });

    let (mut flooder, _) = WireClient::session(&addr, "flooder", None);
    let text = "x".repeat(4000);
    let slow_disconnects = || {
        cluster
            .admin(2, &json!({"cmd": "status"}))
            .map(|s| s["slow_client_disconnects"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    let mut sent = 0;
    while slow_disconnects() == 0 {
        assert!(
            sent < 20_000,
            "{sent} large broadcasts did not cut off the deaf client"
        );
        let ids: Vec<String> = (0..100).map(|_| flooder.send_chat(&text)).collect();
        for id in &ids {
            flooder.recv_until(
                |m| matches!(m, ServerMessage::MessageDelivered(d) if &d.message_id == id),
            );
        }
        sent += ids.len();
    }
    report(&format!(
        "abuse: a client that never reads: cut off after at most {sent} broadcasts of 4 KB"
    ));
    wait_closed(&mut deaf, SHORT, "the deaf client");
    assert_rss_bounded(&cluster, 2, baseline, "a client that never reads");
    flooder.chat("after the flood");
    chatter.finish();
    let after = cluster.wait_converged(2, SHORT);
    assert_eq!(after.epoch, before.epoch, "the flood caused an election");
}

/// Ring-port peers that send half a frame and stall, and peers that announce the largest
/// frame (16 MiB) and send only a part: memory grows with what arrives only, each is
/// closed after the ring port's idle timeout, and the ring keeps its leader.
#[test]
fn stalled_ring_peers_are_bounded_and_closed() {
    let cluster = Cluster::start_all(&[1, 2]);
    let before = cluster.wait_converged(2, SHORT);
    let baseline = rss_kib(cluster.pid(2));
    let chatter = Chatter::start(cluster.client_addr(2), None);
    let ring = cluster.ring_addr(2);
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&ring).expect("connect");
        let mut half = 100u32.to_be_bytes().to_vec();
        half.extend_from_slice(br#"{"from": 1, "msg_type""#);
        s.write_all(&half).expect("write");
        stalled.push(s);
    }
    let part = vec![b' '; 256 * 1024];
    for _ in 0..20 {
        let mut s = TcpStream::connect(&ring).expect("connect");
        s.write_all(&(MAX_PEER_FRAME as u32).to_be_bytes())
            .expect("write");
        s.write_all(&part).expect("write");
        stalled.push(s);
    }
    // Every stalled byte has reached the daemon once a fresh connection is answered.
    let mut probe = WireClient::open(&ring, "probe");
    probe.write_raw(&[0, 0, 0, 0]).expect("write");
    probe.expect_error(ringchat_proto::ErrorCode::BadFrame);
    assert_rss_bounded(&cluster, 2, baseline, "40 stalled ring peers (5 MiB sent)");

    for (i, s) in stalled.iter_mut().enumerate() {
        wait_closed(s, RING_IDLE + LONG, &format!("stalled ring connection {i}"));
    }
    report(&format!(
        "abuse: stalled ring peers closed {:.0} s after they stalled",
        started.elapsed().as_secs_f64()
    ));
    chatter.finish();
    let after = cluster.wait_converged(2, SHORT);
    assert_eq!(
        after.epoch, before.epoch,
        "stalled ring peers caused an election"
    );
}

/// The UDP port of a multicast cluster's discovery.
fn multicast_port(cluster: &Cluster) -> u16 {
    let args = cluster.multicast_client_args();
    args.iter()
        .position(|a| a == "--multicast-port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .expect("the cluster's multicast port")
}

/// Sends `datagrams` to the discovery group on `port` from inside `ns`, about 10 000 a
/// second (so that the servers read most of them rather than their socket buffers dropping
/// them); returns how long it took.
fn send_in(
    ns: &netns::NetNs,
    port: u16,
    datagrams: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> Duration {
    let name = ns.name().to_string();
    let sender = std::thread::spawn(move || {
        netns::enter(&name).unwrap_or_else(|e| panic!("{e}"));
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        socket.set_multicast_ttl_v4(0).expect("ttl");
        let group = (Ipv4Addr::new(239, 255, 255, 250), port);
        let started = Instant::now();
        for (i, d) in datagrams.enumerate() {
            let _ = socket.send_to(&d, group);
            if i % 20 == 19 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        started.elapsed()
    });
    sender.join().expect("the sending thread failed")
}

/// A forged discovery announcement: a random server id above the real ones, a random
/// epoch (any `u64`, also the absurd ones) and a random loopback address; it names no
/// leader.
fn forged_announcement() -> Vec<u8> {
    let id = 4 + random_u64() % 65_000;
    let r = || random_u64() as u8;
    json!({
        "msg_type": "discovery_announce",
        "sender_id": format!("Server {id}"),
        "timestamp": 0.0,
        "server_address": format!("127.{}.{}.{}", r(), r(), r()),
        "server_port": 1024 + random_u64() % 60_000,
        "is_leader": random_u64() & 1 == 1,
        "epoch": random_u64() >> (random_u64() % 64),
        "node_id": id,
        "client_port": 1024 + random_u64() % 60_000,
    })
    .to_string()
    .into_bytes()
}

/// Tens of thousands of forged discovery datagrams inside a namespace of the test's own:
/// every server's memory stays bounded, the ring keeps its leader, epoch and members,
/// clients are served, and an election afterwards still works (a forged epoch cannot make
/// the next one wrap around).
#[test]
fn a_flood_of_forged_discovery_datagrams_changes_nothing() {
    let Some(ns) = netns_or_skip("discovery flood") else {
        return;
    };
    let cluster = Cluster::multicast(&[1, 2, 3], &ns);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    let before = cluster.wait_converged(3, LONG);
    let baselines: Vec<(NodeId, u64)> = [1, 2, 3]
        .iter()
        .map(|&id| (id, rss_kib(cluster.pid(id))))
        .collect();
    let chatter = Chatter::start(cluster.client_addr(3), Some(ns.name().to_string()));
    let port = multicast_port(&cluster);
    const DATAGRAMS: usize = 30_000;
    let took = send_in(&ns, port, (0..DATAGRAMS).map(|_| forged_announcement()));
    report(&format!(
        "abuse: {DATAGRAMS} forged discovery datagrams sent in {:.1} s",
        took.as_secs_f64()
    ));
    for (id, baseline) in baselines {
        assert_rss_bounded(&cluster, id, baseline, "a discovery flood");
    }
    let after = cluster.wait_converged(3, SHORT);
    assert_eq!(
        after.epoch, before.epoch,
        "forged announcements caused an election"
    );
    chatter.finish();

    // Forged epochs raise the epoch the next round starts above (by design), but never
    // make it wrap below the current one: an election still converges, higher.
    cluster.admin(3, &json!({"cmd": "elect"})).expect("elect");
    wait_until(LONG, "node 3 to lead again at a higher epoch", || {
        cluster
            .try_status(3)
            .is_ok_and(|s| s.serving && s.epoch > after.epoch)
    });
    let elected = cluster.wait_converged(3, LONG);
    report(&format!(
        "abuse: after the flood an election moved epoch {} to {}",
        after.epoch, elected.epoch
    ));
    let stored = elected.last_seq;
    let chatter = Chatter::start(cluster.client_addr(3), Some(ns.name().to_string()));
    wait_until(SHORT, "a message stored after the election", || {
        cluster.status(3).last_seq > stored
    });
    chatter.finish();
}

/// What the design admits (ARCHITECTURE.md section 10): an announcement in the name of a
/// higher server that leads makes the real leader yield to it. The forged leader's address
/// answers nothing, so the ring elects again without it and serves; this checks that it
/// does, and reports how long it was without a leader.
#[test]
fn a_forged_higher_leader_costs_an_election_and_the_ring_recovers() {
    let Some(ns) = netns_or_skip("forged leader") else {
        return;
    };
    let cluster = Cluster::multicast(&[1, 2, 3], &ns);
    for id in [1, 2, 3] {
        cluster.start(id);
    }
    let before = cluster.wait_converged(3, LONG);
    let port = multicast_port(&cluster);
    // A port nothing listens on: the forged leader cannot be reached.
    let dead = ringchat_cluster_tests::ports::node_ports();
    let forged = json!({
        "msg_type": "discovery_announce",
        "sender_id": "Server 60000",
        "server_address": "127.0.0.1",
        "server_port": dead.ring,
        "is_leader": true,
        "leader_id": 60000,
        "leader_address": "127.0.0.1",
        "leader_port": dead.client,
        "leader_ring_port": dead.ring,
        "epoch": before.epoch + 1,
        "node_id": 60000,
        "client_port": dead.client,
    })
    .to_string();
    let started = Instant::now();
    send_in(&ns, port, std::iter::once(forged.into_bytes()));
    wait_until(LONG, "node 3 to lead again", || {
        cluster
            .try_status(3)
            .is_ok_and(|s| s.serving && s.epoch > before.epoch)
    });
    let after = cluster.wait_converged(3, LONG);
    report(&format!(
        "abuse: a forged higher leader: node 3 led again after {:.1} s (epoch {} -> {})",
        started.elapsed().as_secs_f64(),
        before.epoch,
        after.epoch
    ));
}
