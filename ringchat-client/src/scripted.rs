//! Scripted mode, for tests and shell scripts: send every `--send` text (or every line of
//! standard input as it arrives), wait until each is acknowledged across reconnects and
//! leader changes, optionally listen a while, and say in the exit code whether it all worked.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ringchat_proto::Seq;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::cli::Script;
use crate::connection::{Client, Command};
use crate::render::{Line, human};
use crate::session::Event;

/// How long the goodbye may take at the end.
const QUIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs a script against a started connection manager; returns the exit code.
pub async fn run(
    script: Script,
    client: Client,
    mut events: UnboundedReceiver<Event>,
    manager: JoinHandle<()>,
) -> ExitCode {
    let mut out = Output {
        json: script.json,
        progress: Progress::default(),
    };
    let (fed_tx, mut fed) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(feed(script.send, client.clone(), fed_tx));
    let mut feeding = true;
    let mut submitted = 0;
    let mut last_activity = Instant::now();
    let mut ok = loop {
        let Progress {
            connected,
            answered,
            ..
        } = out.progress;
        let settled = out.progress.settled(submitted);
        if !feeding && settled {
            break true;
        }
        tokio::select! {
            line = fed.recv(), if feeding => match line {
                Some(()) => {
                    submitted += 1;
                    last_activity = Instant::now();
                }
                None => feeding = false,
            },
            event = events.recv() => match event {
                Some(event) => {
                    if out.show(&event) {
                        last_activity = Instant::now();
                    }
                }
                None => {
                    eprintln!("ringchat-client: the connection manager stopped");
                    break false;
                }
            },
            () = sleep_until(last_activity + script.timeout), if !settled => {
                let secs = script.timeout.as_secs_f64();
                let open = submitted - answered.min(submitted);
                if connected {
                    eprintln!("ringchat-client: no progress for {secs:.1} s; {open} of {submitted} messages unacknowledged");
                } else {
                    eprintln!("ringchat-client: found no leader within {secs:.1} s");
                }
                break false;
            }
        }
    };
    if ok && let Some(listen) = script.listen {
        ok = out.listen(&mut events, listen).await;
    }
    feeder.abort();
    client.request(Command::Quit);
    let _ = timeout(QUIT_TIMEOUT, manager).await;
    if ok && !out.progress.refused {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the events have told so far.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// A leader accepted us at least once.
    connected: bool,
    /// Messages acknowledged or refused.
    answered: usize,
    /// Some message was refused.
    refused: bool,
    /// The highest sequence number acknowledged to us.
    acked_up_to: Seq,
    /// The highest sequence number shown.
    shown_up_to: Seq,
}

impl Progress {
    /// Takes note of `event`; true when it is progress (an acknowledgement, a connection).
    fn record(&mut self, event: &Event) -> bool {
        match event {
            Event::Delivered {
                sequence_number, ..
            } => {
                self.answered += 1;
                self.acked_up_to = self.acked_up_to.max(*sequence_number);
            }
            Event::Failed { .. } => {
                self.answered += 1;
                self.refused = true;
            }
            Event::Connected { .. } => self.connected = true,
            Event::Entry(entry) => {
                self.shown_up_to = self.shown_up_to.max(entry.sequence_number);
                return false;
            }
            _ => return false,
        }
        true
    }

    /// All `submitted` messages are answered, and shown: an acknowledgement may overtake
    /// the broadcast of the same message, and a script should see its own lines.
    fn settled(&self, submitted: usize) -> bool {
        self.connected && self.answered >= submitted && self.shown_up_to >= self.acked_up_to
    }
}

/// Prints events and keeps the [`Progress`].
struct Output {
    json: bool,
    progress: Progress,
}

impl Output {
    /// Prints `event`; true when it shows progress.
    fn show(&mut self, event: &Event) -> bool {
        match (event, human(event)) {
            (Event::Frame(line), _) if self.json => print_stdout(line),
            (_, Some(Line::Chat(line))) if !self.json => print_stdout(&line),
            (_, Some(Line::Note(line))) => eprintln!("{line}"),
            _ => {}
        }
        self.progress.record(event)
    }

    /// Prints what arrives for `duration`; false if the connection manager stopped.
    async fn listen(&mut self, events: &mut UnboundedReceiver<Event>, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        self.show(&event);
                    }
                    None => return false,
                },
                () = sleep_until(end) => return true,
            }
        }
    }
}

/// One line on stdout, flushed at once: a reader may be waiting for it.
fn print_stdout(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (the reader left) must not stop the client from finishing its sends.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Submits the messages (from `--send`, else each non-empty line of standard input as it
/// arrives), telling `fed` after each one; waits for a free slot when too many are pending.
async fn feed(send: Vec<String>, client: Client, fed: mpsc::UnboundedSender<()>) {
    let submit = |content: String| {
        let client = &client;
        let fed = &fed;
        async move {
            client.send(content).await;
            let _ = fed.send(());
        }
    };
    if !send.is_empty() {
        for content in send {
            submit(content).await;
        }
        return;
    }
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match stdin.read_until(b'\n', &mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                eprintln!("ringchat-client: cannot read standard input: {e}");
                return;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if !line.is_empty() {
            submit(line.to_owned()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::tests::entry;

    #[test]
    fn settled_needs_every_answer_and_our_broadcasts() {
        let mut p = Progress::default();
        assert!(!p.settled(0), "not before a leader accepted us");
        let connected = Event::Connected {
            server: "Server 3".into(),
            address: "a:1".into(),
        };
        assert!(p.record(&connected));
        assert!(p.settled(0));
        let delivered = Event::Delivered {
            message_id: "c:1".into(),
            sequence_number: 2,
        };
        assert!(p.record(&delivered));
        assert!(!p.settled(1), "its broadcast has not been shown yet");
        assert!(!p.record(&Event::Entry(entry(1))));
        assert!(!p.settled(1));
        p.record(&Event::Entry(entry(2)));
        assert!(p.settled(1));
        assert!(!p.settled(2));
        p.record(&Event::Failed {
            message_id: "c:2".into(),
            reason: "no".into(),
        });
        assert!(p.settled(2) && p.refused);
    }
}
