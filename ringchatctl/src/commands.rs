//! Runs one command against the admin socket and returns what to print: a JSON object for
//! `--json` and a text for people. The waiting commands live in [`crate::elect`] and
//! [`crate::drain`].

use serde_json::{Value, json};

use crate::cli::{Args, Command};
use crate::client::AdminClient;
use crate::error::CtlError;
use crate::render::{self, Entry};
use crate::status::Status;
use crate::wait::Waiter;
use crate::{drain, elect, ring};

/// Most history entries the daemon returns per call.
const HISTORY_PAGE: u64 = 10_000;

/// A command's result in both forms.
#[derive(Debug)]
pub struct Report {
    /// For `--json`.
    pub json: Value,
    /// For people (ends with a newline).
    pub text: String,
}

/// Runs `args.command`.
pub fn run(args: &Args) -> Result<Report, CtlError> {
    let mut client = AdminClient::connect(&args.socket)?;
    let waiter = || Waiter::new(args.timeout, args.json);
    match &args.command {
        Command::Status => {
            let (status, raw) = Status::fetch(&mut client)?;
            Ok(Report {
                json: raw,
                text: render::status_text(&status),
            })
        }
        Command::Ring => {
            let (status, _) = Status::fetch(&mut client)?;
            Ok(Report {
                json: ring::to_json(&status),
                text: ring::to_text(&status),
            })
        }
        Command::History { count } => history(&mut client, *count),
        Command::Elect => elect::elect(&mut client, waiter()),
        Command::Drain => drain::drain(&mut client, waiter()),
        Command::Leave => drain::leave(&mut client, &args.socket, args.timeout, args.json),
        Command::Undrain => {
            let answer = client.request(&json!({"cmd": "undrain"}))?;
            Ok(Report {
                json: answer,
                text: "undrained: the node takes clients again\n".to_owned(),
            })
        }
        Command::LogLevel { level } => {
            let answer = client.request(&json!({"cmd": "log_level", "level": level}))?;
            let now = answer.get("level").and_then(Value::as_str).unwrap_or(level);
            let text = format!("log level is now {now}\n");
            Ok(Report { json: answer, text })
        }
        Command::Reload => {
            let answer = client.request(&json!({"cmd": "reload"}))?;
            let text = reload_text(&answer);
            Ok(Report { json: answer, text })
        }
    }
}

/// The newest `count` entries, fetched page by page.
fn history(client: &mut AdminClient, count: u64) -> Result<Report, CtlError> {
    let head = client.request(&json!({"cmd": "history", "from": 0, "limit": 0}))?;
    let last_seq = u64_field(&head, "last_seq")?;
    let mut from = last_seq.saturating_sub(count);
    let mut entries: Vec<Value> = Vec::new();
    while from < last_seq {
        let limit = (last_seq - from).min(HISTORY_PAGE);
        let page = client.request(&json!({"cmd": "history", "from": from, "limit": limit}))?;
        let got = page
            .get("entries")
            .and_then(Value::as_array)
            .ok_or_else(|| CtlError::Failed("ringchatd sent a history without entries".into()))?;
        let Some(newest) = got
            .last()
            .and_then(|e| e.get("sequence_number"))
            .and_then(Value::as_u64)
        else {
            break;
        };
        if newest <= from {
            return Err(CtlError::Failed(format!(
                "ringchatd sent history entries out of order (after {from}: {newest})"
            )));
        }
        entries.extend(got.iter().cloned());
        from = newest;
    }
    let mut text = String::new();
    for value in &entries {
        let entry: Entry = serde_json::from_value(value.clone()).map_err(|e| {
            CtlError::Failed(format!(
                "ringchatd sent a history entry this ringchatctl does not understand: {e}"
            ))
        })?;
        text.push_str(&render::entry_line(&entry));
        text.push('\n');
    }
    if entries.is_empty() {
        text.push_str("(no messages)\n");
    }
    Ok(Report {
        json: json!({"ok": true, "last_seq": last_seq, "entries": entries}),
        text,
    })
}

fn reload_text(answer: &Value) -> String {
    let keys = |name: &str| -> String {
        let list: Vec<String> = answer
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    format!(
        "reloaded\napplied:          {}\nrestart required: {}\n",
        keys("applied"),
        keys("restart_required")
    )
}

/// A number the daemon must send.
pub fn u64_field(answer: &Value, name: &str) -> Result<u64, CtlError> {
    answer.get(name).and_then(Value::as_u64).ok_or_else(|| {
        CtlError::Failed(format!(
            "ringchatd's answer lacks the number \"{name}\": {answer}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_lists_both_kinds_of_keys() {
        let a = json!({"ok": true, "applied": ["log.level", "limits.max_text"], "restart_required": []});
        assert_eq!(
            reload_text(&a),
            "reloaded\napplied:          log.level, limits.max_text\nrestart required: none\n"
        );
    }

    #[test]
    fn a_missing_number_is_a_failure() {
        let e = u64_field(&json!({"ok": true}), "epoch").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("\"epoch\""), "{e}");
    }
}
