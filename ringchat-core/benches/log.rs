//! Micro-benchmarks of the replicated history: what the leader does per proposal (dedup
//! lookup and append), what a follower does per batch, reads, and the retention trim.
//! `cargo bench -p ringchat-core`.

use divan::{Bencher, black_box};
use ringchat_core::{CoreConfig, Input, Log, Node, Proposal, Role};
use ringchat_proto::ChatEntry;
use ringchat_proto::peer::NodeInfo;

fn main() {
    divan::main();
}

/// Entries held before each measurement: reads and the index work on a log of this size.
const HELD: u64 = 100_000;

fn entry(seq: u64) -> ChatEntry {
    ChatEntry {
        message_id: format!("bench-client-{:04}:{seq}", seq % 10),
        sequence_number: seq,
        client_id: format!("bench-client-{:04}", seq % 10),
        username: "bench".into(),
        content: "x".repeat(100),
        timestamp: 1_764_650_000.123,
        delivered: true,
        epoch: 7,
    }
}

fn filled(n: u64) -> Log {
    let mut log = Log::default();
    for seq in 1..=n {
        log.append(entry(seq));
    }
    log
}

/// The leader's path for a new message: the dedup lookup misses, then the append.
#[divan::bench]
fn append_with_dedup(bencher: Bencher) {
    let mut log = filled(HELD);
    let mut seq = HELD;
    bencher
        .with_inputs(|| {
            seq += 1;
            entry(seq)
        })
        .bench_local_values(|e| {
            if log.find(&e.client_id, &e.message_id).is_none() {
                log.append(e);
            }
        });
}

/// A resent message: the lookup hits.
#[divan::bench]
fn lookup_hit(bencher: Bencher) {
    let log = filled(HELD);
    let e = entry(HELD / 2);
    bencher.bench_local(|| log.find(black_box(&e.client_id), black_box(&e.message_id)));
}

#[divan::bench]
fn lookup_miss(bencher: Bencher) {
    let log = filled(HELD);
    let e = entry(HELD * 2);
    bencher.bench_local(|| log.find(black_box(&e.client_id), black_box(&e.message_id)));
}

#[divan::bench]
fn get_by_seq(bencher: Bencher) {
    let log = filled(HELD);
    bencher.bench_local(|| log.get(black_box(HELD / 2)).map(|e| e.epoch));
}

/// A follower storing a replication batch of 64 entries (what it does per frame).
#[divan::bench]
fn accept_batch_64(bencher: Bencher) {
    let mut log = filled(HELD);
    // Inputs are made in order before they are used: each batch follows the previous one.
    let mut next = HELD;
    bencher
        .counter(divan::counter::ItemsCount::new(64usize))
        .with_inputs(|| {
            let prev = next;
            next += 64;
            (prev, (prev + 1..=next).map(entry).collect::<Vec<_>>())
        })
        .bench_local_values(|(prev, batch)| assert!(log.accept_batch(prev, 7, &batch)));
}

/// The retention limit moving its window: keep 100,000, drop an eighth at a time.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn trim_an_eighth(bencher: Bencher) {
    bencher
        .with_inputs(|| filled(HELD + HELD / 8 + 1))
        .bench_local_values(|mut log| {
            let last = log.last_seq();
            log.trim(HELD as usize, last);
            log
        });
}

/// A lone server's leader: propose, which appends and commits at once (no followers).
#[divan::bench]
fn propose_and_commit(bencher: Bencher) {
    let mut node = lone_leader();
    let mut n = 0u64;
    bencher
        .with_inputs(|| {
            n += 1;
            Proposal {
                client_id: "bench-client-0001".into(),
                message_id: format!("bench-client-0001:{n}"),
                username: "bench".into(),
                content: "x".repeat(100),
                timestamp: 1_764_650_000.123,
            }
        })
        .bench_local_values(|p| {
            node.propose(1_000_000, p).unwrap();
            node.take_actions()
        });
}

fn lone_leader() -> Node {
    let me = NodeInfo {
        id: 1,
        address: "127.0.0.1".into(),
        port: 5001,
        client_port: 5101,
    };
    let cfg = CoreConfig::default();
    let mut node = Node::new(cfg, me, 0);
    let mut now = 0;
    while !(node.role() == Role::Leader && node.is_serving_leader()) {
        now += 10;
        assert!(now < 600_000, "a lone server leads within its timeouts");
        node.step(now, Input::Tick);
        node.take_actions();
    }
    node
}
