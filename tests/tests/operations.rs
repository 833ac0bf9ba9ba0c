//! The operator's side of `ringchatd`: configuration errors at start, SIGHUP reloads, the
//! admin socket's permissions, and the metrics and readiness endpoints of a live cluster.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use ringchat_cluster_tests::admin;
use ringchat_cluster_tests::bins::binaries;
use ringchat_cluster_tests::ports::node_ports;
use ringchat_cluster_tests::process;
use ringchat_cluster_tests::wait::{LONG, SHORT, wait_for, wait_until};
use ringchat_cluster_tests::wire::{WireClient, connect_request};
use ringchat_proto::server::ServerMessage;
use serde_json::json;
use tempfile::TempDir;

/// A `ringchatd` child that is killed when the test ends.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        process::kill9(&mut self.child);
        if std::thread::panicking()
            && let Ok(text) = std::fs::read_to_string(&self.log)
        {
            eprintln!("--- {} ---\n{text}", self.log.display());
        }
    }
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Daemon {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let child = process::command(&binaries().ringchatd, None)
        .args(args)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("ringchatd starts");
    Daemon { child, log }
}

fn log_text(d: &Daemon) -> String {
    std::fs::read_to_string(&d.log).unwrap_or_default()
}

/// A bad configuration is refused at start with exit code 2 and a message naming the key.
#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let dir = TempDir::new().expect("tempdir");
    let cases = [
        ("unknown key", "[node]\nid = 1\nidd = 2\n", "idd"),
        (
            "wrong type",
            "[node]\nid = 1\nport = \"five\"\n",
            "node.port",
        ),
        (
            "port out of range",
            "[node]\nid = 1\nport = 70000\n",
            "node.port",
        ),
        ("id out of range", "[node]\nid = 0\n", "node.id"),
        (
            "timeout below interval",
            "[node]\nid = 1\n[timing]\nheartbeat_interval = 1.0\nheartbeat_timeout = 0.5\n",
            "timing.heartbeat_timeout",
        ),
        ("unknown section", "[nodes]\nid = 1\n", "nodes"),
        (
            "frame too small",
            "[node]\nid = 1\n[limits]\nmax_frame = 100\n",
            "limits.max_frame",
        ),
        (
            "retention too small",
            "[node]\nid = 1\n[limits]\nhistory_retention = 10\n",
            "limits.history_retention",
        ),
    ];
    for (what, text, key) in cases {
        let file = dir.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&file, text).expect("write config");
        let args = vec![
            "--config".to_string(),
            file.display().to_string(),
            "--admin-socket".to_string(),
            dir.path().join("never.sock").display().to_string(),
        ];
        let mut d = spawn(dir.path(), "bad", &args);
        let status = process::wait_exit(&mut d.child, SHORT).expect("exits at once");
        assert_eq!(status.code(), Some(2), "{what}: exit code");
        let msg = log_text(&d);
        assert!(
            msg.contains(key),
            "{what}: message {msg:?} should name {key:?}"
        );
    }
    let missing = dir.path().join("missing.toml");
    let mut d = spawn(
        dir.path(),
        "missing",
        &["-c".to_string(), missing.display().to_string()],
    );
    let status = process::wait_exit(&mut d.child, SHORT).expect("exits at once");
    assert_eq!(status.code(), Some(2));
    assert!(log_text(&d).contains("missing.toml"), "{}", log_text(&d));
}

fn config_file(ring: u16, client: u16, socket: &Path, extra: &str) -> String {
    format!(
        "[node]\nid = 1\naddress = \"127.0.0.1\"\nport = {ring}\nclient_port = {client}\n\
         [discovery]\nmode = \"static\"\n[admin]\nsocket = \"{}\"\n{extra}",
        socket.display()
    )
}

