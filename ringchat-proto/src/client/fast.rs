//! The common request, a valid `client_message`, read straight into its fields.
//!
//! The general parser builds a `serde_json::Value` first so that every refusal can name
//! its field; for the one request that arrives per chat message, that tree is most of the
//! cost. This path accepts only a frame that the general parser would accept too (same
//! limits, same checks); anything else, including every malformed frame, returns `None`
//! and goes the general way, which says what is wrong.

use serde::Deserialize;

use super::{ClientLimits, OutgoingChat, validate_username};
use crate::limits::{MAX_CLIENT_ID_CHARS, MAX_MESSAGE_ID_CHARS, MAX_USERNAME_CHARS};

/// The fields a `client_message` needs; others are ignored, as by the general parser.
#[derive(Deserialize)]
struct Fields<'a> {
    msg_type: &'a str,
    client_id: String,
    username: String,
    content: String,
    message_id: String,
}

/// The message, if `payload` is a valid `client_message` within `limits`.
pub(super) fn client_message(payload: &[u8], limits: &ClientLimits) -> Option<OutgoingChat> {
    // A struct would also be read from a JSON array; the protocol wants an object.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let f: Fields = serde_json::from_slice(payload).ok()?;
    let chars = |s: &str, max: usize| (1..=max).contains(&s.chars().count());
    let valid = f.msg_type.eq_ignore_ascii_case("client_message")
        && chars(&f.message_id, MAX_MESSAGE_ID_CHARS)
        && chars(&f.client_id, MAX_CLIENT_ID_CHARS)
        && chars(&f.username, MAX_USERNAME_CHARS)
        && validate_username(&f.username).is_ok()
        && chars(&f.content, limits.max_content_chars);
    valid.then_some(OutgoingChat {
        client_id: f.client_id,
        username: f.username,
        content: f.content,
        message_id: f.message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ClientRequest, parse_client_request};
    use super::*;

    /// Frames on the edge of the fast path: each must come out exactly as the general
    /// parser alone would have it.
    #[test]
    fn agrees_with_the_general_parser() {
        let long = "x".repeat(4097);
        let cases = [
            r#"{"msg_type":"client_message","client_id":"c","username":"Bob","content":"hi","message_id":"c:1"}"#.to_string(),
            r#"{"msg_type":"CLIENT_MESSAGE","client_id":"c","username":"Bob","content":"hi","message_id":"c:1","extra":[1]}"#.into(),
            r#" {"msg_type":"client_message","client_id":"c","username":"Bob","content":"h\u00fc","message_id":"c:1"}"#.into(),
            r#"["client_message","c","Bob","hi","c:1"]"#.into(),
            r#"{"msg_type":"client_message","client_id":"c","username":" Bob","content":"hi","message_id":"c:1"}"#.into(),
            r#"{"msg_type":"client_message","client_id":"c","username":"Bob","content":"","message_id":"c:1"}"#.into(),
            r#"{"msg_type":"client_message","client_id":"c","username":"Bob","content":"hi","message_id":""}"#.into(),
            r#"{"msg_type":"client_message","client_id":"c","username":"Bob","content":"hi","message_id":"c:1","client_id":"d"}"#.into(),
            r#"{"msg_type":"client_message","client_id":null,"username":"Bob","content":"hi","message_id":"c:1"}"#.into(),
            r#"{"msg_type":"client_connect","client_id":"c","username":"Bob","content":"hi","message_id":"c:1"}"#.into(),
            format!(r#"{{"msg_type":"client_message","client_id":"c","username":"A","content":"{long}","message_id":"m1"}}"#),
        ];
        let limits = ClientLimits::default();
        for case in &cases {
            let fast = client_message(case.as_bytes(), &limits);
            let general = parse_client_request(case.as_bytes(), &limits);
            match (fast, &general) {
                (Some(m), Ok(ClientRequest::Message(g))) => assert_eq!(&m, g, "{case}"),
                (Some(_), _) => panic!("the fast path took {case}, the general one {general:?}"),
                (None, _) => {}
            }
        }
        assert!(client_message(cases[0].as_bytes(), &limits).is_some());
        assert!(client_message(cases[2].as_bytes(), &limits).is_some());
    }
}
