//! What the bench tool says and hears on the client protocol (PROTOCOL.md).
//!
//! Requests are `ringchat_proto::requests`' pre-framed bytes. Incoming frames take a
//! fast path for the two kinds that arrive by the hundred thousand (`message_delivered`,
//! `chat_broadcast`): a borrowed view that skips `content` without allocating, so that the
//! load generator is not what limits the figures. Everything else is parsed into
//! [`ServerMessage`].

use std::borrow::Cow;

use anyhow::{Context, Result, bail};
use ringchat_proto::server::ServerMessage;
use ringchat_proto::{NodeId, Seq};
use serde::Deserialize;

pub use ringchat_proto::requests::{connect, history as history_request, message, ping};

/// The id of our `n`-th message: `"<client_id>:<n>"`, as PROTOCOL.md suggests.
pub fn message_id(client_id: &str, n: u64) -> String {
    format!("{client_id}:{n}")
}

/// The counter of a message id made by [`message_id`] for `client_id`, if it is one.
pub fn counter_of(client_id: &str, message_id: &str) -> Option<u64> {
    message_id
        .strip_prefix(client_id)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

/// The server id in a `sender_id` such as `"Server 3"`.
pub fn server_id(sender_id: &str) -> Option<NodeId> {
    sender_id.strip_prefix("Server ")?.trim().parse().ok()
}

/// A chat text of exactly `size` bytes (ASCII).
pub fn content(size: usize) -> String {
    const PATTERN: &[u8] = b"RingChat benchmark text 0123456789 ";
    (0..size)
        .map(|i| char::from(PATTERN[i % PATTERN.len()]))
        .collect()
}

/// A frame from a server.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// `message_delivered`.
    Delivered {
        /// The acknowledged message.
        message_id: Cow<'a, str>,
        /// Its place in the global order.
        seq: Seq,
    },
    /// `chat_broadcast`.
    Broadcast {
        /// Who sent it.
        client_id: Cow<'a, str>,
        /// The message.
        message_id: Cow<'a, str>,
        /// Its place in the global order.
        seq: Seq,
    },
    /// Anything else, fully parsed.
    Other(Box<ServerMessage>),
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    msg_type: Cow<'a, str>,
    #[serde(borrow, default)]
    message_id: Cow<'a, str>,
    #[serde(borrow, default)]
    client_id: Cow<'a, str>,
    #[serde(default)]
    sequence_number: Seq,
}

/// Parses one frame payload from a server.
pub fn parse(payload: &[u8]) -> Result<Incoming<'_>> {
    let peek: Peek<'_> = serde_json::from_slice(payload).context("server frame is not valid")?;
    match &*peek.msg_type {
        "message_delivered" | "chat_broadcast" => {
            if peek.message_id.is_empty() || peek.sequence_number == 0 {
                bail!("{} without message_id or sequence_number", peek.msg_type);
            }
            if peek.msg_type == "message_delivered" {
                Ok(Incoming::Delivered {
                    message_id: peek.message_id,
                    seq: peek.sequence_number,
                })
            } else {
                Ok(Incoming::Broadcast {
                    client_id: peek.client_id,
                    message_id: peek.message_id,
                    seq: peek.sequence_number,
                })
            }
        }
        _ => {
            let msg: ServerMessage = serde_json::from_slice(payload).with_context(|| {
                format!("server frame of type {:?} is not valid", peek.msg_type)
            })?;
            Ok(Incoming::Other(Box::new(msg)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip() {
        let id = message_id("bench-1", 42);
        assert_eq!(id, "bench-1:42");
        assert_eq!(counter_of("bench-1", &id), Some(42));
        assert_eq!(counter_of("bench-2", &id), None);
        assert_eq!(counter_of("bench", &id), None);
        assert_eq!(counter_of("bench-1", "bench-1:x"), None);
    }

    #[test]
    fn server_ids_come_from_sender_ids() {
        assert_eq!(server_id("Server 3"), Some(3));
        assert_eq!(server_id("k3f9a"), None);
    }

    #[test]
    fn content_has_the_requested_size() {
        assert_eq!(content(100).len(), 100);
        assert!(content(0).is_empty());
    }

    #[test]
    fn hot_frames_take_the_fast_path() {
        let b = br#"{"msg_type":"chat_broadcast","sender_id":"Server 3","timestamp":1.0,"message_id":"k:1","sequence_number":7,"client_id":"k","username":"A","content":"x\"y","delivered":true,"epoch":2}"#;
        match parse(b).unwrap() {
            Incoming::Broadcast {
                client_id,
                message_id,
                seq,
            } => assert_eq!((&*client_id, &*message_id, seq), ("k", "k:1", 7)),
            other => panic!("{other:?}"),
        }
        let d =
            br#"{"msg_type":"message_delivered","message_id":"k:1","sequence_number":7,"epoch":2}"#;
        assert!(matches!(
            parse(d).unwrap(),
            Incoming::Delivered { seq: 7, .. }
        ));
        let e = br#"{"msg_type":"error","code":"NO_LEADER","message":"retry","message_id":"k:2"}"#;
        assert!(
            matches!(parse(e).unwrap(), Incoming::Other(m) if matches!(*m, ServerMessage::Error(_)))
        );
        assert!(parse(br#"{"msg_type":"message_delivered"}"#).is_err());
        assert!(parse(b"[1]").is_err());
    }
}
