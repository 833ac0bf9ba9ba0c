//! `ringchatctl drain` and `leave`.
//!
//! Drain: the node stops taking clients; a leader hands leadership to the highest other id
//! and tells its clients where to go. The wait ends when the node no longer serves, knows
//! another leader (if it led) and holds no clients. Leave drains first, then asks the node
//! to leave the ring and waits until its socket refuses: the process has exited.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{AdminClient, is_listening};
use crate::commands::Report;
use crate::error::CtlError;
use crate::status::{NodeRef, Status};
use crate::wait::{Waiter, millis_since};

/// The outcome of a drain.
#[derive(Debug)]
struct Drained {
    node: String,
    was_leader: bool,
    leader: Option<NodeRef>,
    epoch: u64,
    round: u64,
    clients_moved: u64,
    elapsed_ms: u64,
}

impl Drained {
    fn to_json(&self) -> Value {
        json!({
            "ok": true,
            "id": self.node,
            "was_leader": self.was_leader,
            "leader": self.leader,
            "epoch": self.epoch,
            "round": self.round,
            "clients_moved": self.clients_moved,
            "elapsed_ms": self.elapsed_ms,
        })
    }

    fn text(&self) -> String {
        let leader = self
            .leader
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |l| l.id.clone());
        let moved = match self.clients_moved {
            1 => "1 client moved".to_owned(),
            n => format!("{n} clients moved"),
        };
        if self.was_leader {
            format!(
                "drained: leader is now {leader} (epoch {}, round {}); {moved}\n",
                self.epoch, self.round
            )
        } else {
            format!(
                "drained: node {} was not leading (leader {leader}, epoch {}); {moved}\n",
                self.node, self.epoch
            )
        }
    }
}

/// Sends `drain` and waits for the outcome.
pub fn drain(client: &mut AdminClient, mut waiter: Waiter) -> Result<Report, CtlError> {
    let (before, _) = Status::fetch(client)?;
    let drained = run_drain(client, before, &mut waiter)?;
    Ok(Report {
        json: drained.to_json(),
        text: drained.text(),
    })
}

/// Drains (unless the node is alone in the ring), sends `leave`, and waits for the daemon
/// to exit. Each of the two waits may take up to `timeout`.
pub fn leave(
    client: &mut AdminClient,
    socket: &Path,
    timeout: Duration,
    json: bool,
) -> Result<Report, CtlError> {
    let started = Instant::now();
    let (before, _) = Status::fetch(client)?;
    let node = before.id.clone();
    let drained = if before.is_alone() {
        None
    } else {
        let mut waiter = Waiter::new(timeout, json);
        let drained = run_drain(client, before, &mut waiter).map_err(|e| match e {
            CtlError::Failed(why) => CtlError::Failed(format!(
                "{why}; not leaving (the node stays drained: `ringchatctl undrain` takes it back)"
            )),
            other => other,
        })?;
        Some(drained)
    };
    client.request(&json!({"cmd": "leave"}))?;
    let mut waiter = Waiter::new(timeout, json);
    while is_listening(socket) {
        if !waiter.next() {
            return Err(CtlError::Failed(format!(
                "node {node} agreed to leave but still answers on {} after {}",
                socket.display(),
                waiter.timeout_text()
            )));
        }
        waiter.progress(&format!("waiting for node {node} to exit"));
    }
    let mut text = match &drained {
        Some(d) => d.text(),
        None => format!("node {node} is the only ring member: nothing to hand over\n"),
    };
    text.push_str("left the ring\n");
    Ok(Report {
        json: json!({
            "ok": true,
            "id": node,
            "left": true,
            "drain": drained.as_ref().map(Drained::to_json),
            "elapsed_ms": millis_since(started),
        }),
        text,
    })
}

fn run_drain(
    client: &mut AdminClient,
    before: Status,
    waiter: &mut Waiter,
) -> Result<Drained, CtlError> {
    let was_leader = before.is_leader();
    if was_leader && before.is_alone() {
        return Err(CtlError::Failed(format!(
            "node {} is the only ring member: nobody could take over its clients \
             (`ringchatctl leave` stops it anyway)",
            before.id
        )));
    }
    client.request(&json!({"cmd": "drain"}))?;
    let mut clients_moved = before.clients;
    loop {
        let (s, _) = Status::fetch(client)?;
        clients_moved = clients_moved.max(s.clients);
        let missing = missing(&s, was_leader);
        if missing.is_empty() {
            return Ok(Drained {
                node: s.id,
                was_leader,
                leader: s.leader,
                epoch: s.epoch,
                round: s.round,
                clients_moved,
                elapsed_ms: waiter.elapsed_ms(),
            });
        }
        if !waiter.next() {
            return Err(CtlError::Failed(format!(
                "drain of node {} not finished after {}: {}",
                s.id,
                waiter.timeout_text(),
                missing.join("; ")
            )));
        }
        waiter.progress(&missing.join("; "));
    }
}

/// What the drain still waits for; empty when it is done.
fn missing(s: &Status, was_leader: bool) -> Vec<String> {
    let mut missing = Vec::new();
    if s.serving {
        missing.push(format!("node {} still serves as leader", s.id));
    }
    if was_leader && s.leader.as_ref().is_none_or(|l| l.id == s.id) {
        missing.push(format!(
            "no other leader known yet (node {} is {} in epoch {})",
            s.id, s.role, s.epoch
        ));
    }
    if s.clients > 0 {
        missing.push(format!("clients remaining: {}", s.clients));
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::leader_status;

    fn status(edit: impl FnOnce(&mut Value)) -> Status {
        let mut v = leader_status();
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_leader_is_drained_when_another_leads_and_no_client_is_left() {
        let serving = status(|_| {});
        assert_eq!(missing(&serving, true).len(), 3);
        let handed = status(|v| {
            v["serving"] = false.into();
            v["role"] = "follower".into();
            v["leader"]["id"] = "2".into();
            v["clients"] = 1.into();
        });
        assert_eq!(missing(&handed, true), ["clients remaining: 1"]);
        let leaderless = status(|v| {
            v["serving"] = false.into();
            v["role"] = "candidate".into();
            v["leader"] = Value::Null;
            v["clients"] = 0.into();
        });
        assert_eq!(missing(&leaderless, true).len(), 1);
        assert!(missing(&leaderless, false).is_empty());
    }

    #[test]
    fn outcome_text() {
        let d = Drained {
            node: "3".into(),
            was_leader: true,
            leader: Some(NodeRef {
                id: "2".into(),
                address: "127.0.0.1".into(),
                port: 5002,
                client_port: 5102,
            }),
            epoch: 12_884_901_890,
            round: 3,
            clients_moved: 4,
            elapsed_ms: 180,
        };
        assert_eq!(
            d.text(),
            "drained: leader is now 2 (epoch 12884901890, round 3); 4 clients moved\n"
        );
        assert_eq!(d.to_json()["leader"]["id"], "2");
        assert_eq!(d.to_json()["clients_moved"], 4);
    }
}
