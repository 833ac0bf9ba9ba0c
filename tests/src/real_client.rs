//! The real `ringchat-client` in scripted mode: lines written to its stdin are messages;
//! with `--json` it prints every frame it receives as one JSON line on stdout, which a
//! background thread collects with the time each line arrived.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ringchat_proto::Seq;
use serde_json::Value;

use crate::bins::binaries;
use crate::wait::LONG;
use crate::{lock, process};

/// The client's `--timeout`: it gives up (exit 1) after this long without progress, well
/// before [`RealClient::finish`] stops waiting for it.
const CLIENT_TIMEOUT_SECS: u64 = 15;

/// A frame the client printed, with the time it was read from its stdout.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the line was read.
    pub at: Instant,
    /// The frame.
    pub frame: Value,
}

/// A running `ringchat-client --json`; killed on drop.
#[derive(Debug)]
pub struct RealClient {
    child: Child,
    stdin: Option<ChildStdin>,
    received: Arc<Mutex<Vec<Received>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl RealClient {
    /// Starts `ringchat-client --json --timeout 15 <args>` with stdin piped (inside `netns`
    /// if given).
    pub fn spawn(args: &[String], netns: Option<&str>) -> RealClient {
        let mut child = process::command(&binaries().client, netns)
            .args(["--json", "--timeout", &CLIENT_TIMEOUT_SECS.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ringchat-client: {e}"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&received);
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let frame = serde_json::from_str(&line)
                    .unwrap_or_else(|e| Value::String(format!("not JSON ({e}): {line}")));
                lock(&sink).push(Received {
                    at: Instant::now(),
                    frame,
                });
            }
        });
        let text = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut err = err;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                lock(&text).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        RealClient {
            child,
            stdin,
            received,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        }
    }

    /// Starts a scripted client that knows the servers `addrs` (`-s` each) as `username`
    /// with client id `client_id`.
    pub fn scripted(addrs: &[String], username: &str, client_id: &str) -> RealClient {
        let mut args: Vec<String> = vec![
            "-u".into(),
            username.into(),
            "--client-id".into(),
            client_id.into(),
        ];
        for a in addrs {
            args.push("-s".into());
            args.push(a.clone());
        }
        Self::spawn(&args, None)
    }

    /// Writes one line (one message) to the client's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin was closed");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "writing to ringchat-client: {e}; stderr:\n{}",
                    self.stderr()
                )
            });
    }

    /// Closes stdin (the client sends what is left, waits for the acks and exits) and
    /// waits up to [`LONG`] for the client to exit; returns its status.
    pub fn finish(&mut self) -> ExitStatus {
        self.stdin = None;
        let status = process::wait_exit(&mut self.child, LONG).unwrap_or_else(|| {
            panic!(
                "ringchat-client did not exit within {LONG:?}; stderr:\n{}",
                self.stderr()
            )
        });
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// The `message_delivered` frames so far, as `(message_id, sequence_number, when)`.
    pub fn deliveries(&self) -> Vec<(String, Seq, Instant)> {
        lock(&self.received)
            .iter()
            .filter(|r| r.frame["msg_type"] == "message_delivered")
            .map(|r| {
                (
                    r.frame["message_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    r.frame["sequence_number"].as_u64().unwrap_or_default(),
                    r.at,
                )
            })
            .collect()
    }

    /// Every frame of type `msg_type` printed so far, in order.
    pub fn frames(&self, msg_type: &str) -> Vec<Value> {
        lock(&self.received)
            .iter()
            .filter(|r| r.frame["msg_type"] == msg_type)
            .map(|r| r.frame.clone())
            .collect()
    }

    /// The chat broadcasts printed so far, as `(sequence_number, message_id)`.
    pub fn broadcasts(&self) -> Vec<(Seq, String)> {
        self.frames("chat_broadcast")
            .iter()
            .map(|f| {
                (
                    f["sequence_number"].as_u64().unwrap_or_default(),
                    f["message_id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The distinct delivered message ids with their sequence numbers; panics if one id was
    /// acknowledged twice with different sequence numbers.
    pub fn delivered(&self) -> BTreeMap<String, Seq> {
        let mut out = BTreeMap::new();
        for (id, seq, _) in self.deliveries() {
            if let Some(prev) = out.insert(id.clone(), seq) {
                assert_eq!(
                    prev, seq,
                    "message {id} was acked with two sequence numbers"
                );
            }
        }
        out
    }

    /// What the client wrote on stderr so far (its human-readable status lines).
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }
}

impl Drop for RealClient {
    fn drop(&mut self) {
        process::kill9(&mut self.child);
        if std::thread::panicking() {
            eprintln!("----- ringchat-client stderr -----\n{}", self.stderr());
        }
    }
}
