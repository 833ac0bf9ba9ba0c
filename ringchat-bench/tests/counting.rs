//! The bench tool counts correctly: small runs against the in-test fake leader, with
//! assertions on counts only (never on timings).

mod fake;

use std::time::Duration;

use fake::{FakeLeader, Knobs, start_follower};
use ringchat_bench::openloop::{self, Flavor, OpenLoopConfig};
use ringchat_bench::session::ConnectOptions;
use ringchat_bench::throughput::{self, ThroughputConfig};
use ringchat_bench::verify::{self, Acked};
use ringchat_bench::wire;

/// Generous limits: runs end by message count, so these only bound a broken run.
fn throughput_cfg(
    servers: Vec<String>,
    senders: usize,
    window: usize,
    messages: u64,
) -> ThroughputConfig {
    ThroughputConfig {
        connect: ConnectOptions::new(servers),
        senders,
        window,
        size: 100,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(120),
        max_messages: Some(messages),
        drain: Duration::from_secs(30),
        ack_timeout: Duration::from_secs(30),
        run_id: "t".into(),
        username: "bench".into(),
        redis: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_counts_every_ack_and_follows_the_redirect() {
    let leader = FakeLeader::start(Knobs::default()).await;
    let follower = start_follower(&leader.addr).await;
    // The follower is listed first: every sender must be redirected to the leader.
    let cfg = throughput_cfg(vec![follower, leader.addr.clone()], 3, 4, 25);
    let r = throughput::run(&cfg).await;
    assert!(r.fatal.is_empty(), "{:?}", r.fatal);
    assert_eq!(r.sent, 75);
    assert_eq!(r.acked, 75);
    assert_eq!(r.acked_in_window, 75);
    assert_eq!(r.commit_latency.count, 75);
    assert_eq!((r.unacked, r.failed, r.resent, r.reconnects), (0, 0, 0, 0));
    assert_eq!(
        (r.duplicate_acks, r.unknown_acks, r.broadcast_gaps),
        (0, 0, 0)
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(leader.log().len(), 75);
    let mut ids: Vec<String> = leader.log().into_iter().map(|e| e.message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 75, "every message stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_are_counted_as_errors_not_acks() {
    let leader = FakeLeader::start(Knobs {
        refuse_every: Some(5),
        ..Knobs::default()
    })
    .await;
    let r = throughput::run(&throughput_cfg(vec![leader.addr.clone()], 1, 3, 20)).await;
    assert_eq!(r.sent, 20);
    assert_eq!(r.failed, 4);
    assert_eq!(r.acked, 16);
    assert_eq!(r.commit_latency.count, 16);
    assert_eq!(r.unacked, 0);
    assert_eq!(r.errors.get("BAD_FIELD"), Some(&4));
    assert_eq!(leader.log().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reopened_and_the_message_resent_once() {
    let leader = FakeLeader::start(Knobs {
        drop_at: Some(7),
        ..Knobs::default()
    })
    .await;
    let r = throughput::run(&throughput_cfg(vec![leader.addr.clone()], 1, 1, 12)).await;
    assert!(r.fatal.is_empty(), "{:?}", r.fatal);
    assert_eq!(r.sent, 12);
    assert_eq!(r.acked, 12);
    assert_eq!(r.reconnects, 1);
    assert_eq!(r.resent, 1, "window 1: only the unacked message is resent");
    assert_eq!(r.unacked, 0);
    // The resend was deduplicated by the server: stored once.
    assert_eq!(leader.log().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_deliveries_to_every_listener() {
    let leader = FakeLeader::start(Knobs::default()).await;
    let cfg = OpenLoopConfig {
        connect: ConnectOptions::new(vec![leader.addr.clone()]),
        rate: 2000.0,
        listeners: 3,
        size: 50,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(120),
        max_messages: Some(40),
        drain: Duration::from_secs(30),
        ack_timeout: Duration::from_secs(30),
        run_id: "l".into(),
        username: "bench".into(),
        flavor: Flavor::Latency,
        redis: None,
    };
    let r = openloop::run(&cfg).await.expect("run");
    assert!(r.fatal.is_empty(), "{:?}", r.fatal);
    assert_eq!((r.sent, r.acked, r.unacked), (40, 40, 0));
    assert_eq!(r.commit_latency.count, 40);
    assert_eq!(r.deliveries, 120);
    assert_eq!(r.deliveries_in_window, 120);
    assert_eq!(r.delivery_latency.count, 120);
    assert_eq!(
        (r.missing_deliveries, r.duplicate_deliveries, r.recovered),
        (0, 0, 0)
    );
    assert_eq!(r.broadcast_gaps, 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_check_pages_through_a_long_history() {
    let leader = FakeLeader::start(Knobs {
        max_catch_up: Some(50),
        ..Knobs::default()
    })
    .await;
    let ours: Vec<String> = (1..=300).map(|n| wire::message_id("c", n)).collect();
    leader.seed(
        "other",
        &(0..1000).map(|n| format!("o:{n}")).collect::<Vec<_>>(),
    );
    leader.seed("c", &ours[..150]);
    leader.seed(
        "other",
        &(0..1200).map(|n| format!("p:{n}")).collect::<Vec<_>>(),
    );
    leader.seed("c", &ours[150..]);
    // Acked: all of ours, at the sequence numbers the fake gave them.
    let acked: Vec<Acked> = leader
        .log()
        .into_iter()
        .filter(|e| e.client_id == "c")
        .map(|e| Acked {
            counter: wire::counter_of("c", &e.message_id).expect("ours"),
            message_id: e.message_id,
            seq: e.sequence_number,
        })
        .collect();
    let connect = ConnectOptions::new(vec![leader.addr.clone()]);
    let scan = verify::scan(&connect, "reader", "c").await.expect("scan");
    assert_eq!(scan.entries, 2500);
    assert_eq!(scan.last_sequence, 2500);
    assert_eq!(scan.gaps, 0);
    assert_eq!(scan.ours.len(), 300);
    let v = verify::verify(&acked, &scan);
    assert!(v.ok, "{v:?}");
    assert_eq!((v.acked, v.found_once, v.missing), (300, 300, 0));

    // A message acked but not stored, and one stored twice, are both reported.
    let mut more = acked.clone();
    more.push(Acked {
        counter: 301,
        message_id: wire::message_id("c", 301),
        seq: 2501,
    });
    leader.seed("c", &[wire::message_id("c", 5)]);
    let scan = verify::scan(&connect, "reader", "c").await.expect("scan");
    let v = verify::verify(&more, &scan);
    assert!(!v.ok);
    assert_eq!((v.missing, v.duplicated, v.found_once), (1, 1, 299));
}
