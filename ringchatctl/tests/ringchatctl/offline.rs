//! Without a working daemon: a missing socket, a path that refuses, usage errors (exit 2);
//! a daemon that refuses the request or never reaches the outcome (exit 1).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{ctl, run};

fn unreachable(socket: &Path, stderr: &str, reason: &str) {
    let expected = format!(
        "ringchatctl: cannot reach ringchatd at {}: {reason} (is it running? --socket PATH)",
        socket.display()
    );
    assert_eq!(stderr.trim_end(), expected);
}

#[test]
fn a_missing_socket_exits_2_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let socket = dir.path().join("admin.sock");
    for cmd in [
        "status", "ring", "elect", "drain", "leave", "undrain", "reload",
    ] {
        let out = ctl(&socket, &[cmd]);
        assert_eq!(out.code, 2, "{cmd}: {out:?}");
        assert_eq!(out.stdout, "", "{cmd}");
        unreachable(&socket, &out.stderr, "No such file or directory");
    }
    let out = ctl(&socket, &["history", "-n", "3", "--json"]);
    assert_eq!(out.code, 2);
    assert_eq!(out.json()["ok"], false);
    assert!(
        out.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains(&socket.display().to_string())),
        "{out:?}"
    );
}

#[test]
fn a_path_that_refuses_exits_2() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("regular-file");
    std::fs::write(&file, "not a socket").unwrap();
    let out = ctl(&file, &["status"]);
    assert_eq!(out.code, 2, "{out:?}");
    unreachable(&file, &out.stderr, "Connection refused");

    // A socket left behind by a process that is gone.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let out = ctl(&stale, &["log-level", "info"]);
    assert_eq!(out.code, 2, "{out:?}");
    unreachable(&stale, &out.stderr, "Connection refused");
}

#[test]
fn the_socket_comes_from_the_environment() {
    let dir = TempDir::new().unwrap();
    let socket = dir.path().join("from-env.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringchatctl"));
    cmd.arg("status").env("RINGCHAT_ADMIN__SOCKET", &socket);
    let out = run(cmd);
    assert_eq!(out.code, 2, "{out:?}");
    unreachable(&socket, &out.stderr, "No such file or directory");
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new().unwrap();
    let socket = dir.path().join("admin.sock");
    for args in [
        &["frobnicate"][..],
        &["log-level"],
        &["history", "-n", "many"],
        &["elect", "--timeout", "-1"],
    ] {
        let out = ctl(&socket, args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {out:?}");
    }
}

/// A daemon stand-in answering each request line with `answer(request)`.
fn fake_daemon(answer: fn(&Value) -> Value) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if writeln!(writer, "{}", answer(&req)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (dir, path)
}

/// A follower of a ring whose election never ends: no leader, ever.
fn leaderless(req: &Value) -> Value {
    match req["cmd"].as_str() {
        Some("elect") => json!({"ok": true, "epoch": 196_609}),
        Some("status") => json!({
            "ok": true, "id": "1", "role": "candidate", "serving": false, "draining": false,
            "epoch": 196_609, "round": 3, "leader": null, "successor": "2", "predecessor": "2",
            "members": [
                {"id": "1", "address": "127.0.0.1", "port": 5001, "client_port": 5101, "silence_ms": null},
                {"id": "2", "address": "127.0.0.1", "port": 5002, "client_port": 5102, "silence_ms": 5}
            ],
            "last_seq": 0, "commit_seq": 0, "history_bytes": 0, "clients": 2,
            "slow_client_disconnects": 0, "followers": [], "uptime_seconds": 1.0
        }),
        Some("drain") => json!({"ok": true}),
        _ => json!({"ok": false, "error": "unknown level \"loud\""}),
    }
}

#[test]
fn a_refused_request_exits_1_with_the_daemons_reason() {
    let (_dir, socket) = fake_daemon(leaderless);
    let out = ctl(&socket, &["log-level", "loud"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "ringchatctl: ringchatd refused log_level: unknown level \"loud\""
    );
    let out = ctl(&socket, &["log-level", "loud", "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["ok"], false);
}

#[test]
fn waits_end_at_the_timeout_with_what_is_missing() {
    let (_dir, socket) = fake_daemon(leaderless);
    let out = ctl(&socket, &["elect", "--timeout", "0.3"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "ringchatctl: no leader after 0.3s: node 1 is candidate in epoch 196609 (round 3), \
         the forced round began at epoch 196609"
    );
    let out = ctl(&socket, &["drain", "--timeout", "0.3"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "ringchatctl: drain of node 1 not finished after 0.3s: clients remaining: 2"
    );
    let out = ctl(&socket, &["leave", "--timeout", "0.3"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("clients remaining: 2; not leaving"),
        "{out:?}"
    );
}
