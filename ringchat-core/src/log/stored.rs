//! How the history holds an entry: compactly, since it keeps one per message.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::Arc;

use ringchat_proto::{ChatEntry, ChatEntryRef, Epoch, Seq};

use super::index::PreHashed;

/// One stored entry (64 bytes). Its sequence number is its place in the log; the sender's
/// `client_id` and `username` are shared by all of that sender's entries; the strings
/// have no spare capacity.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    message_id: Box<str>,
    content: Box<str>,
    sender: Arc<Sender>,
    timestamp: f64,
    pub(super) epoch: Epoch,
    delivered: bool,
}

#[derive(Debug)]
struct Sender {
    client_id: Box<str>,
    username: Box<str>,
}

impl Stored {
    /// The entry, borrowed, as the one at `seq`.
    pub(super) fn view(&self, seq: Seq) -> ChatEntryRef<'_> {
        ChatEntryRef {
            message_id: &self.message_id,
            sequence_number: seq,
            client_id: &self.sender.client_id,
            username: &self.sender.username,
            content: &self.content,
            timestamp: self.timestamp,
            delivered: self.delivered,
            epoch: self.epoch,
        }
    }

    /// Whether this is the message `(client_id, message_id)`.
    pub(super) fn is(&self, client_id: &str, message_id: &str) -> bool {
        *self.message_id == *message_id && *self.sender.client_id == *client_id
    }
}

/// The distinct `(client_id, username)` pairs of the stored entries, each held once.
/// A pair is forgotten with its sender's last entry; a pair whose hash clashes with
/// another's is simply not shared.
#[derive(Debug, Default, Clone)]
pub(super) struct Senders {
    table: HashMap<u64, Arc<Sender>, BuildHasherDefault<PreHashed>>,
    keys: RandomState,
}

impl Senders {
    /// Stores an owned entry, keeping its text buffers (without spare capacity).
    pub(super) fn store(&mut self, e: ChatEntry) -> Stored {
        Stored {
            sender: self.intern(&e.client_id, &e.username),
            message_id: e.message_id.into_boxed_str(),
            content: e.content.into_boxed_str(),
            timestamp: e.timestamp,
            epoch: e.epoch,
            delivered: e.delivered,
        }
    }

    /// Stores a copy of a borrowed entry.
    pub(super) fn store_copy(&mut self, e: ChatEntryRef<'_>) -> Stored {
        Stored {
            sender: self.intern(e.client_id, e.username),
            message_id: e.message_id.into(),
            content: e.content.into(),
            timestamp: e.timestamp,
            epoch: e.epoch,
            delivered: e.delivered,
        }
    }

    fn intern(&mut self, client_id: &str, username: &str) -> Arc<Sender> {
        let new = || {
            Arc::new(Sender {
                client_id: client_id.into(),
                username: username.into(),
            })
        };
        let h = self.keys.hash_one((client_id, username));
        match self.table.get(&h) {
            Some(s) if *s.client_id == *client_id && *s.username == *username => s.clone(),
            Some(_) => new(),
            None => self.table.entry(h).or_insert_with(new).clone(),
        }
    }

    /// Called before `s` is dropped: forgets its sender if this is its last entry.
    pub(super) fn release(&mut self, s: &Stored) {
        if Arc::strong_count(&s.sender) > 2 {
            return;
        }
        let h = self
            .keys
            .hash_one((&*s.sender.client_id, &*s.sender.username));
        if self
            .table
            .get(&h)
            .is_some_and(|t| Arc::ptr_eq(t, &s.sender))
        {
            self.table.remove(&h);
        }
    }

    /// Distinct senders held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}
