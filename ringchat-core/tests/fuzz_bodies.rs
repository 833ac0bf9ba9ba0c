//! The state-machine fuzz bodies (`fuzz/src/node.rs`) under proptest, in the normal test
//! run: arbitrary scripts of ring messages (any kind, any sender, absurd epochs and
//! sequence numbers, out of order), ticks, discoveries, lost peers and proposals into one
//! `Node`, and arbitrary delivery schedules among three honest nodes. The bodies check the
//! invariants after every step. A fixed seed keeps CI repeatable; `PROPTEST_RNG_SEED=<n>`
//! and `PROPTEST_CASES=<n>` explore further.

#[path = "../../fuzz/src/node.rs"]
mod node;

use proptest::collection::vec;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").map_or(cases, |n| n as u32),
        rng_seed: proptest::test_runner::RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(5)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(600))]

    /// One node under arbitrary input keeps its invariants and never panics.
    #[test]
    fn a_node_takes_arbitrary_input(script in vec(any::<u8>(), 0..3000)) {
        node::node_inputs(&script);
    }

    /// Three honest nodes under an arbitrary delivery schedule (losses, delays, ticks,
    /// unreachable reports): never two leaders in one epoch.
    #[test]
    fn honest_nodes_under_any_schedule_elect_one_leader_per_epoch(
        script in vec(any::<u8>(), 0..4000),
    ) {
        node::ring_schedule(&script);
    }
}
