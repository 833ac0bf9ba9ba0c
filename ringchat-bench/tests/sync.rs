//! The `sync` mode counts correctly: against the in-test fake leader and follower, with
//! fake admin sockets and a real process standing in for the server that is replaced.
//! Assertions on counts and on which step happened, never on timings.

mod fake;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fake::{FakeLeader, Knobs, start_follower};
use ringchat_bench::session::ConnectOptions;
use ringchat_bench::sync::{self, SyncConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// An admin socket answering every request line with `answer()`.
fn admin(path: &Path, answer: impl Fn() -> Value + Send + Sync + 'static) {
    let listener = tokio::net::UnixListener::bind(path).expect("bind admin socket");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(rd).read_line(&mut line).await.is_ok() {
                    let _ = wr.write_all(format!("{}\n", answer()).as_bytes()).await;
                }
            });
        }
    });
}

/// A process to be killed in place of server 2, with its pid in `dir/2.pid`.
fn stand_in(dir: &Path) -> Child {
    let child = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(dir.join("2.pid"), format!("{}\n", child.id())).expect("pid file");
    child
}

fn killed(mut child: Child) -> bool {
    use std::os::unix::process::ExitStatusExt;
    child.wait().expect("wait").signal() == Some(9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_fills_only_what_is_missing_and_follows_the_catch_up() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ringchat-bench-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let leader = FakeLeader::start(Knobs::default()).await;
    leader.seed(
        "old",
        &(0..100).map(|n| format!("o:{n}")).collect::<Vec<_>>(),
    );
    let follower = start_follower(&leader.addr).await;

    // Server 1 leads and has dropped server 2 from its ring.
    let held = leader.clone();
    admin(&dir.join("node1.sock"), move || {
        json!({"ok": true, "last_seq": held.log().len(), "leader": {"id": "1"},
               "members": [{"id": "1"}]})
    });
    // Server 2, once started, holds nothing, then joins and gains 300 entries per status.
    let started = dir.join("started-2");
    let polls = AtomicU64::new(0);
    admin(&dir.join("node2.sock"), move || {
        if !started.exists() {
            return json!({"ok": true, "last_seq": 0, "leader": null});
        }
        let k = polls.fetch_add(1, Ordering::SeqCst);
        let leader = if k >= 1 {
            json!({"id": "1"})
        } else {
            Value::Null
        };
        json!({"ok": true, "last_seq": (k * 300).min(1000), "leader": leader})
    });

    let cfg = SyncConfig {
        connect: ConnectOptions::new(vec![leader.addr.clone(), follower]),
        history: 1000,
        senders: 3,
        window: 5,
        size: 100,
        pids_dir: dir.clone(),
        start_cmd: format!("touch {}/started-{{id}}", dir.display()),
        admin_sockets: format!("{}/node{{id}}.sock", dir.display()),
        target: None,
        ack_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(60),
        run_id: "sy".into(),
        username: "bench".into(),
    };
    let child = stand_in(&dir);
    let r = sync::run(&cfg).await.expect("sync run");
    assert!(r.passed(), "{r:?}");
    assert_eq!((r.leader, r.target), (1, 2));
    assert!(killed(child), "the old server 2 was killed");
    let fill = r.fill.as_ref().expect("a fill was needed");
    assert_eq!((fill.sent, fill.acked, fill.unacked), (900, 900, 0));
    assert_eq!(leader.log().len(), 1000);
    assert_eq!(r.entries, 1000);
    assert_eq!(r.held_at_start, Some(0));
    assert!(r.up_ms.is_some() && r.joined_ms.is_some() && r.caught_up_ms.is_some());
    assert_eq!(r.progress.last().map(|p| p.1), Some(1000));
    assert!(r.entries_per_sec > 0.0);

    // A second run finds the history full: nothing is sent, the catch-up is timed again.
    let child = stand_in(&dir);
    let r = sync::run(&cfg).await.expect("second sync run");
    assert!(r.passed(), "{r:?}");
    assert!(killed(child));
    assert!(r.fill.is_none());
    assert_eq!((r.entries, leader.log().len()), (1000, 1000));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_is_never_the_server_replaced() {
    let leader = FakeLeader::start(Knobs::default()).await;
    let follower = start_follower(&leader.addr).await;
    let cfg = SyncConfig {
        connect: ConnectOptions::new(vec![leader.addr.clone(), follower]),
        history: 10,
        senders: 1,
        window: 1,
        size: 10,
        pids_dir: std::env::temp_dir(),
        start_cmd: "true".into(),
        admin_sockets: "/nonexistent/node{id}.sock".into(),
        target: Some(1),
        ack_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        run_id: "sy2".into(),
        username: "bench".into(),
    };
    let e = sync::run(&cfg)
        .await
        .expect_err("replacing the leader is refused");
    assert!(format!("{e:#}").contains("leads"), "{e:#}");
    assert!(leader.log().is_empty(), "nothing was sent");
}
