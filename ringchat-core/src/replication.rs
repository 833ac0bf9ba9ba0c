//! The leader's view of each follower's replication progress.

use ringchat_proto::{Epoch, Seq};

use crate::Millis;

/// Where a follower stands, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerState {
    /// A new leader waits for the follower to report its history.
    Probing,
    /// It reported; the new leader is still recovering.
    Reported,
    /// Its history diverged from ours (it led elsewhere during a partition): we pull its
    /// entries and append those we lack, then replace its history with ours.
    Merging,
    /// Catching up (a joiner, or a follower that was reset): not counted for commits.
    Syncing,
    /// Caught up: every commit waits for its acknowledgement.
    Replicating,
}

/// Replication progress of one follower.
#[derive(Debug, Clone)]
pub struct FollowerProgress {
    /// Its state.
    pub state: FollowerState,
    /// Highest entry known to be stored on it.
    pub match_seq: Seq,
    /// Next entry to send.
    pub next_seq: Seq,
    /// The next batch replaces its history (it diverged from ours).
    pub reset: bool,
    /// Since when it has owed an acknowledgement, if it does.
    pub waiting_since: Option<Millis>,
    /// When it last acknowledged anything.
    pub last_ack: Millis,
    /// Next entry to pull while merging.
    pub pull_seq: Seq,
    /// While merging: everything pulled so far is identical to our own history, so its
    /// next entries simply continue ours.
    pub merge_prefix: bool,
    /// While merging: the first of its entries that differs from ours. Replication resumes
    /// there, so the common part of its history is never thrown away and sent again.
    pub diverged_at: Seq,
    /// While merging: the newest of its entries shown to be ours too (same seq and epoch,
    /// or taken as they are). Replication can resume after it only if that is right before
    /// `diverged_at`; otherwise its history is replaced from our window's start.
    pub merge_common: Option<Seq>,
    /// Its newest entry as it last reported it (join request or report to a new leader).
    pub reported_last: Seq,
    /// The epoch of that entry.
    pub reported_epoch: Epoch,
    /// Drained by its operator: leadership is never handed to it.
    pub draining: bool,
}

impl FollowerProgress {
    /// A follower the leader knows nothing about yet.
    pub fn probing(now: Millis) -> Self {
        Self {
            state: FollowerState::Probing,
            match_seq: 0,
            next_seq: 1,
            reset: false,
            waiting_since: Some(now),
            last_ack: now,
            pull_seq: 1,
            merge_prefix: true,
            diverged_at: 0,
            merge_common: None,
            reported_last: 0,
            reported_epoch: 0,
            draining: false,
        }
    }

    /// Starts pulling its history from the beginning to merge it into ours.
    pub fn begin_merge(&mut self, now: Millis) {
        self.state = FollowerState::Merging;
        self.pull_seq = 1;
        self.merge_prefix = true;
        self.diverged_at = 0;
        self.merge_common = None;
        self.waiting_since = Some(now);
    }

    /// Whether the leader sends it entries.
    pub fn receives_entries(&self) -> bool {
        matches!(
            self.state,
            FollowerState::Syncing | FollowerState::Replicating
        )
    }

    /// Entries the leader holds that this follower does not (yet) acknowledge.
    pub fn lag(&self, leader_last: Seq) -> Seq {
        leader_last.saturating_sub(self.match_seq)
    }
}
