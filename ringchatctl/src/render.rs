//! Human-readable forms of `status` and `history`; text from the socket is stripped of
//! control characters so a chat message cannot drive the operator's terminal.

use chrono::{DateTime, Local};
use serde::Deserialize;

use crate::status::Status;

/// The `status` summary.
pub fn status_text(s: &Status) -> String {
    let mut state = vec![s.role.clone()];
    state.push(if s.serving { "serving" } else { "not serving" }.to_owned());
    if s.draining {
        state.push("draining".to_owned());
    }
    let leader = s.leader.as_ref().map_or_else(
        || "unknown (election running or no ring)".to_owned(),
        |l| {
            format!(
                "{} at {}:{} (clients {}:{})",
                l.id, l.address, l.port, l.address, l.client_port
            )
        },
    );
    let ids: Vec<&str> = s.members.iter().map(|m| m.node.id.as_str()).collect();
    let mut out = format!(
        "node {}: {}\n\
         epoch:      {} (round {})\n\
         leader:     {leader}\n\
         neighbours: predecessor {}, successor {}\n\
         members:    {} ({} in ring order)\n\
         log:        last seq {}, commit seq {}, {}\n\
         clients:    {} ({} slow-client disconnects)\n",
        s.id,
        state.join(", "),
        s.epoch,
        s.round,
        s.predecessor.as_deref().unwrap_or("-"),
        s.successor.as_deref().unwrap_or("-"),
        ids.join(", "),
        ids.len(),
        s.last_seq,
        s.commit_seq,
        bytes(s.history_bytes),
        s.clients,
        s.slow_client_disconnects,
    );
    if s.is_leader() {
        if s.followers.is_empty() {
            out.push_str("followers:  none\n");
        }
        for (i, f) in s.followers.iter().enumerate() {
            let label = if i == 0 { "followers:" } else { "" };
            out.push_str(&format!(
                "{label:<12}{} {} at seq {}, lag {}\n",
                f.id, f.state, f.match_seq, f.lag_entries
            ));
        }
    }
    out.push_str(&format!("uptime:     {}\n", duration(s.uptime_seconds)));
    out
}

/// The fields of a history entry the text form shows.
#[derive(Debug, Deserialize)]
pub struct Entry {
    /// Position in the global order.
    pub sequence_number: u64,
    /// Display name.
    pub username: String,
    /// The text.
    pub content: String,
    /// When the leader accepted it (seconds since the Unix epoch).
    pub timestamp: f64,
}

/// `[seq] [HH:MM:SS] name: text`, in local time.
pub fn entry_line(e: &Entry) -> String {
    let time = timestamp(e.timestamp).map_or_else(
        || "--:--:--".to_owned(),
        |t| t.with_timezone(&Local).format("%H:%M:%S").to_string(),
    );
    format!(
        "[{}] [{time}] {}: {}",
        e.sequence_number,
        clean(&e.username),
        clean(&e.content)
    )
}

fn timestamp(secs: f64) -> Option<DateTime<chrono::Utc>> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9) as u32;
    DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
}

/// `text` without control characters (tabs and newlines become spaces).
fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B of text");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} of text", UNITS[unit])
}

fn duration(secs: f64) -> String {
    let total = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m {s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::leader_status;

    #[test]
    fn status_summary_names_everything() {
        let s: Status = serde_json::from_value(leader_status()).unwrap();
        let text = status_text(&s);
        for needle in [
            "node 3: leader, serving",
            "epoch:      8589934595 (round 2)",
            "leader:     3 at 127.0.0.1:5003 (clients 127.0.0.1:5103)",
            "predecessor 2, successor 1",
            "members:    1, 2, 3 (3 in ring order)",
            "last seq 42, commit seq 40, 2.0 KiB of text",
            "clients:    4 (0 slow-client disconnects)",
            "followers:  1 replicating at seq 42, lag 0",
            "            2 syncing at seq 30, lag 12",
            "uptime:     1h 02m 03s",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
    }

    #[test]
    fn entry_lines_are_clean() {
        let e = Entry {
            sequence_number: 7,
            username: "al\u{1b}[31mice".into(),
            content: "hi\nthere".into(),
            timestamp: f64::NAN,
        };
        assert_eq!(entry_line(&e), "[7] [--:--:--] al[31mice: hi there");
        let e = Entry {
            timestamp: 1_700_000_000.5,
            ..e
        };
        let line = entry_line(&e);
        let shape: String = line
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "[9] [99:99:99] al[99mice: hi there");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(12), "12 B of text");
        assert_eq!(bytes(3 << 20), "3.0 MiB of text");
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(61.0), "1m 01s");
        assert_eq!(duration(90_061.0), "1d 01h 01m 01s");
        assert_eq!(duration(f64::NAN), "0s");
    }
}
