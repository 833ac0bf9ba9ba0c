//! After a failover run: read the leader's whole history and check that every acknowledged
//! message is in it exactly once, at the sequence number its ack named, in the order the
//! messages were sent, and that the history itself has no holes (DESIGN.md invariant 3).
//!
//! The history is read through the client protocol: `client_connect` with
//! `from_sequence: 0`, then `history_request` pages of 1,000 from where that answer ended
//! (the leader answers a `from_sequence` more than 10,000 behind with `reset` and the newest
//! 100 entries, in which case paging starts again at 0). Only our own entries are kept.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::SinkExt;
use ringchat_proto::limits::MAX_HISTORY_LIMIT;
use ringchat_proto::server::ServerMessage;
use ringchat_proto::{ChatEntry, Seq};
use serde::Serialize;

use crate::session::{self, ConnectOptions, Hello};
use crate::wire;

/// What a walk through the history found.
#[derive(Debug, Clone, Default)]
pub struct HistoryScan {
    /// Entries read.
    pub entries: u64,
    /// The leader's newest sequence number when the scan started.
    pub last_sequence: Seq,
    /// Places where a sequence number did not follow the one before.
    pub gaps: u64,
    /// Our entries: `(message_id, sequence_number)`, in history order.
    pub ours: Vec<(String, Seq)>,
    prev: Seq,
}

impl HistoryScan {
    /// Takes one page of entries (ascending).
    pub fn feed(&mut self, entries: &[ChatEntry], client_id: &str) {
        for e in entries {
            if e.sequence_number != self.prev + 1 {
                self.gaps += 1;
            }
            self.prev = e.sequence_number;
            self.entries += 1;
            if e.client_id == client_id {
                self.ours.push((e.message_id.clone(), e.sequence_number));
            }
        }
    }
}

/// Reads the leader's history from sequence 0 and keeps the entries of `client_id`.
pub async fn scan(
    connect: &ConnectOptions,
    reader_id: &str,
    client_id: &str,
) -> Result<HistoryScan> {
    let hello = Hello {
        client_id: reader_id.to_string(),
        username: "bench-verify".into(),
        from_sequence: Some(0),
    };
    let mut s = session::open(connect, &hello, None)
        .await
        .context("connecting to read the history")?;
    let mut scan = HistoryScan {
        last_sequence: s.last_sequence,
        ..HistoryScan::default()
    };
    if !s.reset {
        scan.feed(&s.history, client_id);
    }
    let limit = Duration::from_secs(10);
    while scan.prev < scan.last_sequence {
        let from = scan.prev;
        let req = wire::history_request(reader_id, from, MAX_HISTORY_LIMIT);
        s.conn
            .send(req)
            .await
            .with_context(|| format!("{}: sending history_request", s.addr))?;
        let before = scan.entries;
        loop {
            match session::next_message(&mut s.conn, &s.addr, limit).await? {
                ServerMessage::HistoryResponse(h) => {
                    scan.feed(&h.messages, client_id);
                    if !h.more {
                        break;
                    }
                }
                ServerMessage::Error(e) => {
                    bail!(
                        "{}: history_request refused: {}: {}",
                        s.addr,
                        e.code,
                        e.message
                    )
                }
                _ => {}
            }
        }
        if scan.entries == before {
            bail!(
                "{}: history ends at {} but the leader's last sequence number is {}",
                s.addr,
                scan.prev,
                scan.last_sequence
            );
        }
    }
    Ok(scan)
}

/// One acknowledged message: its counter (send order), id and acked sequence number.
#[derive(Debug, Clone)]
pub struct Acked {
    /// Send order.
    pub counter: u64,
    /// The message id.
    pub message_id: String,
    /// The sequence number in its `message_delivered`.
    pub seq: Seq,
}

/// The verdict on the acknowledged messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verification {
    /// True when nothing below is wrong.
    pub ok: bool,
    /// Acknowledged messages checked.
    pub acked: u64,
    /// Of those, found exactly once.
    pub found_once: u64,
    /// Acknowledged but not in the history: lost.
    pub missing: u64,
    /// Our message ids in the history more than once (acknowledged or not).
    pub duplicated: u64,
    /// Acknowledged messages stored before a message sent earlier.
    pub out_of_order: u64,
    /// Acknowledged messages stored at another sequence number than their ack said.
    pub seq_mismatch: u64,
    /// Our messages in the history that were never acknowledged (in flight at a kill).
    pub stored_unacked: u64,
    /// Entries in the whole history.
    pub history_entries: u64,
    /// Holes in the history's sequence numbers.
    pub history_gaps: u64,
    /// The first few problems, for the report.
    pub examples: Vec<String>,
}

