//! Interactive mode: a rustyline prompt on a blocking thread, the connection manager on
//! tokio, and incoming messages printed above the prompt through rustyline's external
//! printer so that typing is not interrupted.

use std::process::ExitCode;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::Context;
use ringchat_proto::client::validate_username;
use ringchat_proto::limits::MAX_HISTORY_LIMIT;
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::time::timeout;

use crate::connection::{self, Client, Command, Options, QueueFull};
use crate::render::{Line, human};
use crate::session::Event;

/// `/history` without a count.
const DEFAULT_HISTORY: u64 = 10;
/// How long the goodbye may take after `/quit`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(1);

const HELP: &str = "Commands: /history [N] shows the last N messages (default 10), /leader \
shows the leader, /help shows this, /quit leaves. Any other line is sent; start it with // to \
send a line that begins with /.";

/// One line typed at the prompt.
#[derive(Debug, PartialEq)]
enum Input {
    Message(String),
    History(u64),
    Leader,
    Help,
    Quit,
    Empty,
    /// A mistyped command, with what to tell the user.
    Invalid(String),
}

fn parse_input(line: &str) -> Input {
    if line.trim().is_empty() {
        return Input::Empty;
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Input::Message(format!("/{escaped}"));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Input::Message(line.to_owned());
    };
    let mut words = command.split_whitespace();
    let (name, arg, extra) = (words.next(), words.next(), words.next());
    match (name, arg, extra) {
        (Some("history"), None, None) => Input::History(DEFAULT_HISTORY),
        (Some("history"), Some(n), None) => match n.parse() {
            Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => Input::History(n),
            _ => Input::Invalid(format!(
                "usage: /history [N], N from 1 to {MAX_HISTORY_LIMIT}"
            )),
        },
        (Some("leader"), None, None) => Input::Leader,
        (Some("help"), None, None) => Input::Help,
        (Some("quit"), None, None) => Input::Quit,
        (Some(name @ ("history" | "leader" | "help" | "quit")), ..) => {
            Input::Invalid(format!("/{name} takes no such arguments; see /help"))
        }
        _ => Input::Invalid(format!("unknown command {line:?}; see /help")),
    }
}

/// Runs the terminal client until `/quit`, Ctrl-D or Ctrl-C.
pub fn run(
    runtime: &Runtime,
    options: Options,
    username: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut editor = DefaultEditor::new().context("cannot use the terminal")?;
    let username = match username {
        Some(name) => name,
        None => match ask_username(&mut editor)? {
            Some(name) => name,
            None => return Ok(ExitCode::SUCCESS),
        },
    };
    let screen = Screen::new(&mut editor);
    let (input_tx, mut input) = mpsc::unbounded_channel();
    let prompt = format!("{username}> ");
    std::thread::spawn(move || read_lines(editor, &prompt, input_tx));

    runtime.block_on(async {
        let (client, mut events, manager) = connection::spawn(options, username.clone(), false);
        let mut greeted = false;
        loop {
            tokio::select! {
                line = input.recv() => match line.unwrap_or(Input::Quit) {
                    Input::Quit => break,
                    line => handle(line, &client, &screen),
                },
                event = events.recv() => {
                    let Some(event) = event else { break };
                    if !greeted && matches!(event, Event::Connected { .. }) {
                        greeted = true;
                        screen.show(format!("=== RingChat - connected as {username} ===\n{HELP}"));
                    }
                    if let Some(Line::Chat(line) | Line::Note(line)) = human(&event) {
                        screen.show(line);
                    }
                }
            }
        }
        client.request(Command::Quit);
        let _ = timeout(QUIT_TIMEOUT, manager).await;
    });
    Ok(ExitCode::SUCCESS)
}

fn handle(input: Input, client: &Client, screen: &Screen) {
    match input {
        Input::Message(text) => {
            if let Err(QueueFull) = client.try_send(text) {
                screen.show(
                    "[not sent: too many messages wait for the leader; try again once it is back]"
                        .into(),
                );
            }
        }
        Input::History(n) => client.request(Command::History(n)),
        Input::Leader => client.request(Command::ShowLeader),
        Input::Help => screen.show(HELP.into()),
        Input::Invalid(why) => screen.show(format!("[{why}]")),
        Input::Empty | Input::Quit => {}
    }
}

/// Asks until the name is valid; `None` when the user gives up (Ctrl-D, Ctrl-C).
fn ask_username(editor: &mut DefaultEditor) -> anyhow::Result<Option<String>> {
    loop {
        match editor.readline("Username: ") {
            Ok(line) => {
                let name = line.trim();
                match validate_username(name) {
                    Ok(()) => return Ok(Some(name.to_owned())),
                    Err(why) => println!("The name {why}."),
                }
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => return Ok(None),
            Err(e) => return Err(e).context("cannot read from the terminal"),
        }
    }
}

/// Reads the prompt until quit; runs on its own thread because rustyline blocks.
fn read_lines(mut editor: DefaultEditor, prompt: &str, input: UnboundedSender<Input>) {
    loop {
        let parsed = match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                parse_input(&line)
            }
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => Input::Quit,
            Err(e) => {
                eprintln!("ringchat-client: cannot read from the terminal: {e}");
                Input::Quit
            }
        };
        let quit = parsed == Input::Quit;
        if input.send(parsed).is_err() || quit {
            // Leaving readline first restores the terminal before the process exits.
            return;
        }
    }
}

/// Prints lines above the prompt, from a thread of its own because rustyline's printer
/// can block until the prompt thread takes the line.
struct Screen {
    lines: std_mpsc::Sender<String>,
}

impl Screen {
    fn new(editor: &mut DefaultEditor) -> Self {
        let (lines, rx) = std_mpsc::channel::<String>();
        match editor.create_external_printer() {
            Ok(printer) => std::thread::spawn(move || print_lines(printer, rx)),
            // No terminal features: plain lines are the best we can do.
            Err(_) => std::thread::spawn(move || rx.into_iter().for_each(|l| println!("{l}"))),
        };
        Self { lines }
    }

    fn show(&self, line: String) {
        // The printer thread lives as long as the process.
        let _ = self.lines.send(line);
    }
}

fn print_lines(mut printer: impl ExternalPrinter, lines: std_mpsc::Receiver<String>) {
    for line in lines {
        if printer.print(format!("{line}\n")).is_err() {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_commands() {
        assert_eq!(parse_input("hello"), Input::Message("hello".into()));
        assert_eq!(parse_input("  hi  "), Input::Message("  hi  ".into()));
        assert_eq!(parse_input("   "), Input::Empty);
        assert_eq!(parse_input("//shrug"), Input::Message("/shrug".into()));
        assert_eq!(parse_input("/history"), Input::History(10));
        assert_eq!(parse_input("/history 25"), Input::History(25));
        assert_eq!(parse_input("/leader"), Input::Leader);
        assert_eq!(parse_input("/help"), Input::Help);
        assert_eq!(parse_input("/quit"), Input::Quit);
        for bad in [
            "/history 0",
            "/history x",
            "/history 1001",
            "/quit now",
            "/nope",
        ] {
            assert!(matches!(parse_input(bad), Input::Invalid(_)), "{bad}");
        }
    }
}
