//! `ringchatctl ring`: the ring as one node sees it, in ring order (ascending id), as a
//! table or as JSON rows.
//!
//! Liveness is shown only where this node watches: a leader hears from every member, a
//! follower only from its neighbours and the leader, so any other member's silence says
//! nothing about it ("unwatched").

use serde_json::{Value, json};

use crate::status::Status;

/// A watched member not heard from for longer than this is shown as silent: three
/// heartbeat intervals at the daemon's default (100 ms), below its failure timeout (500 ms).
const SILENT_AFTER_MS: u64 = 300;

/// What this node knows of a member's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// This node itself (it answered).
    Itself,
    /// Heard from recently.
    Alive,
    /// Watched, but not heard from for a while.
    Silent(u64),
    /// Watched, never heard from.
    Unknown,
    /// Not watched by this node.
    Unwatched,
}

impl Liveness {
    /// The stable `--json` word.
    fn word(self) -> &'static str {
        match self {
            Liveness::Itself | Liveness::Alive => "alive",
            Liveness::Silent(_) => "silent",
            Liveness::Unknown => "unknown",
            Liveness::Unwatched => "unwatched",
        }
    }

    /// The table cell.
    fn cell(self) -> String {
        match self {
            Liveness::Silent(ms) => format!("silent {ms}ms"),
            other => other.word().to_owned(),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    position: usize,
    id: String,
    address: String,
    port: u16,
    client_port: u16,
    role: String,
    liveness: Liveness,
    silence_ms: Option<u64>,
    lag_entries: Option<u64>,
    replication: Option<String>,
}

fn rows(s: &Status) -> Vec<Row> {
    let leader = s.leader_id();
    s.members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = m.node.id.as_str();
            let me = id == s.id;
            let role = if me {
                s.role.clone()
            } else if leader == Some(id) {
                "leader".to_owned()
            } else if leader.is_some() {
                "follower".to_owned()
            } else {
                "unknown".to_owned()
            };
            let watched = s.is_leader()
                || leader == Some(id)
                || s.predecessor.as_deref() == Some(id)
                || s.successor.as_deref() == Some(id);
            let liveness = match m.silence_ms {
                _ if me => Liveness::Itself,
                _ if !watched => Liveness::Unwatched,
                Some(ms) if ms > SILENT_AFTER_MS => Liveness::Silent(ms),
                Some(_) => Liveness::Alive,
                None => Liveness::Unknown,
            };
            let follower = s.follower(id);
            Row {
                position: i + 1,
                id: id.to_owned(),
                address: m.node.address.clone(),
                port: m.node.port,
                client_port: m.node.client_port,
                role,
                liveness,
                silence_ms: if me { None } else { m.silence_ms },
                lag_entries: follower.map(|f| f.lag_entries),
                replication: follower.map(|f| f.state.clone()),
            }
        })
        .collect()
}

/// The `--json` form: the viewpoint (node, epoch, leader) and one object per member.
pub fn to_json(s: &Status) -> Value {
    let members: Vec<Value> = rows(s)
        .into_iter()
        .map(|r| {
            json!({
                "position": r.position,
                "id": r.id,
                "address": r.address,
                "port": r.port,
                "client_port": r.client_port,
                "role": r.role,
                "state": r.liveness.word(),
                "silence_ms": r.silence_ms,
                "lag_entries": r.lag_entries,
                "replication": r.replication,
            })
        })
        .collect();
    json!({
        "ok": true,
        "id": s.id,
        "epoch": s.epoch,
        "round": s.round,
        "leader": s.leader,
        "members": members,
    })
}