const EXAMPLES: usize = 10;

/// Checks `acked` against `scan`.
pub fn verify(acked: &[Acked], scan: &HistoryScan) -> Verification {
    let mut v = Verification {
        acked: acked.len() as u64,
        history_entries: scan.entries,
        history_gaps: scan.gaps,
        ..Verification::default()
    };
    let note = |v: &mut Verification, s: String| {
        if v.examples.len() < EXAMPLES {
            v.examples.push(s);
        }
    };
    let mut at: HashMap<&str, Vec<Seq>> = HashMap::new();
    for (id, seq) in &scan.ours {
        at.entry(id.as_str()).or_default().push(*seq);
    }
    for (id, seqs) in &at {
        if seqs.len() > 1 {
            v.duplicated += 1;
            note(
                &mut v,
                format!("{id} stored {} times, at {seqs:?}", seqs.len()),
            );
        }
    }
    let mut sorted: Vec<&Acked> = acked.iter().collect();
    sorted.sort_by_key(|a| a.counter);
    let mut prev: Option<(&str, Seq)> = None;
    for a in sorted {
        match at.get(a.message_id.as_str()).map(Vec::as_slice) {
            None | Some([]) => {
                v.missing += 1;
                note(
                    &mut v,
                    format!("{} acked at {} but not in the history", a.message_id, a.seq),
                );
            }
            Some(seqs) => {
                if seqs.len() == 1 {
                    v.found_once += 1;
                }
                let s = seqs[0];
                if s != a.seq {
                    v.seq_mismatch += 1;
                    note(
                        &mut v,
                        format!("{} acked at {} but stored at {s}", a.message_id, a.seq),
                    );
                }
                if let Some((pid, ps)) = prev
                    && s <= ps
                {
                    v.out_of_order += 1;
                    note(
                        &mut v,
                        format!("{} stored at {s}, before {pid} at {ps}", a.message_id),
                    );
                }
                prev = Some((&a.message_id, s));
            }
        }
    }
    let acked_ids: std::collections::HashSet<&str> =
        acked.iter().map(|a| a.message_id.as_str()).collect();
    v.stored_unacked = at.keys().filter(|id| !acked_ids.contains(*id)).count() as u64;
    v.ok = v.missing == 0
        && v.duplicated == 0
        && v.out_of_order == 0
        && v.seq_mismatch == 0
        && v.history_gaps == 0;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: Seq, client: &str, id: &str) -> ChatEntry {
        ChatEntry {
            message_id: id.into(),
            sequence_number: seq,
            client_id: client.into(),
            username: "u".into(),
            content: "x".into(),
            timestamp: 1.0,
            delivered: true,
            epoch: 1,
        }
    }

    fn acked(counter: u64, seq: Seq) -> Acked {
        Acked {
            counter,
            message_id: format!("c:{counter}"),
            seq,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let mut scan = HistoryScan::default();
        scan.feed(&[entry(1, "other", "o:1"), entry(2, "c", "c:1")], "c");
        scan.feed(&[entry(3, "c", "c:2"), entry(4, "c", "c:3")], "c");
        let v = verify(&[acked(1, 2), acked(2, 3)], &scan);
        assert!(v.ok, "{v:?}");
        assert_eq!((v.acked, v.found_once, v.stored_unacked), (2, 2, 1));
        assert_eq!((v.history_entries, v.history_gaps), (4, 0));
    }

    #[test]
    fn lost_duplicated_and_misordered_messages_are_counted() {
        let mut scan = HistoryScan::default();
        scan.feed(
            &[
                entry(1, "c", "c:2"),
                entry(2, "c", "c:1"),
                entry(3, "c", "c:3"),
                entry(5, "c", "c:3"),
            ],
            "c",
        );
        let v = verify(&[acked(1, 2), acked(2, 1), acked(3, 3), acked(4, 6)], &scan);
        assert!(!v.ok);
        assert_eq!(v.missing, 1, "{v:?}"); // c:4
        assert_eq!(v.duplicated, 1); // c:3 twice
        assert_eq!(v.out_of_order, 1); // c:2 before c:1
        assert_eq!(v.found_once, 2);
        assert_eq!(v.history_gaps, 1); // 3 -> 5
        assert!(!v.examples.is_empty());
    }

    #[test]
    fn a_wrong_sequence_number_in_the_ack_is_caught() {
        let mut scan = HistoryScan::default();
        scan.feed(&[entry(1, "c", "c:1")], "c");
        let v = verify(&[acked(1, 7)], &scan);
        assert_eq!(v.seq_mismatch, 1);
        assert!(!v.ok);
    }
}
