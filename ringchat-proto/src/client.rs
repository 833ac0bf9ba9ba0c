//! Client -> server requests, parsed field by field so every refusal names its field.
//!
//! Parsing is strict about what it needs and lenient about the rest, as PROTOCOL.md asks:
//! unknown fields are ignored, a missing `sender_id`/`timestamp` is fine, `msg_type` is
//! matched without regard to case (the prototype's constants are upper-case in its docs).

use serde_json::{Map, Value};

use crate::error::{ErrorCode, ProtocolError};
use crate::ids::Seq;
use crate::limits::*;

mod fast;

/// A request a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    /// `client_connect`: become a session; the leader answers with history.
    Connect {
        /// Stable id of the client process.
        client_id: String,
        /// Display name.
        username: String,
        /// Last sequence number the client holds, if any.
        from_sequence: Option<Seq>,
    },
    /// `client_message`: a chat message to store and broadcast.
    Message(OutgoingChat),
    /// `history_request`: up to `limit` entries after `from_sequence`.
    History {
        /// Entries after this sequence number.
        from_sequence: Seq,
        /// At most this many entries.
        limit: u64,
    },
    /// `client_ping`: liveness check, answered with `client_ping_ack`.
    Ping,
    /// `client_disconnect`: the server closes the connection.
    Disconnect,
}

/// The fields of a `client_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingChat {
    /// Sender.
    pub client_id: String,
    /// Display name.
    pub username: String,
    /// The text.
    pub content: String,
    /// Deduplication key within `client_id`.
    pub message_id: String,
}

/// Limits that depend on the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Longest accepted `content`, in characters.
    pub max_content_chars: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_content_chars: DEFAULT_MAX_CONTENT_CHARS,
        }
    }
}

/// Parses one frame payload. The error says what the server must answer.
pub fn parse_client_request(
    payload: &[u8],
    limits: &ClientLimits,
) -> Result<ClientRequest, ProtocolError> {
    if let Some(chat) = fast::client_message(payload, limits) {
        return Ok(ClientRequest::Message(chat));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| ProtocolError::new(ErrorCode::BadFrame, format!("frame is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::BadJson, format!("invalid JSON: {e}")))?;
    // Fields are moved out of the parsed object, not copied.
    let Value::Object(mut map) = value else {
        return Err(ProtocolError::new(
            ErrorCode::BadJson,
            "a frame must hold one JSON object",
        ));
    };
    let msg_type = match map.get("msg_type") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(_) => return Err(bad_field("msg_type", "must be a string")),
        None => return Err(bad_field("msg_type", "is missing")),
    };
    match msg_type.as_str() {
        "client_connect" => Ok(ClientRequest::Connect {
            client_id: client_id(&mut map)?,
            username: username(&mut map)?,
            from_sequence: opt_u64(&map, "from_sequence")?,
        }),
        "client_message" => parse_message(&mut map, limits).map(ClientRequest::Message),
        "history_request" => {
            let limit = opt_u64(&map, "limit")?.unwrap_or(DEFAULT_HISTORY_LIMIT);
            if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
                return Err(bad_field(
                    "limit",
                    &format!("must be between 1 and {MAX_HISTORY_LIMIT}"),
                ));
            }
            Ok(ClientRequest::History {
                from_sequence: opt_u64(&map, "from_sequence")?.unwrap_or(0),
                limit,
            })
        }
        "client_ping" => Ok(ClientRequest::Ping),
        "client_disconnect" => Ok(ClientRequest::Disconnect),
        other => Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown msg_type {other:?}"),
        )),
    }
}

fn parse_message(
    map: &mut Map<String, Value>,
    limits: &ClientLimits,
) -> Result<OutgoingChat, ProtocolError> {
    let message_id = bounded_str(map, "message_id", MAX_MESSAGE_ID_CHARS)?;
    let with_id = |e: ProtocolError| e.with_message_id(Some(message_id.clone()));
    let client_id = client_id(map).map_err(with_id)?;
    let username = username(map).map_err(with_id)?;
    let content = match map.remove("content") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(with_id(bad_field("content", "must be a string"))),
        None => return Err(with_id(bad_field("content", "is missing"))),
    };
    let chars = content.chars().count();
    if chars == 0 {
        return Err(with_id(bad_field("content", "must not be empty")));
    }
    if chars > limits.max_content_chars {
        return Err(with_id(ProtocolError::new(
            ErrorCode::ContentTooLong,
            format!(
                "content has {chars} characters; the limit is {}",
                limits.max_content_chars
            ),
        )));
    }
    Ok(OutgoingChat {
        client_id,
        username,
        content,
        message_id,
    })
}

