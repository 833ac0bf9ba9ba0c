//! Answers to admin socket requests, as JSON (ids as strings, so `jq` never rounds them).

use ringchat_core::epoch_round;
use serde_json::{Value, json};

use super::task::NodeTask;

/// Entries of the history after `from`, at most `limit` (capped at 10,000 per request).
pub fn history(task: &NodeTask, from: u64, limit: usize) -> Value {
    let log = task.node.log();
    json!({
        "ok": true,
        "last_seq": log.last_seq(),
        "entries": log.range(from, limit.min(10_000)),
    })
}

/// Everything an operator asks about first.
pub fn status(task: &NodeTask) -> Value {
    let node = &task.node;
    let me = node.me().id;
    let ring = node.ring();
    let leader_last = node.log().last_seq();
    let followers: Vec<Value> = node
        .followers()
        .iter()
        .map(|(id, p)| {
            json!({
                "id": id.to_string(),
                "state": format!("{:?}", p.state).to_lowercase(),
                "match_seq": p.match_seq,
                "lag_entries": p.lag(leader_last),
            })
        })
        .collect();
    let members: Vec<Value> = ring
        .members()
        .map(|m| {
            json!({
                "id": m.id.to_string(),
                "address": m.address,
                "port": m.port,
                "client_port": m.client_port,
                "silence_ms": node.silence(m.id),
            })
        })
        .collect();
    json!({
        "ok": true,
        "id": me.to_string(),
        "role": node.role().as_str(),
        "serving": node.is_serving_leader(),
        "draining": node.is_draining(),
        "epoch": node.epoch(),
        "round": epoch_round(node.epoch()),
        "leader": node.leader().map(|l| json!({
            "id": l.id.to_string(), "address": l.address, "port": l.port, "client_port": l.client_port,
        })),
        "successor": ring.successor(me).map(|n| n.id.to_string()),
        "predecessor": ring.predecessor(me).map(|n| n.id.to_string()),
        "members": members,
        "last_seq": leader_last,
        "commit_seq": node.commit_seq(),
        "history_bytes": node.log().text_bytes(),
        "clients": task.clients.sessions(),
        "slow_client_disconnects": task.clients.slow_disconnects(),
        "followers": followers,
        "uptime_seconds": task.started.elapsed().as_secs_f64(),
    })
}
