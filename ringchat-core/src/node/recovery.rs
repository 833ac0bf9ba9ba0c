//! A new leader's first job: learn what its followers hold, adopt entries that some of
//! them have and it lacks (they may have been acknowledged to clients by the old leader),
//! and only then take writes. This is what keeps a failover from losing messages or
//! reusing sequence numbers.

use ringchat_proto::peer::PeerBody;
use ringchat_proto::{ChatEntry, Epoch, NodeId, Seq};

use super::{Node, Role};
use crate::action::Notice;
use crate::replication::{FollowerProgress, FollowerState};

impl Node {
    /// Moves recovery on: pull from the most advanced follower, or finish.
    pub(super) fn check_recovery(&mut self) {
        let Some(rec) = &self.recovery else { return };
        if rec.pulling_from.is_some()
            || self
                .followers
                .values()
                .any(|p| p.state == FollowerState::Probing)
        {
            return;
        }
        let ahead = match self.cfg.mode.majority() {
            None => {
                let my_last = self.log.last_seq();
                self.followers
                    .iter()
                    .filter(|(_, p)| p.reported_last > my_last)
                    .max_by_key(|(id, p)| (p.reported_last, **id))
                    .map(|(id, _)| *id)
            }
            // Quorum mode, as in Raft: the most up-to-date history (newest last epoch, then
            // longest) holds every committed entry, and ours is made the same.
            Some(_) => {
                let mine = (self.log.last_epoch(), self.log.last_seq());
                self.followers
                    .iter()
                    .filter(|(_, p)| p.reported_last > 0 && p.reported_epoch != Epoch::MAX)
                    .filter(|(_, p)| (p.reported_epoch, p.reported_last) > mine)
                    .max_by_key(|(id, p)| (p.reported_epoch, p.reported_last, **id))
                    .map(|(id, _)| *id)
            }
        };
        match ahead {
            Some(id) => self.request_entries(id),
            None => {
                if let Some(majority) = self.cfg.mode.majority()
                    && self.followers.len() + 1 < majority
                {
                    // Without reports from a majority we cannot know what was committed.
                    if self.ring.len() < majority {
                        self.become_leaderless();
                    }
                    return;
                }
                self.finish_recovery()
            }
        }
    }

    fn request_entries(&mut self, from: NodeId) {
        self.request_entries_from(from, self.log.last_seq().max(1), None);
    }

    fn request_entries_from(&mut self, from: NodeId, from_seq: Seq, resync: Option<Seq>) {
        let deadline = self.now + self.cfg.replication_timeout;
        if let Some(rec) = &mut self.recovery {
            rec.pulling_from = Some(from);
            rec.deadline = deadline;
            rec.resync = resync;
        }
        self.send(
            from,
            PeerBody::SyncRequest {
                epoch: self.epoch,
                from_seq,
                limit: self.cfg.sync_chunk_size as u64,
            },
        );
    }

    /// Quorum mode: a chunk of the most up-to-date history that must start at `next`
    /// replaces ours entry by entry (where a re-issue gave a committed entry a newer epoch,
    /// we take that copy). Returns false if it does not fit (it starts elsewhere: the other
    /// server dropped more than we did).
    fn resync_chunk(&mut self, next: Seq, entries: &[ChatEntry]) -> bool {
        let prev = next - 1;
        let fits = entries.first().is_some_and(|e| e.sequence_number == next);
        fits && self
            .log
            .accept_batch(prev, self.log.epoch_at(prev).unwrap_or(0), entries)
    }

    pub(super) fn on_sync_request(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        from_seq: Seq,
        limit: u64,
    ) {
        if epoch < self.epoch {
            return self.stale("sync_request");
        }
        let limit = (limit as usize).min(self.cfg.sync_chunk_size.max(1));
        let entries = self.log.range(from_seq.saturating_sub(1), limit).to_vec();
        self.send(
            from,
            PeerBody::SyncResponse {
                epoch: self.epoch,
                entries,
                last_seq: self.log.last_seq(),
            },
        );
    }