fn bad_field(field: &str, what: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadField, format!("field {field} {what}"))
}

fn bounded_str(
    map: &mut Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<String, ProtocolError> {
    match map.remove(field) {
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > max {
                Err(bad_field(
                    field,
                    &format!("must have 1 to {max} characters"),
                ))
            } else {
                Ok(s)
            }
        }
        Some(_) => Err(bad_field(field, "must be a string")),
        None => Err(bad_field(field, "is missing")),
    }
}

fn client_id(map: &mut Map<String, Value>) -> Result<String, ProtocolError> {
    bounded_str(map, "client_id", MAX_CLIENT_ID_CHARS)
}

/// Checks a display name the way the server does, so a client can refuse it before sending.
pub fn validate_username(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_USERNAME_CHARS {
        return Err(format!("must have 1 to {MAX_USERNAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if name.trim() != name {
        return Err("must not start or end with spaces".into());
    }
    Ok(())
}

fn username(map: &mut Map<String, Value>) -> Result<String, ProtocolError> {
    let name = bounded_str(map, "username", MAX_USERNAME_CHARS)?;
    validate_username(&name).map_err(|e| bad_field("username", &e))?;
    Ok(name)
}

fn opt_u64(map: &Map<String, Value>, field: &str) -> Result<Option<u64>, ProtocolError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad_field(field, "must be a non-negative integer")),
        Some(_) => Err(bad_field(field, "must be a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientRequest, ProtocolError> {
        parse_client_request(s.as_bytes(), &ClientLimits::default())
    }

    fn code(s: &str) -> ErrorCode {
        parse(s).unwrap_err().code
    }

    #[test]
    fn connect_from_the_protocol_example() {
        let req = parse(r#"{"msg_type":"client_connect","sender_id":"k3f9a","timestamp":1764097425.1,"client_id":"k3f9a","username":"Alice"}"#).unwrap();
        assert_eq!(
            req,
            ClientRequest::Connect {
                client_id: "k3f9a".into(),
                username: "Alice".into(),
                from_sequence: None
            }
        );
    }

    #[test]
    fn message_and_case_insensitive_type() {
        let req = parse(r#"{"msg_type":"CLIENT_MESSAGE","client_id":"c","username":"Bob","content":"hi","message_id":"c:1","extra":[1]}"#).unwrap();
        assert!(
            matches!(req, ClientRequest::Message(m) if m.content == "hi" && m.message_id == "c:1")
        );
    }

    #[test]
    fn refusals_have_the_right_codes() {
        assert_eq!(
            parse_client_request(&[0xff, 0xfe], &ClientLimits::default())
                .unwrap_err()
                .code,
            ErrorCode::BadFrame
        );
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"msg_type":"teleport"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"msg_type":5}"#), ErrorCode::BadField);
        assert_eq!(code(r#"{"client_id":"x"}"#), ErrorCode::BadField);
        assert_eq!(
            code(r#"{"msg_type":"client_connect","client_id":7,"username":"A"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"msg_type":"client_connect","client_id":"a","username":" A"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"msg_type":"client_connect","client_id":"a","username":"A\u0007"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"msg_type":"history_request","limit":1001}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"msg_type":"history_request","from_sequence":-1}"#),
            ErrorCode::BadField
        );
    }

    #[test]
    fn too_long_content_names_the_message() {
        let long = "x".repeat(4097);
        let err = parse(&format!(r#"{{"msg_type":"client_message","client_id":"c","username":"A","content":"{long}","message_id":"m1"}}"#)).unwrap_err();
        assert_eq!(err.code, ErrorCode::ContentTooLong);
        assert_eq!(err.message_id.as_deref(), Some("m1"));
        let ok = "ü".repeat(4096);
        assert!(parse(&format!(r#"{{"msg_type":"client_message","client_id":"c","username":"A","content":"{ok}","message_id":"m1"}}"#)).is_ok());
    }

    #[test]
    fn history_defaults() {
        assert_eq!(
            parse(r#"{"msg_type":"history_request"}"#).unwrap(),
            ClientRequest::History {
                from_sequence: 0,
                limit: 100
            }
        );
    }
}
