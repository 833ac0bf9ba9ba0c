//! History answers, split so that no frame exceeds the client protocol's `max_frame`.

use bytes::Bytes;
use ringchat_proto::frame::frame_json;
use ringchat_proto::ids::{server_sender_id, unix_timestamp};
use ringchat_proto::limits::MAX_CLIENT_FRAME;
use ringchat_proto::server::{HistoryResponse, ServerMessage};
use ringchat_proto::{ChatEntry, ChatEntryRef, NodeId, Seq};

/// Room left in a frame for the envelope and the other fields.
const ENVELOPE_RESERVE: usize = 512;

/// Frames answering a history question: `entries` (ascending) after `from_sequence`.
pub fn history_frames<'a>(
    me: NodeId,
    max_frame: usize,
    entries: impl IntoIterator<Item = ChatEntryRef<'a>>,
    from_sequence: Seq,
    last_sequence: Seq,
    reset: bool,
) -> Vec<Bytes> {
    let budget = max_frame.min(MAX_CLIENT_FRAME) - ENVELOPE_RESERVE;
    let mut pages: Vec<Vec<ChatEntry>> = vec![Vec::new()];
    let mut used = 0;
    for e in entries {
        // Entry sizes are bounded (content ≤ 4096 chars), so one always fits a page.
        let size = serde_json::to_vec(&e).map_or(budget, |v| v.len() + 1);
        if used + size > budget && !pages.last().is_some_and(Vec::is_empty) {
            pages.push(Vec::new());
            used = 0;
        }
        used += size;
        if let Some(page) = pages.last_mut() {
            page.push(e.to_entry());
        }
    }
    let n = pages.len();
    let mut from = from_sequence;
    pages
        .into_iter()
        .enumerate()
        .filter_map(|(i, messages)| {
            let page_from = from;
            from = messages.last().map_or(from, |e| e.sequence_number);
            frame_json(&ServerMessage::HistoryResponse(HistoryResponse {
                sender_id: server_sender_id(me),
                timestamp: unix_timestamp(),
                messages,
                from_sequence: page_from,
                last_sequence,
                more: i + 1 < n,
                reset: reset && i == 0,
            }))
            .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: Seq, len: usize) -> ChatEntry {
        ChatEntry {
            message_id: format!("m{seq}"),
            sequence_number: seq,
            client_id: "c".into(),
            username: "u".into(),
            content: "\u{1}".repeat(len),
            timestamp: 1.0,
            delivered: true,
            epoch: 1,
        }
    }

    #[test]
    fn long_histories_span_frames_within_the_limit() {
        // Control characters take 6 bytes each in JSON: the worst case for a frame.
        let entries: Vec<ChatEntry> = (1..=300).map(|s| entry(s, 4096)).collect();
        let frames = history_frames(
            3,
            MAX_CLIENT_FRAME,
            entries.iter().map(ChatEntry::borrowed),
            0,
            300,
            false,
        );
        assert!(frames.len() > 1);
        let mut seen = 0;
        for (i, f) in frames.iter().enumerate() {
            assert!(
                f.len() - 4 <= MAX_CLIENT_FRAME,
                "frame {i} has {} bytes",
                f.len()
            );
            let msg: ServerMessage = serde_json::from_slice(&f[4..]).unwrap();
            let ServerMessage::HistoryResponse(h) = msg else {
                panic!()
            };
            assert_eq!(h.more, i + 1 < frames.len());
            assert_eq!(h.from_sequence, seen);
            seen += h.messages.len() as Seq;
        }
        assert_eq!(seen, 300);
    }

    #[test]
    fn empty_history_is_one_frame() {
        let frames = history_frames(1, MAX_CLIENT_FRAME, [], 0, 0, false);
        assert_eq!(frames.len(), 1);
    }
}