/// The table, with a line naming the viewpoint above it.
pub fn to_text(s: &Status) -> String {
    let leader = s.leader_id().unwrap_or("unknown");
    let mut out = format!(
        "ring of {} as node {} sees it (epoch {}, round {}, leader {leader})\n",
        s.members.len(),
        s.id,
        s.epoch,
        s.round
    );
    let mut table = vec![
        [
            "POS", "ID", "ADDRESS", "CLIENT", "ROLE", "STATE", "HEARD", "LAG",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows(s) {
        let me = r.id == s.id;
        let lag = match (r.lag_entries, &r.replication) {
            (Some(n), Some(state)) if state != "replicating" => format!("{n} ({state})"),
            (Some(n), _) => n.to_string(),
            (None, _) => "-".to_owned(),
        };
        table.push(vec![
            r.position.to_string(),
            if me { format!("{}*", r.id) } else { r.id },
            format!("{}:{}", r.address, r.port),
            r.client_port.to_string(),
            r.role,
            r.liveness.cell(),
            r.silence_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms ago")),
            lag,
        ]);
    }
    out.push_str(&layout(&table));
    out.push_str(
        "(* this node. HEARD: last heartbeat or message from it; a follower watches only its\n \
         neighbours and the leader. LAG: entries behind the leader, as the leader sees it.)\n",
    );
    out
}

/// Left-aligned columns two spaces apart.
fn layout(table: &[Vec<String>]) -> String {
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::leader_status;

    fn status() -> Status {
        serde_json::from_value(leader_status()).unwrap()
    }

    #[test]
    fn json_rows_in_ring_order_with_role_state_and_lag() {
        let v = to_json(&status());
        assert_eq!(v["leader"]["id"], "3");
        let m = v["members"].as_array().unwrap();
        let ids: Vec<&str> = m.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(m[0]["position"], 1);
        assert_eq!(m[0]["role"], "follower");
        assert_eq!(m[0]["state"], "alive");
        assert_eq!(m[0]["lag_entries"], 0);
        assert_eq!(m[1]["state"], "silent");
        assert_eq!(m[1]["silence_ms"], 2500);
        assert_eq!(m[1]["lag_entries"], 12);
        assert_eq!(m[1]["replication"], "syncing");
        assert_eq!(m[2]["role"], "leader");
        assert_eq!(m[2]["silence_ms"], Value::Null);
        assert_eq!(m[2]["lag_entries"], Value::Null);
    }

    #[test]
    fn table_lists_every_member_in_order() {
        let text = to_text(&status());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("leader 3"), "{text}");
        assert!(lines[1].starts_with("POS  ID"), "{text}");
        assert!(lines[2].starts_with("1    1 "), "{text}");
        assert!(lines[2].contains("127.0.0.1:5001"), "{text}");
        assert!(lines[2].ends_with(" 0"), "{text}");
        assert!(lines[3].contains("silent 2500ms") && lines[3].contains("12 (syncing)"));
        assert!(lines[4].starts_with("3    3* ") && lines[4].contains("leader"));
    }

    #[test]
    fn a_follower_watches_only_its_neighbours_and_the_leader() {
        let mut v = leader_status();
        v["members"] = json!([
            {"id": "1", "address": "h", "port": 1, "client_port": 2, "silence_ms": null},
            {"id": "2", "address": "h", "port": 1, "client_port": 2, "silence_ms": 4000},
            {"id": "3", "address": "h", "port": 1, "client_port": 2, "silence_ms": 9000},
            {"id": "4", "address": "h", "port": 1, "client_port": 2, "silence_ms": 5},
            {"id": "5", "address": "h", "port": 1, "client_port": 2, "silence_ms": 50}
        ]);
        v["id"] = "1".into();
        v["role"] = "follower".into();
        v["leader"]["id"] = "5".into();
        v["predecessor"] = "5".into();
        v["successor"] = "2".into();
        v["followers"] = json!([]);
        let r = to_json(&serde_json::from_value(v.clone()).unwrap());
        let states: Vec<&str> = r["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["state"].as_str().unwrap())
            .collect();
        assert_eq!(
            states,
            ["alive", "silent", "unwatched", "unwatched", "alive"]
        );
        v["leader"] = Value::Null;
        let r = to_json(&serde_json::from_value(v).unwrap());
        assert_eq!(r["members"][2]["role"], "unknown");
    }

    #[test]
    fn a_follower_has_no_lag_column() {
        let mut v = leader_status();
        v["id"] = "1".into();
        v["role"] = "follower".into();
        v["followers"] = json!([]);
        let text = to_text(&serde_json::from_value(v).unwrap());
        for line in text.lines().skip(2).take(3) {
            assert!(line.ends_with(" -"), "{line}");
        }
    }
}
