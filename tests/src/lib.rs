//! Harness for the RingChat cluster tests: they start the real `ringchatd` and
//! `ringchat-client` binaries on loopback (or inside a throw-away network namespace for
//! multicast) and check the system from the outside, through the client protocol, the
//! admin socket and the client's `--json` output.
//!
//! - [`bins`] builds the binaries once per test process and finds them.
//! - [`ports`] hands out ring/client port pairs that are free right now, so tests can run in
//!   parallel.
//! - [`cluster`] starts, stops, kills and inspects a set of `ringchatd` processes and kills
//!   every one of them when dropped, printing their logs if the test failed.
//! - [`admin`] speaks to a daemon's admin socket (`status`, `history`).
//! - [`wire`] is a small blocking protocol client for precise assertions.
//! - [`real_client`] runs `ringchat-client` in scripted mode and collects its output.
//! - [`netns`] creates a network namespace with a multicast-capable loopback.
//! - [`hosts`] builds a multi-host network (a namespace per server and client host on one
//!   bridge) and injects faults: cuts, partitions, netem delay and loss.
//! - [`load`] runs reconnecting load clients that record every ack and broadcast.
//! - [`invariants`] checks DESIGN.md's invariants over histories, acks and observed leaders.
//! - [`chaos`] runs one chaos scenario on top of those and reports its summary row.
//! - [`process`] spawns children that die with the test, signals and reaps them.
//! - [`wait`] polls a condition until a deadline: the tests never sleep to synchronise.
//!
//! The tests themselves live in `tests/*.rs`, one file per topic; run them with
//! `cargo test -p ringchat-cluster-tests`. Measurements (failover times) and `SKIP` notes
//! are written straight to stderr, so they show without `--nocapture`.

pub mod admin;
pub mod bins;
pub mod chaos;
pub mod cluster;
pub mod hosts;
pub mod invariants;
pub mod load;
pub mod netns;
pub mod ports;
pub mod process;
pub mod real_client;
pub mod wait;
pub mod wire;

use std::io::Write;

pub use ringchat_proto::{ChatEntry, NodeId, Seq};

/// Asserts that every acknowledged message (`message_id` -> acked sequence number) is in
/// `history` exactly once, at the sequence number it was acknowledged with.
pub fn assert_acked_once(history: &[ChatEntry], acked: &std::collections::BTreeMap<String, Seq>) {
    for (id, seq) in acked {
        let at: Vec<Seq> = history
            .iter()
            .filter(|e| &e.message_id == id)
            .map(|e| e.sequence_number)
            .collect();
        assert_eq!(
            at,
            vec![*seq],
            "acked message {id} must be stored once, at {seq}"
        );
    }
}

/// Locks `m`, also after a thread panicked holding it (the data is a log: still useful).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a line straight to the process's standard error, past the test harness's output
/// capture: for measurements and `SKIP` notes that should show in a normal `cargo test` run.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh pseudo-random `u64` (xorshift seeded from the pid, the clock and a counter);
/// good enough for picking ports and start delays, and needs no dependency.
pub fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        x = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}
