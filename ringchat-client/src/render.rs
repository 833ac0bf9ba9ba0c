//! How events look to people and to scripts: one place for every line the client prints.

use chrono::{DateTime, Local, TimeZone};
use ringchat_proto::ChatEntry;

use crate::session::{Event, LeaderView};

/// A printable line and where it belongs.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A chat entry: the conversation itself (stdout).
    Chat(String),
    /// Status and problems (stderr in scripted mode).
    Note(String),
}

/// The human-readable line for an event, if it has one.
pub fn human(event: &Event) -> Option<Line> {
    human_in(event, &Local)
}

fn human_in<Tz: TimeZone>(event: &Event, tz: &Tz) -> Option<Line>
where
    Tz::Offset: std::fmt::Display,
{
    let note = |text: String| Some(Line::Note(format!("[{text}]")));
    match event {
        Event::Entry(entry) | Event::HistoryEntry(entry) => Some(Line::Chat(chat_line(entry, tz))),
        Event::Failed { message_id, reason } => {
            note(format!("message {message_id} refused: {reason}"))
        }
        Event::ServerError(err) => {
            let about = err
                .message_id
                .as_deref()
                .map(|id| format!(" (message {id})"))
                .unwrap_or_default();
            note(format!(
                "server error {}: {}{about}",
                err.code,
                clean(&err.message)
            ))
        }
        Event::Connected { server, address } => note(format!(
            "connected to leader {} at {}",
            clean(server),
            clean(address)
        )),
        Event::Reconnecting { reason } => note(format!("reconnecting: {reason}")),
        Event::Leader(view) => note(leader_text(view)),
        Event::Notice(text) => note(clean(text)),
        Event::Frame(_) | Event::Delivered { .. } => None,
    }
}

/// `[HH:MM:SS] name: text`, in the given time zone.
fn chat_line<Tz: TimeZone>(entry: &ChatEntry, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let time = timestamp(entry.timestamp).map_or_else(
        || "--:--:--".to_owned(),
        |t| t.with_timezone(tz).format("%H:%M:%S").to_string(),
    );
    format!(
        "[{time}] {}: {}",
        clean(&entry.username),
        clean(&entry.content)
    )
}

fn timestamp(secs: f64) -> Option<DateTime<chrono::Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9) as u32;
    DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
}

fn leader_text(view: &LeaderView) -> String {
    let who = view
        .leader_id
        .map_or_else(|| "unknown".to_owned(), |id| format!("Server {id}"));
    let at = view.address.as_deref().unwrap_or("unknown address");
    let epoch = view
        .epoch
        .map_or_else(|| "unknown".to_owned(), |e| e.to_string());
    let link = view.connected_to.as_deref().map_or_else(
        || "not connected".to_owned(),
        |a| format!("connected to {a}"),
    );
    format!("leader: {who} at {at}, epoch {epoch}; {link}")
}

/// Replaces control characters, so a chat text cannot move the cursor or recolour the
/// terminal of everyone who reads it.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// A received frame as one compact JSON line: its own text when that already is one line,
/// else re-serialized. `None` when the payload is not a JSON object.
pub fn json_line(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if !value.is_object() {
        return None;
    }
    match std::str::from_utf8(payload) {
        Ok(text) if !text.contains(['\n', '\r']) => Some(text.trim().to_owned()),
        _ => Some(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;
    use ringchat_proto::ErrorCode;
    use ringchat_proto::server::ErrorMessage;

    fn entry(username: &str, content: &str, timestamp: f64) -> ChatEntry {
        ChatEntry {
            message_id: "c:1".into(),
            sequence_number: 1,
            client_id: "c".into(),
            username: username.into(),
            content: content.into(),
            timestamp,
            delivered: true,
            epoch: 1,
        }
    }

    #[test]
    fn chat_lines_use_the_local_clock() {
        // 1764097426 is 2025-11-25 19:03:46 UTC.
        let e = entry("Alice", "Hallo zusammen!", 1_764_097_426.7);
        assert_eq!(
            chat_line(&e, &chrono::Utc),
            "[19:03:46] Alice: Hallo zusammen!"
        );
        let cet = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(
            human_in(&Event::Entry(e), &cet),
            Some(Line::Chat("[20:03:46] Alice: Hallo zusammen!".into()))
        );
        assert_eq!(
            chat_line(&entry("A", "x", f64::NAN), &chrono::Utc),
            "[--:--:--] A: x"
        );
    }

    #[test]
    fn control_characters_are_neutralised() {
        let e = entry("Eve", "\u{1b}[2Jgone\r\nfake line", 0.0);
        assert_eq!(
            chat_line(&e, &chrono::Utc),
            "[00:00:00] Eve: \u{fffd}[2Jgone\u{fffd}\u{fffd}fake line"
        );
    }

    #[test]
    fn notes_are_bracketed() {
        let connected = Event::Connected {
            server: "Server 3".into(),
            address: "127.0.0.1:5103".into(),
        };
        assert_eq!(
            human(&connected),
            Some(Line::Note(
                "[connected to leader Server 3 at 127.0.0.1:5103]".into()
            ))
        );
        let lost = Event::Reconnecting {
            reason: "leader lost".into(),
        };
        assert_eq!(
            human(&lost),
            Some(Line::Note("[reconnecting: leader lost]".into()))
        );
        let err = Event::ServerError(ErrorMessage {
            sender_id: "Server 3".into(),
            timestamp: 0.0,
            code: ErrorCode::ContentTooLong,
            message: "too long".into(),
            message_id: Some("c:4".into()),
        });
        assert_eq!(
            human(&err),
            Some(Line::Note(
                "[server error CONTENT_TOO_LONG: too long (message c:4)]".into()
            ))
        );
        let view = LeaderView {
            leader_id: Some(3),
            address: Some("127.0.0.1:5103".into()),
            epoch: Some(2),
            connected_to: None,
        };
        assert_eq!(
            human(&Event::Leader(view)),
            Some(Line::Note(
                "[leader: Server 3 at 127.0.0.1:5103, epoch 2; not connected]".into()
            ))
        );
        assert_eq!(human(&Event::Frame("{}".into())), None);
    }

    #[test]
    fn json_lines_are_compact_objects() {
        assert_eq!(
            json_line(br#"{"msg_type":"x","a":1}"#).as_deref(),
            Some(r#"{"msg_type":"x","a":1}"#)
        );
        assert_eq!(
            json_line(b"{\n  \"a\": 1\n}").as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(json_line(b"[1]"), None);
        assert_eq!(json_line(b"{oops"), None);
    }
}