/// SIGHUP applies what can change at runtime and names what needs a restart; a bad file
/// changes nothing and the server keeps running.
#[test]
fn sighup_reloads_and_a_bad_file_changes_nothing() {
    let dir = TempDir::new().expect("tempdir");
    let ports = node_ports();
    let socket = dir.path().join("admin.sock");
    let file = dir.path().join("node.toml");
    std::fs::write(&file, config_file(ports.ring, ports.client, &socket, "")).expect("write");
    let d = spawn(
        dir.path(),
        "node",
        &["-c".into(), file.display().to_string()],
    );
    wait_for(SHORT, "the server leads", || {
        admin::status(&socket).and_then(|s| if s.serving { Ok(()) } else { Err(s.summary()) })
    });

    let extra = "[timing]\nheartbeat_interval = 0.2\n[log]\nlevel = \"debug\"\n[cluster]\nname = \"renamed\"\n";
    std::fs::write(&file, config_file(ports.ring, ports.client, &socket, extra)).expect("write");
    process::signal(&d.child, Signal::SIGHUP);
    wait_until(SHORT, "the reload is logged", || {
        log_text(&d).contains("Configuration reloaded")
    });
    let line = log_text(&d)
        .lines()
        .find(|l| l.contains("Configuration reloaded"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("timing.heartbeat_interval") && line.contains("log.level"),
        "{line}"
    );
    assert!(
        line.contains("cluster.name"),
        "restart-required keys are named: {line}"
    );

    std::fs::write(&file, "[node]\nid = 1\nbogus = true\n").expect("write");
    process::signal(&d.child, Signal::SIGHUP);
    wait_until(SHORT, "the refusal is logged", || {
        log_text(&d).contains("reload refused")
    });
    let answer = admin::request(&socket, &json!({"cmd": "reload"}));
    let err = answer.expect_err("a bad file is refused");
    assert!(err.contains("bogus"), "the refusal names the key: {err}");
    let status = admin::status(&socket).expect("still answering");
    assert!(status.serving, "still serving: {}", status.summary());
}

/// With `admin.mode = "0660"` and a group, the socket is shared with that group, and every
/// command that changes the server is logged with the caller's uid.
#[test]
fn admin_socket_mode_group_and_audit() {
    let dir = TempDir::new().expect("tempdir");
    let ports = node_ports();
    let socket = dir.path().join("admin.sock");
    let file = dir.path().join("node.toml");
    let extra = "mode = \"0660\"\ngroup = \"root\"\n";
    let text = config_file(ports.ring, ports.client, &socket, "").replace(
        &format!("socket = \"{}\"\n", socket.display()),
        &format!("socket = \"{}\"\n{extra}", socket.display()),
    );
    std::fs::write(&file, text).expect("write");
    let d = spawn(
        dir.path(),
        "node",
        &["-c".into(), file.display().to_string()],
    );
    wait_until(SHORT, "the admin socket answers", || {
        admin::status(&socket).is_ok()
    });
    let meta = std::fs::metadata(&socket).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 0);
    admin::request(&socket, &json!({"cmd": "log_level", "level": "info"})).expect("log level");
    let uid = nix::unistd::getuid().as_raw();
    wait_until(
        SHORT,
        "the command is audited with the caller's uid",
        || {
            log_text(&d)
                .lines()
                .any(|l| l.contains("Admin command.") && l.contains(&format!("uid={uid} ")))
        },
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[node]\nid = 1\n[admin]\nmode = \"0666\"\n").expect("write");
    let mut b = spawn(dir.path(), "bad", &["-c".into(), bad.display().to_string()]);
    let status = process::wait_exit(&mut b.child, SHORT).expect("exits");
    assert_eq!(status.code(), Some(2));
    assert!(log_text(&b).contains("admin.mode"), "{}", log_text(&b));
}

/// With `limits.history_retention`, a server keeps a window of the history: a client asking
/// from before it is told to reset, and the window is what it gets.
#[test]
fn history_retention_keeps_a_window() {
    let dir = TempDir::new().expect("tempdir");
    let ports = node_ports();
    let socket = dir.path().join("admin.sock");
    let file = dir.path().join("node.toml");
    let extra = "[limits]\nhistory_retention = 1000\nhistory_on_connect = 10\n";
    std::fs::write(&file, config_file(ports.ring, ports.client, &socket, extra)).expect("write");
    let _d = spawn(
        dir.path(),
        "node",
        &["-c".into(), file.display().to_string()],
    );
    wait_for(SHORT, "the server leads", || {
        admin::status(&socket).and_then(|s| if s.serving { Ok(()) } else { Err(s.summary()) })
    });
    let addr = format!("127.0.0.1:{}", ports.client);
    let (mut client, _) = WireClient::session(&addr, "keeper", None);
    for i in 0..1300 {
        client.send_chat(&format!("m{i}"));
    }
    client.recv_until(
        |m| matches!(m, ServerMessage::MessageDelivered(d) if d.sequence_number == 1300),
    );
    let oldest = wait_for(SHORT, "old entries are dropped", || {
        let h = admin::history(&socket)?;
        match h.first() {
            Some(e) if e.sequence_number > 1 && h.len() <= 1000 + 125 => Ok(e.sequence_number),
            other => Err(format!(
                "{} entries from {:?}",
                h.len(),
                other.map(|e| e.sequence_number)
            )),
        }
    });
    let mut late = WireClient::open(&addr, "late");
    late.send(&connect_request("late", "Late", Some(5)));
    let pages = late.recv_history();
    let first = &pages[0];
    assert!(first.reset, "a view from before the window is reset");
    assert!(
        first
            .messages
            .first()
            .is_some_and(|e| e.sequence_number >= oldest)
    );
    assert_eq!(pages.last().map(|p| p.last_sequence), Some(1300));
}

