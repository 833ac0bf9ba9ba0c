//! The deduplication index: where each `(client_id, message_id)` stands.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use ringchat_proto::Seq;

/// `(client_id, message_id)` -> sequence number, kept small because it holds one slot per
/// stored message: a slot is the key's 64-bit hash and the sequence number (16 bytes).
/// The ids themselves are read from the entry a slot points to (the caller checks them),
/// so a lookup that lands on another key's slot is told apart; a key whose slot is taken
/// by another key goes to `overflow` with its ids. The hash is keyed per process (SipHash
/// with random keys), so clients cannot choose ids that clash on purpose.
#[derive(Debug, Default, Clone)]
pub(super) struct DedupIndex {
    pub(super) slots: HashMap<u64, Seq, BuildHasherDefault<PreHashed>>,
    pub(super) overflow: HashMap<String, HashMap<String, Seq>>,
    keys: RandomState,
}

/// For tables whose keys are hashes already: they are used as they are.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl DedupIndex {
    pub(super) fn hash(&self, client_id: &str, message_id: &str) -> u64 {
        self.keys.hash_one((client_id, message_id))
    }

    /// Where the key stands; `is_key(seq)` tells whether the entry at `seq` has this key.
    pub(super) fn find(
        &self,
        client_id: &str,
        message_id: &str,
        is_key: impl Fn(Seq) -> bool,
    ) -> Option<Seq> {
        if let Some(&seq) = self.slots.get(&self.hash(client_id, message_id))
            && is_key(seq)
        {
            return Some(seq);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(client_id)?.get(message_id).copied()
    }

    /// Indexes the key at `seq`; `is_key(other)` tells whether the entry a taken slot
    /// points to has this key (then the slot moves to `seq`).
    pub(super) fn insert(
        &mut self,
        client_id: &str,
        message_id: &str,
        seq: Seq,
        is_key: impl Fn(Seq) -> bool,
    ) {
        let h = self.hash(client_id, message_id);
        match self.slots.get(&h) {
            Some(&other) if !is_key(other) => {
                self.overflow
                    .entry(client_id.to_owned())
                    .or_default()
                    .insert(message_id.to_owned(), seq);
            }
            _ => {
                self.slots.insert(h, seq);
            }
        }
    }

    /// Forgets the key if the index still places it at `seq`.
    pub(super) fn remove(&mut self, client_id: &str, message_id: &str, seq: Seq) {
        let h = self.hash(client_id, message_id);
        if self.slots.get(&h) == Some(&seq) {
            self.slots.remove(&h);
        } else if let Some(ids) = self.overflow.get_mut(client_id) {
            if ids.get(message_id) == Some(&seq) {
                ids.remove(message_id);
            }
            if ids.is_empty() {
                self.overflow.remove(client_id);
            }
        }
    }
}
