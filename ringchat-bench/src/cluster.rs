//! What the failover mode does to the servers besides talking to them: map client
//! addresses to server ids (`client_ping` answers carry `"Server N"`), find a server's pid in
//! `DIR/<id>.pid`, kill it with SIGKILL, and restart it through the user's command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ringchat_proto::NodeId;
use ringchat_proto::server::LeaderInfo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;
use tokio::time::{sleep, timeout};

use crate::session;
use crate::wire;

/// Pings every server once and returns `id -> client address`.
pub async fn map_ids(
    servers: &[String],
    client_id: &str,
    limit: Duration,
) -> Result<BTreeMap<NodeId, String>> {
    let mut ids = BTreeMap::new();
    for addr in servers {
        let info = session::ping(addr, client_id, limit)
            .await
            .with_context(|| format!("pinging {addr} to learn its id"))?;
        let id = wire::server_id(&info.sender_id).ok_or_else(|| {
            anyhow!(
                "{addr}: client_ping_ack has sender_id {:?}, not \"Server N\"",
                info.sender_id
            )
        })?;
        if let Some(other) = ids.insert(id, addr.clone()) {
            bail!("{addr} and {other} both say they are server {id}");
        }
    }
    Ok(ids)
}

/// The pid in `dir/<id>.pid`.
pub fn read_pid(dir: &Path, id: NodeId) -> Result<i32> {
    let path = dir.join(format!("{id}.pid"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a pid: {:?}", path.display(), text.trim()))?;
    if pid <= 1 {
        bail!("{} holds pid {pid}, which is not a server", path.display());
    }
    Ok(pid)
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: i32) -> Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGKILL).with_context(|| format!("kill -9 {pid}"))
}

/// Runs `template` with `{id}` replaced through `sh -c` and waits (at most `limit`) for it
/// to exit 0. The command must start the server in the background and return; its output
/// should go to a file, since the bench tool does not wait for inherited pipes.
pub async fn restart(template: &str, id: NodeId, limit: Duration) -> Result<()> {
    let cmd = template.replace("{id}", &id.to_string());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting restart command {cmd:?}"))?;
    let status = timeout(limit, child.wait())
        .await
        .with_context(|| format!("restart command {cmd:?} still running after {limit:?}"))?
        .with_context(|| format!("waiting for restart command {cmd:?}"))?;
    if !status.success() {
        bail!("restart command {cmd:?} failed: {status}");
    }
    Ok(())
}