    pub(super) fn on_sync_response(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        entries: Vec<ChatEntry>,
        last_seq: Seq,
    ) {
        if self.role != Role::Leader || epoch > self.epoch {
            return;
        }
        let pulling = self.recovery.as_ref().and_then(|r| r.pulling_from);
        if pulling != Some(from) {
            return self.on_merge_entries(from, entries, last_seq);
        }
        if let Some(next) = self.recovery.as_ref().and_then(|r| r.resync) {
            let before = self.log.last_seq();
            let ok = self.resync_chunk(next, &entries);
            if let Some(rec) = &mut self.recovery {
                rec.recovered += self.log.last_seq().saturating_sub(before);
            }
            let end = next + entries.len() as Seq;
            return if ok && end <= last_seq {
                // Until its newest entry, chunk by chunk, each one checked against the last.
                self.request_entries_from(from, end, Some(end))
            } else if ok {
                if let Some(rec) = &mut self.recovery {
                    rec.pulling_from = None;
                    rec.resync = None;
                }
                self.check_recovery()
            } else {
                // It does not fit: pull from our newest entry as usual.
                self.request_entries(from)
            };
        }
        let my_last = self.log.last_seq();
        let quorum = self.cfg.mode.majority().is_some();
        // Quorum mode: what we know to be committed (as a leader, or from batches a leader
        // sent us) is in every later leader's history at its seq, perhaps re-issued in a
        // newer epoch (`reissue_uncommitted`): there the same message is the same entry.
        let committed = self
            .commit_seq
            .max(self.known_committed)
            .min(my_last)
            .max(self.log.base());
        let continues = match entries.first() {
            None => false,
            Some(first) if my_last == 0 => first.sequence_number == 1,
            Some(first) => {
                first.sequence_number == my_last
                    && (Some(first.epoch) == self.log.epoch_at(my_last)
                        || (quorum
                            && my_last == committed
                            && self.log.get(my_last).is_some_and(|e| {
                                e.client_id == first.client_id && e.message_id == first.message_id
                            })))
            }
        };
        if !continues && quorum && committed < my_last {
            // Our newest entries are not on the most up-to-date history, so they were never
            // committed: keep what was, and take that history over ours from our window's
            // start (its copies of what we hold may carry newer epochs).
            self.log.truncate(committed);
            let next = self.log.base() + 1;
            return self.request_entries_from(from, next, Some(next));
        }
        let mut added = 0;
        if continues {
            for e in entries.into_iter().filter(|e| e.sequence_number > my_last) {
                if e.sequence_number != self.log.last_seq() + 1 {
                    break;
                }
                self.log.append(e);
                added += 1;
            }
        }
        if let Some(rec) = &mut self.recovery {
            rec.recovered += added;
            rec.pulling_from = None;
        }
        if !continues || added == 0 {
            // Its history diverges from ours: it is merged once we serve, not pulled from.
            // (An epoch no entry has marks it diverged: it will be merged, never pulled.)
            if let Some(p) = self.followers.get_mut(&from) {
                p.reported_last = 0;
                p.reported_epoch = Epoch::MAX;
            }
        } else if self.log.last_seq() < last_seq {
            return self.request_entries(from);
        }
        self.check_recovery();
    }

    fn finish_recovery(&mut self) {
        let Some(rec) = self.recovery.take() else {
            return;
        };
        let ids: Vec<NodeId> = self.followers.keys().copied().collect();
        let last = self.log.last_seq();
        for id in ids {
            // Caught-up followers count for commits at once; the others catch up first,
            // as joiners do, so that the new leader's commit point does not fall back.
            let caught_up = self
                .followers
                .get(&id)
                .is_some_and(|p| p.reported_last == last);
            let state = if caught_up {
                FollowerState::Replicating
            } else {
                FollowerState::Syncing
            };
            self.align(id, state);
        }
        if self.cfg.mode.majority().is_some() {
            self.reissue_uncommitted();
        }
        self.notice(Notice::LeaderReady {
            recovered: rec.recovered,
        });
        self.broadcast_ring();
        self.advance_commit();
        self.maybe_hand_off();
    }

    /// Quorum mode, once the followers are aligned: what earlier leaders committed (as far
    /// as we know) stays committed; the rest of our history is re-issued in our epoch, so
    /// that a majority storing it commits it (Raft counts only entries of the leader's own
    /// term, and a new leader adds a no-op entry for that; we re-stamp instead of adding a
    /// visible entry). Followers are sent the re-issued entries again.
    fn reissue_uncommitted(&mut self) {
        let last = self.log.last_seq();
        let known = self.commit_seq.max(self.known_committed).min(last);
        self.commit_seq = known;
        if known == last || self.log.epoch_at(last) == Some(self.epoch) {
            return;
        }
        self.log.restamp(known, self.epoch);
        for p in self.followers.values_mut() {
            p.match_seq = p.match_seq.min(known);
            p.next_seq = p.next_seq.min(known + 1);
        }
    }

