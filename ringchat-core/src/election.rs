//! Epoch arithmetic for Chang-Roberts rounds.
//!
//! An epoch is `round << 16 | initiator`: the server that starts a round stamps it with its
//! own id. Two servers that start rounds concurrently therefore never share an epoch (the
//! higher stamp wins the round), and two partitions that elect at the same time end up in
//! different epochs, which keeps "at most one leader per epoch" true even across a split.

use ringchat_proto::{Epoch, NodeId};

const INITIATOR_BITS: u32 = 16;
const INITIATOR_MASK: u64 = (1 << INITIATOR_BITS) - 1;

/// Largest server id the epoch stamp can carry.
pub const MAX_NODE_ID: NodeId = INITIATOR_MASK;

/// The epoch a server with id `me` starts a new round with, above every epoch it has seen.
pub fn next_epoch(seen: Epoch, me: NodeId) -> Epoch {
    ((epoch_round(seen) + 1) << INITIATOR_BITS) | (me & INITIATOR_MASK)
}

/// The round number of an epoch (for humans: how many elections have been held).
pub fn epoch_round(epoch: Epoch) -> u64 {
    epoch >> INITIATOR_BITS
}

/// The server that started the round.
pub fn epoch_initiator(epoch: Epoch) -> NodeId {
    epoch & INITIATOR_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_rise_and_carry_the_initiator() {
        let e1 = next_epoch(0, 3);
        assert_eq!((epoch_round(e1), epoch_initiator(e1)), (1, 3));
        let e2 = next_epoch(e1, 1);
        assert!(e2 > e1);
        assert_eq!((epoch_round(e2), epoch_initiator(e2)), (2, 1));
        // Concurrent starters in the same round get distinct epochs; the higher id's is larger.
        assert!(next_epoch(e1, 2) < next_epoch(e1, 5));
    }
}
