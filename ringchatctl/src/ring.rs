//! `ringchatctl ring`: the ring as one node sees it, in ring order (ascending id), as a
//! table or as JSON rows.

use serde_json::{Value, json};

use crate::status::Status;

/// A member not heard from for longer than this is shown as silent: three heartbeat
/// intervals at the daemon's default (100 ms), well below its failure timeout (500 ms).
const SILENT_AFTER_MS: u64 = 300;

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    position: usize,
    id: String,
    address: String,
    port: u16,
    client_port: u16,
    role: String,
    state: String,
    silence_ms: Option<u64>,
    lag_entries: Option<u64>,
    replication: Option<String>,
}

fn rows(s: &Status) -> Vec<Row> {
    s.members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = &m.node.id;
            let me = *id == s.id;
            let role = if me {
                s.role.clone()
            } else if s.leader_id() == Some(id) {
                "leader".to_owned()
            } else {
                "follower".to_owned()
            };
            let state = match m.silence_ms {
                Some(ms) if !me && ms > SILENT_AFTER_MS => format!("silent {ms}ms"),
                None if !me => "unknown".to_owned(),
                _ => "alive".to_owned(),
            };
            let follower = s.follower(id);
            Row {
                position: i + 1,
                id: id.clone(),
                address: m.node.address.clone(),
                port: m.node.port,
                client_port: m.node.client_port,
                role,
                state,
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
                "state": r.state,
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
            r.state,
            r.silence_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms ago")),
            lag,
        ]);
    }
    out.push_str(&layout(&table));
    out.push_str(
        "(* this node; HEARD: last heartbeat or message from it; LAG: entries behind the leader)\n",
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
        assert_eq!(m[1]["state"], "silent 2500ms");
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