    /// Sets where replication to a follower resumes, from what it reported: right after
    /// its newest entry when that entry is ours too; else its history is merged into ours.
    pub(super) fn align(&mut self, id: NodeId, consistent_state: FollowerState) {
        if let Some(mut p) = self.followers.remove(&id) {
            self.align_follower(id, &mut p, consistent_state);
            self.followers.insert(id, p);
            // A caught-up joiner may complete a majority (quorum mode).
            self.advance_commit();
        }
    }

    fn align_follower(
        &mut self,
        id: NodeId,
        p: &mut FollowerProgress,
        consistent_state: FollowerState,
    ) {
        let diverged = p.reported_last > self.log.last_seq()
            || self.log.proven_epoch(p.reported_last) != Some(p.reported_epoch);
        // Its newest entry is one we dropped (the same epoch there: the log matching rule),
        // or one we cannot place but older than our window and its epoch record.
        let behind = p.reported_last < self.log.base()
            && (!diverged
                || (self.log.proven_epoch(p.reported_last).is_none()
                    && p.reported_epoch <= self.log.base_epoch()));
        if behind {
            // It is behind our retained window: it takes the window from its start.
            p.reset = true;
            p.match_seq = 0;
            p.next_seq = self.log.base() + 1;
            p.state = FollowerState::Syncing;
            p.waiting_since = Some(self.now);
            return;
        }
        if diverged {
            p.begin_merge(self.now);
            self.notice(Notice::FollowerReset { id });
            self.request_merge_chunk(id, 1);
            return;
        }
        p.match_seq = p.reported_last;
        p.reset = false;
        p.state = consistent_state;
        p.next_seq = p.match_seq + 1;
        if p.state == FollowerState::Syncing && p.next_seq > self.log.last_seq() && !p.reset {
            p.state = FollowerState::Replicating;
        }
        p.waiting_since = (p.match_seq < self.log.last_seq() || p.reset).then_some(self.now);
    }

    pub(super) fn tick_leader(&mut self) {
        if let Some(rec) = &mut self.recovery
            && !rec.nudged
            && self.now.saturating_sub(rec.started) >= 3 * self.cfg.heartbeat_interval
        {
            // Members the announcement did not reach (their ring view differed) hear it
            // directly; normally everyone has reported long before.
            rec.nudged = true;
            let silent: Vec<NodeId> = self
                .followers
                .iter()
                .filter(|(_, p)| p.state == FollowerState::Probing)
                .map(|(id, _)| *id)
                .collect();
            let body = PeerBody::ElectionLeader {
                epoch: self.epoch,
                leader: self.me.clone(),
            };
            for id in silent {
                self.send(id, body.clone());
            }
        }
        if let Some(rec) = &self.recovery
            && self.now >= rec.deadline
        {
            // Followers that did not report (or answer a pull) in time are taken for dead.
            let silent: Vec<NodeId> = self
                .followers
                .iter()
                .filter(|(id, p)| {
                    p.state == FollowerState::Probing || rec.pulling_from == Some(**id)
                })
                .map(|(id, _)| *id)
                .collect();
            let deadline = self.now + self.cfg.replication_timeout;
            if let Some(rec) = &mut self.recovery {
                rec.pulling_from = None;
                rec.deadline = deadline;
            }
            for id in silent {
                self.peer_failed(id, "no_report");
            }
            self.check_recovery();
            return;
        }
        if self.recovery.is_some() {
            // Until recovery ends its own deadline governs: a follower being pulled from,
            // or waiting for the pull to end, owes us nothing yet.
            return;
        }
        let timeout = self.cfg.replication_timeout;
        let late: Vec<NodeId> = self
            .followers
            .iter()
            .filter(|(_, p)| {
                p.waiting_since
                    .is_some_and(|t| self.now.saturating_sub(t) > timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.peer_failed(id, "replication_timeout");
        }
    }
}
