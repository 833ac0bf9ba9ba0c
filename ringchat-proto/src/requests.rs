//! The frames a client sends (PROTOCOL.md, "Client -> server"), built already framed: a
//! client keeps a pending message's exact bytes and resends them after a reconnect. Their
//! tests parse each one with [`crate::client::parse_client_request`], the server's side.

use crate::Seq;
use crate::frame::frame_json;
use crate::ids::unix_timestamp;
use bytes::Bytes;
use serde::Serialize;

/// The envelope every frame carries, with the request's own fields flattened beside it.
#[derive(Serialize)]
struct Envelope<'a, B> {
    msg_type: &'static str,
    sender_id: &'a str,
    timestamp: f64,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct Connect<'a> {
    client_id: &'a str,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_sequence: Option<Seq>,
}

#[derive(Serialize)]
struct Message<'a> {
    client_id: &'a str,
    username: &'a str,
    content: &'a str,
    message_id: &'a str,
}

#[derive(Serialize)]
struct History {
    from_sequence: Seq,
    limit: u64,
}

#[derive(Serialize)]
struct ClientOnly<'a> {
    client_id: &'a str,
}

fn encode<B: Serialize>(msg_type: &'static str, client_id: &str, body: B) -> Bytes {
    let envelope = Envelope {
        msg_type,
        sender_id: client_id,
        timestamp: unix_timestamp(),
        body,
    };
    // Only strings and numbers with string keys: serde_json cannot fail on these.
    frame_json(&envelope).expect("client frames always serialize")
}

/// `client_connect`; `from_sequence` is the last sequence number held (none at first).
pub fn connect(client_id: &str, username: &str, from_sequence: Option<Seq>) -> Bytes {
    let body = Connect {
        client_id,
        username,
        from_sequence,
    };
    encode("client_connect", client_id, body)
}

/// `client_message`.
pub fn message(client_id: &str, username: &str, content: &str, message_id: &str) -> Bytes {
    let body = Message {
        client_id,
        username,
        content,
        message_id,
    };
    encode("client_message", client_id, body)
}

/// `history_request` for up to `limit` entries after `from_sequence`.
pub fn history(client_id: &str, from_sequence: Seq, limit: u64) -> Bytes {
    let body = History {
        from_sequence,
        limit,
    };
    encode("history_request", client_id, body)
}

/// `client_ping`.
pub fn ping(client_id: &str) -> Bytes {
    encode("client_ping", client_id, ClientOnly { client_id })
}

/// `client_disconnect`.
pub fn disconnect(client_id: &str) -> Bytes {
    encode("client_disconnect", client_id, ClientOnly { client_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientLimits, ClientRequest, OutgoingChat, parse_client_request};
    use crate::frame::{HEADER_LEN, payload_len};

    /// Parses a frame the way the server does.
    fn server_view(frame: &Bytes) -> ClientRequest {
        assert_eq!(
            u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize,
            payload_len(frame)
        );
        parse_client_request(&frame[HEADER_LEN..], &ClientLimits::default()).unwrap()
    }

    fn json(frame: &Bytes) -> serde_json::Value {
        serde_json::from_slice(&frame[HEADER_LEN..]).unwrap()
    }

    #[test]
    fn connect_omits_from_sequence_at_first() {
        let first = connect("k3f9a", "Alice", None);
        assert_eq!(
            server_view(&first),
            ClientRequest::Connect {
                client_id: "k3f9a".into(),
                username: "Alice".into(),
                from_sequence: None
            }
        );
        let value = json(&first);
        assert!(value.get("from_sequence").is_none());
        assert_eq!(value["sender_id"], "k3f9a");
        assert!(value["timestamp"].as_f64().unwrap() > 0.0);
        assert!(matches!(
            server_view(&connect("k3f9a", "Alice", Some(0))),
            ClientRequest::Connect {
                from_sequence: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn every_request_parses_on_the_server() {
        assert_eq!(
            server_view(&message("c", "Bob", "hi", "c:1")),
            ClientRequest::Message(OutgoingChat {
                client_id: "c".into(),
                username: "Bob".into(),
                content: "hi".into(),
                message_id: "c:1".into(),
            })
        );
        assert_eq!(
            server_view(&history("c", 7, 10)),
            ClientRequest::History {
                from_sequence: 7,
                limit: 10
            }
        );
        assert_eq!(server_view(&ping("c")), ClientRequest::Ping);
        assert_eq!(server_view(&disconnect("c")), ClientRequest::Disconnect);
        assert_eq!(json(&ping("c"))["client_id"], "c");
    }
}
