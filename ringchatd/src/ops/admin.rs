//! The local admin socket: one JSON request per line, one JSON answer per line.
//!
//! The socket is created with mode 0600 inside the process umask window, so no other user
//! can connect to it even for an instant. Operators and the cluster tests speak to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Group, chown};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::node::{AdminRequest, Event};

/// Bytes one admin connection may send in all: bounds a peer that never sends a newline.
const MAX_CONNECTION_BYTES: u64 = 1 << 20;

/// Binds the socket, replacing a stale one left by a crashed process.
pub fn bind(path: &Path, mode: u32, group: Option<&str>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("admin-socket: cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "admin-socket: {} is in use by a running server",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("admin-socket: cannot remove stale {}", path.display()))?;
    }
    // Restrict the creation mask around bind: the socket is never reachable by others,
    // not even between bind and chmod.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener =
        bound.with_context(|| format!("admin-socket: cannot bind {}", path.display()))?;
    if let Some(name) = group {
        let gid = Group::from_name(name)
            .ok()
            .flatten()
            .with_context(|| format!("admin.group: no group named {name:?}"))?
            .gid;
        chown(path, None, Some(gid)).with_context(|| {
            format!(
                "admin-socket: cannot give {} to group {name}",
                path.display()
            )
        })?;
    }
    // Widened (to the group at most) only now that the owner and group are right.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("admin-socket: cannot chmod {}", path.display()))?;
    Ok(listener)
}

/// Serves admin requests until `shutdown`, then removes the socket file.
pub async fn run(
    listener: UnixListener,
    path: PathBuf,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let events = events.clone();
                tokio::spawn(serve(stream, events));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Admin accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn serve(stream: UnixStream, events: mpsc::Sender<Event>) {
    // Who is asking, from the kernel (SO_PEERCRED): every command that changes something
    // is logged with it.
    let caller = stream.peer_cred().ok();
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd.take(MAX_CONNECTION_BYTES));
    let mut line = String::new();
    loop {
        line.clear();
        let n = match timeout(Duration::from_secs(30), lines.read_line(&mut line)).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 0 {
            return;
        }
        let answer = match serde_json::from_str::<AdminRequest>(line.trim()) {
            Ok(req) => {
                if req.mutates() {
                    tracing::info!(
                        command = ?req,
                        uid = caller.map(|c| c.uid()),
                        gid = caller.map(|c| c.gid()),
                        pid = caller.and_then(|c| c.pid()),
                        "Admin command."
                    );
                }
                let (reply, rx) = oneshot::channel();
                if events.send(Event::Admin { req, reply }).await.is_err() {
                    return;
                }
                match timeout(Duration::from_secs(5), rx).await {
                    Ok(Ok(v)) => v,
                    _ => serde_json::json!({"ok": false, "error": "the server did not answer"}),
                }
            }
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let mut out = answer.to_string();
        out.push('\n');
        if wr.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
