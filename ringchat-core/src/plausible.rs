//! Bounds on the numbers a ring message or a discovery may carry.
//!
//! Epochs, sequence numbers and ring versions only ever grow by one, so a real cluster stays far below
//! these bounds; a number beyond them can only be forged or corrupt. Refusing it at the
//! door keeps every `+ 1` in the state machine from overflowing (a panic in a debug build,
//! a wrap in a release build, which would make the next epoch *lower* than the last).

use ringchat_proto::peer::PeerBody;
use ringchat_proto::{Epoch, Seq};

use crate::election::epoch_round;

/// Election rounds no real cluster reaches (one election a millisecond for 4000 years).
pub const MAX_PLAUSIBLE_ROUND: u64 = 1 << 47;

/// Sequence numbers no real history reaches (a million messages a second for 100 000
/// years).
pub const MAX_PLAUSIBLE_SEQ: Seq = 1 << 62;

/// Whether `epoch` can be a real one.
pub fn plausible_epoch(epoch: Epoch) -> bool {
    epoch_round(epoch) < MAX_PLAUSIBLE_ROUND
}

/// Whether a discovered server's epoch is taken: only the lower half of the plausible
/// rounds, so that the rounds started above a (forged) discovered epoch stay plausible to
/// the other servers for 2^46 elections, instead of being refused from the next one on.
pub fn plausible_discovered_epoch(epoch: Epoch) -> bool {
    epoch_round(epoch) < MAX_PLAUSIBLE_ROUND / 2
}

fn seq_ok(seq: Seq) -> bool {
    seq < MAX_PLAUSIBLE_SEQ
}

/// Whether every epoch and sequence number in `body` can be a real one.
pub fn plausible_body(body: &PeerBody) -> bool {
    let entries_ok = |entries: &[ringchat_proto::ChatEntry]| {
        entries
            .iter()
            .all(|e| seq_ok(e.sequence_number) && plausible_epoch(e.epoch))
    };
    plausible_epoch(body.epoch())
        && match body {
            PeerBody::RingJoinRequest {
                last_seq,
                last_epoch,
                ..
            }
            | PeerBody::ReplicationAck {
                last_seq,
                last_epoch,
                ..
            } => seq_ok(*last_seq) && plausible_epoch(*last_epoch),
            PeerBody::ReplicationSync {
                prev_seq,
                prev_epoch,
                entries,
                commit,
                ..
            } => {
                seq_ok(*prev_seq)
                    && plausible_epoch(*prev_epoch)
                    && seq_ok(*commit)
                    && entries_ok(entries)
            }
            PeerBody::SyncRequest { from_seq, .. } => seq_ok(*from_seq),
            // Versions count ring changes within an epoch, as slowly as sequence numbers.
            PeerBody::RingUpdate { version, .. } => seq_ok(*version),
            PeerBody::SyncResponse {
                entries, last_seq, ..
            } => seq_ok(*last_seq) && entries_ok(entries),
            PeerBody::RingJoinAccept { .. }
            | PeerBody::RingLeave { .. }
            | PeerBody::Heartbeat { .. }
            | PeerBody::HeartbeatAck { .. }
            | PeerBody::ElectionStart { .. }
            | PeerBody::ElectionVote { .. }
            | PeerBody::ElectionLeader { .. } => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::next_epoch;

    #[test]
    fn the_next_epoch_after_any_plausible_one_is_higher() {
        let top = (MAX_PLAUSIBLE_ROUND - 1) << 16 | 0xffff;
        assert!(plausible_epoch(top));
        assert!(!plausible_epoch(top + 1));
        assert!(next_epoch(top, 1) > top);
        let discovered = (MAX_PLAUSIBLE_ROUND / 2 - 1) << 16 | 0xffff;
        assert!(plausible_discovered_epoch(discovered));
        assert!(!plausible_discovered_epoch(discovered + 1));
        assert!(plausible_epoch(next_epoch(discovered, 1)));
        assert!(!plausible_body(&PeerBody::ElectionStart {
            epoch: u64::MAX
        }));
        assert!(!plausible_body(&PeerBody::SyncRequest {
            epoch: 1,
            from_seq: u64::MAX,
            limit: 1
        }));
    }
}