/// Pings `addr` until it names a leader (it has joined the ring), within `limit`.
pub async fn wait_knows_leader(addr: &str, client_id: &str, limit: Duration) -> Result<LeaderInfo> {
    let deadline = Instant::now() + limit;
    let mut last = anyhow!("never answered");
    loop {
        match session::ping(addr, client_id, Duration::from_millis(500)).await {
            Ok(info) if info.is_available && info.leader_id.is_some() => return Ok(info),
            Ok(info) => last = anyhow!("answers without a leader (epoch {})", info.epoch),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(last.context(format!("{addr} did not name a leader within {limit:?}")));
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Pings every server and returns the leader all of them name, if they agree.
pub async fn agreed_leader(ids: &BTreeMap<NodeId, String>, client_id: &str) -> Option<NodeId> {
    let mut agreed = None;
    for addr in ids.values() {
        let info = session::ping(addr, client_id, Duration::from_millis(500))
            .await
            .ok()?;
        let leader = info.leader_id.filter(|_| info.is_available)?;
        if agreed.is_some_and(|a| a != leader) {
            return None;
        }
        agreed = Some(leader);
    }
    agreed
}

/// The admin socket path of server `id` from a pattern such as `DIR/node{id}.sock`.
pub fn admin_path(pattern: &str, id: NodeId) -> PathBuf {
    PathBuf::from(pattern.replace("{id}", &id.to_string()))
}

/// One `{"cmd":"status"}` on a server's admin socket (one JSON object per line each way).
pub async fn admin_status(path: &Path, limit: Duration) -> Result<Value> {
    let work = async {
        let mut stream = UnixStream::connect(path)
            .await
            .with_context(|| format!("connecting to {}", path.display()))?;
        stream
            .write_all(b"{\"cmd\":\"status\"}\n")
            .await
            .with_context(|| format!("writing to {}", path.display()))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .with_context(|| format!("reading from {}", path.display()))?;
        serde_json::from_str::<Value>(&line)
            .with_context(|| format!("{}: status is not JSON: {line:?}", path.display()))
    };
    timeout(limit, work)
        .await
        .with_context(|| format!("{}: no status within {limit:?}", path.display()))?
}

/// `last_seq` from a server's admin status.
pub async fn admin_last_seq(path: &Path) -> Result<u64> {
    let status = admin_status(path, Duration::from_secs(2)).await?;
    status["last_seq"]
        .as_u64()
        .ok_or_else(|| anyhow!("{}: status has no last_seq: {status}", path.display()))
}

/// Waits until server `id` holds at least the history the leader had when the wait began
/// (read from both admin sockets), within `limit`.
pub async fn wait_caught_up(
    pattern: &str,
    id: NodeId,
    leader: NodeId,
    limit: Duration,
) -> Result<u64> {
    let deadline = Instant::now() + limit;
    let target = admin_last_seq(&admin_path(pattern, leader))
        .await
        .with_context(|| format!("asking leader {leader} for its last sequence number"))?;
    let mut last = anyhow!("never answered");
    loop {
        match admin_last_seq(&admin_path(pattern, id)).await {
            Ok(seq) if seq >= target => return Ok(target),
            Ok(seq) => last = anyhow!("at {seq} of {target}"),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(last.context(format!("server {id} did not catch up within {limit:?}")));
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every server in `ids` holds the history `leader` had when the wait began.
pub async fn wait_all_caught_up(
    pattern: &str,
    ids: &BTreeMap<NodeId, String>,
    leader: NodeId,
    limit: Duration,
) -> Result<u64> {
    let deadline = Instant::now() + limit;
    let mut target = 0;
    for &id in ids.keys().filter(|&&id| id != leader) {
        let left = deadline.saturating_duration_since(Instant::now());
        target = wait_caught_up(pattern, id, leader, left).await?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_are_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("ringchat-bench-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("2.pid"), "4242\n").unwrap();
        std::fs::write(dir.join("3.pid"), "nope").unwrap();
        assert_eq!(read_pid(&dir, 2).unwrap(), 4242);
        assert!(read_pid(&dir, 3).is_err());
        assert!(read_pid(&dir, 4).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fake admin socket answering every status request with `last_seq`.
    fn fake_admin(path: &Path, last_seq: u64) {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let _ = BufReader::new(rd).read_line(&mut line).await;
                let answer = if line.contains("status") {
                    format!("{{\"ok\":true,\"last_seq\":{last_seq}}}\n")
                } else {
                    "{\"ok\":false}\n".to_string()
                };
                let _ = wr.write_all(answer.as_bytes()).await;
            }
        });
    }

    #[tokio::test]
    async fn catching_up_is_read_from_the_admin_sockets() {
        let dir = std::env::temp_dir().join(format!("ringchat-bench-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pattern = format!("{}/node{{id}}.sock", dir.display());
        fake_admin(&admin_path(&pattern, 1), 500);
        fake_admin(&admin_path(&pattern, 2), 500);
        fake_admin(&admin_path(&pattern, 3), 499);
        assert_eq!(admin_last_seq(&admin_path(&pattern, 3)).await.unwrap(), 499);
        let limit = Duration::from_millis(200);
        assert_eq!(wait_caught_up(&pattern, 2, 1, limit).await.unwrap(), 500);
        assert!(wait_caught_up(&pattern, 3, 1, limit).await.is_err());
        assert!(wait_caught_up(&pattern, 4, 1, limit).await.is_err());
        let ids: BTreeMap<NodeId, String> = (1..=3).map(|i| (i, String::new())).collect();
        assert!(wait_all_caught_up(&pattern, &ids, 1, limit).await.is_err());
        let two: BTreeMap<NodeId, String> = (1..=2).map(|i| (i, String::new())).collect();
        assert_eq!(
            wait_all_caught_up(&pattern, &two, 1, limit).await.unwrap(),
            500
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn restart_substitutes_the_id_and_reports_failure() {
        restart("test {id} = 7", 7, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            restart("test {id} = 8", 7, Duration::from_secs(10))
                .await
                .is_err()
        );
    }
}