/// The admin socket is created private to its owner.
#[test]
fn admin_socket_is_private() {
    let dir = TempDir::new().expect("tempdir");
    let ports = node_ports();
    let socket = dir.path().join("sub").join("admin.sock");
    let _d = spawn(
        dir.path(),
        "node",
        &[
            "1".into(),
            "--port".into(),
            ports.ring.to_string(),
            "--client-port".into(),
            ports.client.to_string(),
            "--discovery".into(),
            "static".into(),
            "--admin-socket".into(),
            socket.display().to_string(),
        ],
    );
    wait_until(SHORT, "the admin socket exists", || {
        admin::status(&socket).is_ok()
    });
    let mode = std::fs::metadata(&socket)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// Every metric the operations issue names is exported by a live leader, and `/readyz`
/// turns 503 while the server is drained.
#[test]
fn metrics_and_readiness_of_a_live_cluster() {
    let dir = TempDir::new().expect("tempdir");
    let ports: Vec<_> = (0..3).map(|_| node_ports()).collect();
    let metrics: Vec<u16> = (0..3).map(|_| node_ports().ring).collect();
    let mut daemons = Vec::new();
    for i in 0..3 {
        let mut args = vec![
            (i + 1).to_string(),
            "--port".into(),
            ports[i].ring.to_string(),
            "--client-port".into(),
            ports[i].client.to_string(),
            "--admin-socket".into(),
            dir.path()
                .join(format!("n{}.sock", i + 1))
                .display()
                .to_string(),
            "--metrics-addr".into(),
            format!("127.0.0.1:{}", metrics[i]),
        ];
        for p in &ports {
            args.push("--peer".into());
            args.push(format!("127.0.0.1:{}", p.ring));
        }
        daemons.push(spawn(dir.path(), &format!("n{}", i + 1), &args));
    }
    let leader_socket = dir.path().join("n3.sock");
    wait_for(LONG, "server 3 leads a ring of 3", || {
        admin::status(&leader_socket).and_then(|s| {
            if s.serving && s.member_ids().len() == 3 {
                Ok(())
            } else {
                Err(s.summary())
            }
        })
    });
    let (mut client, _) =
        WireClient::session(&format!("127.0.0.1:{}", ports[2].client), "ops", None);
    for i in 0..5 {
        client.chat(&format!("hello {i}"));
    }
    let names = [
        "ringchat_is_leader",
        "ringchat_has_leader",
        "ringchat_election_epoch",
        "ringchat_leader_changes_seen_total",
        "ringchat_election_rounds_total",
        "ringchat_election_duration_seconds",
        "ringchat_election_messages_total",
        "ringchat_heartbeats_sent_total",
        "ringchat_heartbeat_misses_total",
        "ringchat_heartbeat_rtt_seconds",
        "ringchat_ring_members",
        "ringchat_ring_repairs_total",
        "ringchat_replication_lag_entries",
        "ringchat_replication_lag_seconds",
        "ringchat_message_commit_duration_seconds",
        "ringchat_messages_received_total",
        "ringchat_messages_deduplicated_total",
        "ringchat_history_entries",
        "ringchat_history_bytes",
        "ringchat_clients_connected",
        "ringchat_client_connections_total",
        "ringchat_slow_client_disconnects_total",
        "ringchat_protocol_errors_total",
        "ringchat_draining",
        "ringchat_build_info",
    ];
    wait_for(
        SHORT,
        "every metric is exported with sensible values",
        || {
            let (code, body) = http_get(metrics[2], "/metrics");
            if code != 200 {
                return Err(format!("/metrics answered {code}"));
            }
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !body.lines().any(|l| l.starts_with(n)))
                .collect();
            let sensible = body.contains("ringchat_is_leader 1")
                && body.contains("ringchat_ring_members 3")
                && body.contains("ringchat_messages_received_total 5")
                && body.contains("ringchat_history_entries 5");
            if missing.is_empty() && sensible {
                Ok(())
            } else {
                Err(format!("missing {missing:?}; sensible values: {sensible}"))
            }
        },
    );
    assert_eq!(http_get(metrics[0], "/healthz").0, 200);
    assert_eq!(http_get(metrics[2], "/readyz").0, 200);
    admin::request(&leader_socket, &json!({"cmd": "drain"})).expect("drain");
    wait_until(SHORT, "/readyz turns 503 while drained", || {
        http_get(metrics[2], "/readyz").0 == 503
    });
    wait_until(SHORT, "another server takes over and is ready", || {
        http_get(metrics[1], "/readyz").0 == 200
            && admin::status(&dir.path().join("n2.sock")).is_ok_and(|s| s.serving)
    });
    admin::request(&leader_socket, &json!({"cmd": "undrain"})).expect("undrain");
    wait_until(SHORT, "/readyz is 200 again", || {
        http_get(metrics[2], "/readyz").0 == 200
    });
}
