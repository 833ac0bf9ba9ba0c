//! The operations files in `deploy/` and the runbook `docs/OPERATIONS.md`:
//!
//! - every `ringchat_*` metric the alert rules, the Grafana dashboard and the runbook name is
//!   one `ringchatd` exports (read from the `counter!`/`gauge!`/`histogram!` calls in
//!   `ringchatd/src`), and the runbook lists every exported metric;
//! - the dashboard is a well-formed Grafana dashboard, the Prometheus files are valid YAML
//!   of the right shape, every alert links to a heading of the runbook, latency thresholds
//!   sit on histogram bucket boundaries and counters are compared with `increase()`;
//! - with `promtool` installed: the configuration and rules pass `promtool check`, every
//!   dashboard query parses, and the alert rules fire exactly on the cases in
//!   [`ALERT_CASES`];
//! - the systemd unit passes `systemd-analyze verify` with no warning, the sysusers entry
//!   creates the `ringchat` user, and the example node file starts a server.
//!
//! Tools that are missing make their test print `SKIP: ...` and pass.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use ringchat_cluster_tests::bins::binaries;
use ringchat_cluster_tests::ports::node_ports;
use ringchat_cluster_tests::process;
use ringchat_cluster_tests::report;
use ringchat_cluster_tests::wait::{SHORT, wait_for};
use serde::Deserialize;
use serde_json::Value;

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/ringchat-dashboard.json";
const UNIT: &str = "deploy/systemd/ringchatd@.service";
const SYSUSERS: &str = "deploy/systemd/sysusers.d-ringchat.conf";
const NODE_EXAMPLE: &str = "deploy/etc/ringchat/node1.toml";
const RUNBOOK: &str = "docs/OPERATIONS.md";
const METRICS_RS: &str = "ringchatd/src/ops/metrics.rs";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root above tests/")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = workspace().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ------------------------------------------------------------------------------------------
// Metric names

/// The metric names `ringchatd` exports, from its source.
struct Exported {
    /// Every name given as a string literal to `counter!`, `gauge!` or `histogram!`.
    names: BTreeSet<String>,
    /// The `histogram!` ones (exported as `_bucket`, `_sum` and `_count` series).
    histograms: BTreeSet<String>,
}

impl Exported {
    fn read() -> Exported {
        let mut files = Vec::new();
        rust_files(&workspace().join("ringchatd/src"), &mut files);
        let mut exported = Exported {
            names: BTreeSet::new(),
            histograms: BTreeSet::new(),
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read source");
            for kind in ["counter", "gauge", "histogram"] {
                for name in macro_literals(&text, kind) {
                    if kind == "histogram" {
                        exported.histograms.insert(name.clone());
                    }
                    exported.names.insert(name);
                }
            }
        }
        assert!(
            exported.names.len() >= 10 && !exported.histograms.is_empty(),
            "found too few metric names in ringchatd/src ({:?}): has the way metrics are \
             declared changed? Then teach this test (Exported::read) the new way.",
            exported.names
        );
        exported
    }

    /// A name as a series in Prometheus: exported as is, or a histogram's sub-series.
    fn has(&self, series: &str) -> bool {
        self.names.contains(series)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                series
                    .strip_suffix(suffix)
                    .is_some_and(|base| self.histograms.contains(base))
            })
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read ringchatd/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals that open `kind!(` macro calls in `text` (`counter!("name", ...)`);
/// calls whose first argument is not a literal are skipped.
fn macro_literals(text: &str, kind: &str) -> Vec<String> {
    let needle = format!("{kind}!(");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(&needle) {
        let start = from + at;
        from = start + needle.len();
        // `describe_counter!(` and the like are not export sites.
        if text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = text[from..].trim_start();
        if let Some(lit) = rest.strip_prefix('"')
            && let Some(end) = lit.find('"')
        {
            found.push(lit[..end].to_string());
        }
    }
    found
}

/// Every `ringchat_*` token in `text`.
fn names_used(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut used = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("ringchat_") {
        let start = from + at;
        let end = text[start..]
            .find(|c: char| !is_name(c))
            .map_or(text.len(), |n| start + n);
        from = end;
        if text[..start].chars().next_back().is_some_and(is_name) {
            continue;
        }
        used.insert(text[start..end].to_string());
    }
    used
}

#[test]
fn every_metric_in_alerts_dashboard_and_runbook_is_exported() {
    let exported = Exported::read();
    let mut missing = Vec::new();
    for file in [ALERTS, DASHBOARD, RUNBOOK] {
        let used = names_used(&read(file));
        assert!(!used.is_empty(), "{file} names no ringchat_* metric at all");
        for name in used {
            if !exported.has(&name) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metric names that ringchatd does not export (its counter!/gauge!/histogram! calls \
         in ringchatd/src):\n  {}\nexported: {:?}",
        missing.join("\n  "),
        exported.names
    );
}

#[test]
fn the_runbook_lists_every_exported_metric() {
    let exported = Exported::read();
    let runbook = read(RUNBOOK);
    let listed: Vec<&String> = exported
        .names
        .iter()
        .filter(|n| !runbook.contains(&format!("`{n}`")))
        .collect();
    assert!(
        listed.is_empty(),
        "exported metrics missing from the metric table in {RUNBOOK} (section Monitoring, \
         Metrics): {listed:?}"
    );
}

#[test]
fn the_dashboard_charts_the_core_metrics() {
    let used = names_used(&read(DASHBOARD));
    let wanted = [
        "ringchat_is_leader",
        "ringchat_election_epoch",
        "ringchat_election_rounds_total",
        "ringchat_election_duration_seconds_bucket",
        "ringchat_heartbeat_misses_total",
        "ringchat_heartbeat_rtt_seconds_bucket",
        "ringchat_replication_lag_entries",
        "ringchat_message_commit_duration_seconds_bucket",
        "ringchat_messages_received_total",
        "ringchat_clients_connected",
        "ringchat_protocol_errors_total",
        "ringchat_slow_client_disconnects_total",
        "ringchat_ring_members",
        "ringchat_history_entries",
        "ringchat_history_bytes",
    ];
    let absent: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !used.contains(*w))
        .collect();
    assert!(
        absent.is_empty(),
        "the dashboard has no panel for {absent:?}"
    );
}

// ------------------------------------------------------------------------------------------
// The dashboard

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every query of the dashboard (panel title, expression).
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in d["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or("?").to_string(),
                t["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[test]
fn the_dashboard_is_a_well_formed_grafana_dashboard() {
    let d = dashboard();
    let version = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        (36..=41).contains(&version),
        "schemaVersion {version}: expected a current Grafana schema"
    );
    for key in ["title", "uid"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().expect("variable name"));
    let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    let mut charts = 0;
    for p in panels {
        let title = p["title"]
            .as_str()
            .expect("every panel has a title")
            .to_string();
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "panel id {id} used twice");
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(
            w >= 1 && h >= 1 && x + w <= 24,
            "{title}: gridPos {g} leaves the 24 columns"
        );
        for (other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "panels {other:?} and {title:?} overlap");
        }
        boxes.push((title.clone(), x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        charts += 1;
        assert_eq!(
            p["datasource"]["uid"],
            ds_ref.as_str(),
            "{title}: data source"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no queries");
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: refId"));
            assert!(refs.insert(r), "{title}: refId {r} twice");
            assert_eq!(
                t["datasource"]["uid"],
                ds_ref.as_str(),
                "{title}/{r}: data source"
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("ringchat_"),
                "{title}/{r}: no ringchat metric in {expr:?}"
            );
            // Every $variable a query uses is defined (or one of Grafana's own).
            for var in expr.split('$').skip(1) {
                let name: String = var
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || var_names.contains(name.as_str()),
                    "{title}/{r}: ${name} is not a dashboard variable"
                );
            }
            if expr.contains("histogram_quantile") {
                assert!(
                    expr.contains("by (le"),
                    "{title}/{r}: sum histogram buckets by (le, ...) before histogram_quantile"
                );
            }
        }
    }
    assert!(charts >= 12, "only {charts} panels with queries");
}

// ------------------------------------------------------------------------------------------
// Prometheus files

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<AlertRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertRule {
    alert: String,
    expr: String,
    #[serde(rename = "for", default)]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn alert_rules() -> RuleFile {
    serde_norway::from_str(&read(ALERTS))
        .unwrap_or_else(|e| panic!("{ALERTS} is not a valid Prometheus rule file: {e}"))
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn runbook_anchors() -> BTreeSet<String> {
    read(RUNBOOK)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The bucket boundaries of the latency histograms, from the daemon's source.
fn latency_buckets() -> Vec<f64> {
    let src = read(METRICS_RS);
    let decl = "LATENCY_BUCKETS: &[f64] = &[";
    let open = src.find(decl).expect("LATENCY_BUCKETS in metrics.rs") + decl.len();
    let close = src[open..].find(']').expect("]") + open;
    src[open..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or_else(|_| panic!("bucket {s:?}")))
        .collect()
}

fn is_duration(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["ms", "s", "m", "h", "d", "w", "y"].contains(&unit)
}

#[test]
fn alert_rules_are_well_formed_and_link_to_the_runbook() {
    let rules = alert_rules();
    let anchors = runbook_anchors();
    let buckets = latency_buckets();
    let mut names = BTreeSet::new();
    let mut count = 0;
    for group in &rules.groups {
        assert!(!group.name.is_empty());
        if let Some(i) = &group.interval {
            assert!(is_duration(i), "group {}: interval {i:?}", group.name);
        }
        for r in &group.rules {
            count += 1;
            let a = &r.alert;
            assert!(names.insert(a.clone()), "alert {a} defined twice");
            assert!(!r.expr.trim().is_empty(), "{a}: empty expr");
            if let Some(f) = &r.for_ {
                assert!(is_duration(f), "{a}: for {f:?}");
            }
            let severity = r.labels.get("severity").map(String::as_str);
            assert!(
                matches!(severity, Some("critical" | "warning" | "info")),
                "{a}: severity {severity:?}"
            );
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    r.annotations.get(key).is_some_and(|v| !v.trim().is_empty()),
                    "{a}: annotation {key}"
                );
            }
            let url = &r.annotations["runbook_url"];
            let anchor = url
                .split_once("docs/OPERATIONS.md#")
                .map(|(_, anchor)| anchor)
                .unwrap_or_else(|| panic!("{a}: runbook_url {url} is not docs/OPERATIONS.md#..."));
            assert!(
                anchors.contains(anchor),
                "{a}: {RUNBOOK} has no heading for #{anchor}"
            );
            // Counters against a threshold: increase() over a window, not rate().
            let expr = r.expr.replace(char::is_whitespace, "");
            for (at, _) in expr.match_indices("rate(") {
                let arg = &expr[at + "rate(".len()..];
                let name: String = arg
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    !name.ends_with("_total"),
                    "{a}: use increase({name}[...]), not rate(), in an alert"
                );
            }
            // Quantile thresholds sit on bucket boundaries.
            if expr.contains("histogram_quantile") {
                let threshold = expr
                    .rsplit(['>', '<'])
                    .next()
                    .and_then(|t| t.trim_start_matches('=').parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{a}: no numeric threshold at the end of {expr}"));
                assert!(
                    buckets.iter().any(|b| (b - threshold).abs() < 1e-12),
                    "{a}: threshold {threshold} is not a bucket boundary of {buckets:?}"
                );
                assert!(expr.contains("by(le"), "{a}: sum buckets by (le, ...)");
            }
        }
    }
    for required in [
        "RingChatNoLeader",
        "RingChatLeaderChangesTooOften",
        "RingChatHeartbeatMisses",
        "RingChatReplicationLag",
        "RingChatSlowClientDisconnects",
        "RingChatSlowCommits",
        "RingChatRingSmallerThanExpected",
    ] {
        assert!(names.contains(required), "alert {required} is missing");
    }
    assert!(count >= 7);
}

#[derive(Debug, Deserialize)]
struct PromConfig {
    global: BTreeMap<String, serde_norway::Value>,
    rule_files: Vec<String>,
    scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Deserialize)]
struct ScrapeConfig {
    job_name: String,
    static_configs: Vec<StaticConfig>,
}

#[derive(Debug, Deserialize)]
struct StaticConfig {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// `addr = "..."` under `[metrics]` in a node file.
fn metrics_addr(toml: &str) -> Option<String> {
    let mut in_metrics = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_metrics = line == "[metrics]";
        } else if in_metrics && let Some(v) = line.strip_prefix("addr") {
            return Some(
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_string(),
            );
        }
    }
    None
}

#[test]
fn the_scrape_configuration_covers_the_example_servers() {
    let cfg: PromConfig = serde_norway::from_str(&read(PROMETHEUS))
        .unwrap_or_else(|e| panic!("{PROMETHEUS} is not valid: {e}"));
    assert!(cfg.global.contains_key("scrape_interval"));
    assert_eq!(cfg.rule_files, ["alerts.yml"]);
    let job = cfg
        .scrape_configs
        .iter()
        .find(|j| j.job_name == "ringchat")
        .expect("a scrape job named ringchat (the alerts use job=\"ringchat\")");
    let targets: BTreeSet<&str> = job
        .static_configs
        .iter()
        .flat_map(|s| s.targets.iter().map(String::as_str))
        .collect();
    let expected: Vec<String> = (1..=3)
        .map(|n| metrics_addr(&read(&format!("config/cluster/node{n}.toml"))).expect("addr"))
        .chain(metrics_addr(&read(NODE_EXAMPLE)))
        .collect();
    for addr in &expected {
        assert!(targets.contains(addr.as_str()), "{addr} is not scraped");
    }
    for s in &job.static_configs {
        assert!(
            s.labels.contains_key("node"),
            "every target has a node label"
        );
    }
}

// ------------------------------------------------------------------------------------------
// promtool (Prometheus' own checker), when installed

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_the_configuration_rules_and_dashboard_queries() {
    let Some(promtool) = tool("promtool") else {
        report(
            "SKIP: promtool not installed (apt-get install prometheus); rules not checked by it",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for f in [PROMETHEUS, ALERTS] {
        let name = Path::new(f).file_name().expect("name");
        std::fs::copy(workspace().join(f), dir.path().join(name)).expect("copy");
    }
    let (ok, out) = run(Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg(dir.path().join("prometheus.yml")));
    assert!(ok, "promtool check config failed:\n{out}");

    // The dashboard's queries, with Grafana's variables filled in, as recording rules.
    let rules: Vec<Value> = dashboard_queries(&dashboard())
        .into_iter()
        .enumerate()
        .map(|(i, (title, expr))| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$job", "ringchat")
                .replace("$instance", ".*");
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr, "labels": {"panel": title}})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let path = dir.path().join("dashboard_rules.yml");
    std::fs::write(&path, serde_norway::to_string(&file).expect("yaml")).expect("write");
    let (ok, out) = run(Command::new(&promtool).arg("check").arg("rules").arg(&path));
    assert!(ok, "a dashboard query does not parse:\n{out}");
}

/// `promtool test rules` cases: each alert fires on what it is meant for and not on the
/// near misses. Annotations are left out of the comparison (the rules are tested on a copy
/// without them), so rewording a description needs no change here.
const ALERT_CASES: &str = r#"
rule_files: [alerts.yml]
evaluation_interval: 5s
tests:
  # No leader for more than 10 s.
  - interval: 5s
    input_series:
      - series: 'ringchat_has_leader{instance="a:9461",job="ringchat",node="1"}'
        values: '1 1 0x10'
      - series: 'ringchat_has_leader{instance="a:9462",job="ringchat",node="2"}'
        values: '1x12'
    alert_rule_test:
      - {eval_time: 15s, alertname: RingChatNoLeader, exp_alerts: []}
      - eval_time: 25s
        alertname: RingChatNoLeader
        exp_alerts:
          - exp_labels: {severity: critical, instance: "a:9461", job: ringchat, node: "1"}

  # Two leaders for 30 s is a split ring; the short overlap of a hand-over is not.
  - interval: 5s
    input_series:
      - series: 'ringchat_is_leader{instance="a:9461",job="ringchat"}'
        values: '0x20'
      - series: 'ringchat_is_leader{instance="a:9462",job="ringchat"}'
        values: '1 1 1 0x17'
      - series: 'ringchat_is_leader{instance="a:9463",job="ringchat"}'
        values: '0 1 1x18'
    alert_rule_test:
      - {eval_time: 30s, alertname: RingChatSplitBrain, exp_alerts: []}
  - interval: 5s
    input_series:
      - series: 'ringchat_is_leader{instance="a:9461",job="ringchat"}'
        values: '0x20'
      - series: 'ringchat_is_leader{instance="a:9462",job="ringchat"}'
        values: '1x20'
      - series: 'ringchat_is_leader{instance="a:9463",job="ringchat"}'
        values: '0 0 1x18'
    alert_rule_test:
      - {eval_time: 35s, alertname: RingChatSplitBrain, exp_alerts: []}
      - eval_time: 45s
        alertname: RingChatSplitBrain
        exp_alerts:
          - exp_labels: {severity: critical, job: ringchat}

  # Leader changes: 2 in 15 minutes are fine, 5 in 5 minutes are not, and a counter reset
  # by a restart does not count as changes.
  - interval: 1m
    input_series:
      - series: 'ringchat_leader_changes_seen_total{instance="a:9461",job="ringchat"}'
        values: '1 1 1 1 2 2 2 2 2 2 2 2 3x20'
      - series: 'ringchat_leader_changes_seen_total{instance="a:9462",job="ringchat"}'
        values: '1x10 2 3 0 1 2 3 3x20'
    alert_rule_test:
      - {eval_time: 9m, alertname: RingChatLeaderChangesTooOften, exp_alerts: []}
      - eval_time: 16m
        alertname: RingChatLeaderChangesTooOften
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9462", job: ringchat}
      - {eval_time: 35m, alertname: RingChatLeaderChangesTooOften, exp_alerts: []}

  # Heartbeat misses: more than 10 in 5 minutes, per neighbour.
  - interval: 1m
    input_series:
      - series: 'ringchat_heartbeat_misses_total{instance="a:9461",job="ringchat",neighbor="successor"}'
        values: '0+3x10'
      - series: 'ringchat_heartbeat_misses_total{instance="a:9461",job="ringchat",neighbor="predecessor"}'
        values: '0+1x10'
    alert_rule_test:
      - {eval_time: 2m, alertname: RingChatHeartbeatMisses, exp_alerts: []}
      - eval_time: 7m
        alertname: RingChatHeartbeatMisses
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9461", job: ringchat, neighbor: successor}

  # Replication lag above 1000 for a minute, read from the current leader only.
  - interval: 15s
    input_series:
      - series: 'ringchat_is_leader{instance="a:9463",job="ringchat"}'
        values: '1x12'
      - series: 'ringchat_is_leader{instance="a:9462",job="ringchat"}'
        values: '0x12'
      - series: 'ringchat_replication_lag_entries{instance="a:9463",job="ringchat",follower="1"}'
        values: '0 500 1500x10'
      - series: 'ringchat_replication_lag_entries{instance="a:9463",job="ringchat",follower="2"}'
        values: '0x12'
      # A former leader keeps its last values.
      - series: 'ringchat_replication_lag_entries{instance="a:9462",job="ringchat",follower="1"}'
        values: '5000x12'
    alert_rule_test:
      - {eval_time: 1m, alertname: RingChatReplicationLag, exp_alerts: []}
      - eval_time: 2m
        alertname: RingChatReplicationLag
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9463", job: ringchat, follower: "1"}

  # Slow-client disconnects: the first one of a process counts (counters start at 0).
  - interval: 1m
    input_series:
      - series: 'ringchat_slow_client_disconnects_total{instance="a:9461",job="ringchat"}'
        values: '0x15 1x30'
      - series: 'ringchat_slow_client_disconnects_total{instance="a:9462",job="ringchat"}'
        values: '0x20 2x25'
    alert_rule_test:
      - {eval_time: 10m, alertname: RingChatSlowClientDisconnects, exp_alerts: []}
      - eval_time: 17m
        alertname: RingChatSlowClientDisconnects
        exp_alerts:
          - exp_labels: {severity: info, instance: "a:9461", job: ringchat}
      - eval_time: 22m
        alertname: RingChatSlowClientDisconnects
        exp_alerts:
          - exp_labels: {severity: info, instance: "a:9461", job: ringchat}
          - exp_labels: {severity: info, instance: "a:9462", job: ringchat}
      - {eval_time: 40m, alertname: RingChatSlowClientDisconnects, exp_alerts: []}

  # Commit latency p99: every commit within 10 ms is fine; half of them in (25, 50] ms is not.
  - interval: 1m
    input_series:
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9463",job="ringchat",le="0.01"}'
        values: '0+100x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9463",job="ringchat",le="0.025"}'
        values: '0+100x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9463",job="ringchat",le="0.05"}'
        values: '0+100x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9463",job="ringchat",le="+Inf"}'
        values: '0+100x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9462",job="ringchat",le="0.01"}'
        values: '0+50x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9462",job="ringchat",le="0.025"}'
        values: '0+50x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9462",job="ringchat",le="0.05"}'
        values: '0+100x20'
      - series: 'ringchat_message_commit_duration_seconds_bucket{instance="a:9462",job="ringchat",le="+Inf"}'
        values: '0+100x20'
    alert_rule_test:
      - {eval_time: 5m, alertname: RingChatSlowCommits, exp_alerts: []}
      - eval_time: 12m
        alertname: RingChatSlowCommits
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9462"}

  # Elections: one that took 1.2 s is within the target; one that took 2 s is not.
  - interval: 1m
    input_series:
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9461",job="ringchat",le="1"}'
        values: '5x20'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9461",job="ringchat",le="1.5"}'
        values: '5 5 6x18'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9461",job="ringchat",le="2.5"}'
        values: '5 5 6x18'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9461",job="ringchat",le="+Inf"}'
        values: '5 5 6x18'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9462",job="ringchat",le="1"}'
        values: '5x20'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9462",job="ringchat",le="1.5"}'
        values: '5x20'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9462",job="ringchat",le="2.5"}'
        values: '5 5 6x18'
      - series: 'ringchat_election_duration_seconds_bucket{instance="a:9462",job="ringchat",le="+Inf"}'
        values: '5 5 6x18'
    alert_rule_test:
      - eval_time: 5m
        alertname: RingChatSlowElections
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9462"}

  # Ring size against the number of scrape targets; a target that is down.
  - interval: 30s
    input_series:
      - series: 'up{instance="a:9461",job="ringchat"}'
        values: '1x10'
      - series: 'up{instance="a:9462",job="ringchat"}'
        values: '1x10'
      - series: 'up{instance="a:9463",job="ringchat"}'
        values: '0x10'
      - series: 'ringchat_ring_members{instance="a:9461",job="ringchat"}'
        values: '3 2x9'
      - series: 'ringchat_ring_members{instance="a:9462",job="ringchat"}'
        values: '3x10'
    alert_rule_test:
      - {eval_time: 1m, alertname: RingChatRingSmallerThanExpected, exp_alerts: []}
      - eval_time: 3m
        alertname: RingChatRingSmallerThanExpected
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9461", job: ringchat}
      - eval_time: 2m
        alertname: RingChatServerDown
        exp_alerts:
          - exp_labels: {severity: warning, instance: "a:9463", job: ringchat}

  # Drained for an hour.
  - interval: 5m
    input_series:
      - series: 'ringchat_draining{instance="a:9461",job="ringchat"}'
        values: '0 1x20'
      - series: 'ringchat_draining{instance="a:9462",job="ringchat"}'
        values: '0 1 1 1 0x17'
    alert_rule_test:
      - {eval_time: 50m, alertname: RingChatServerDrainedForLong, exp_alerts: []}
      - eval_time: 70m
        alertname: RingChatServerDrainedForLong
        exp_alerts:
          - exp_labels: {severity: info, instance: "a:9461", job: ringchat}
"#;

#[test]
fn alert_rules_fire_on_their_cases() {
    let Some(promtool) = tool("promtool") else {
        report("SKIP: promtool not installed (apt-get install prometheus); alert cases not run");
        return;
    };
    let mut rules: serde_norway::Value = serde_norway::from_str(&read(ALERTS)).expect("yaml");
    let mut tested = BTreeSet::new();
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            let map = rule.as_mapping_mut().expect("rule");
            map.remove("annotations");
            tested.insert(map["alert"].as_str().expect("alert").to_string());
        }
    }
    // Every alert has a case.
    for alert in &tested {
        assert!(
            ALERT_CASES.contains(&format!("alertname: {alert}")),
            "alert {alert} has no case in ALERT_CASES"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("alerts.yml"),
        serde_norway::to_string(&rules).expect("yaml"),
    )
    .expect("write");
    std::fs::write(dir.path().join("cases.yml"), ALERT_CASES).expect("write");
    let (ok, out) =
        run(Command::new(&promtool)
            .current_dir(dir.path())
            .args(["test", "rules", "cases.yml"]));
    assert!(ok, "promtool test rules failed:\n{out}");
}

// ------------------------------------------------------------------------------------------
// systemd

#[test]
fn the_unit_has_the_promised_settings() {
    let unit = read(UNIT);
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "User=ringchat",
        "Group=ringchat",
        "RuntimeDirectory=ringchat-%i",
        "RuntimeDirectoryMode=0750",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=2s",
        "RestartPreventExitStatus=2",
        "KillSignal=SIGTERM",
        "WatchdogSec=30s",
        "LimitNOFILE=65536",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "CapabilityBoundingSet=",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
    ] {
        assert!(lines.contains(want), "{UNIT} lacks `{want}`");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    for want in [
        "--config /etc/ringchat/node%i.toml",
        "--admin-socket /run/ringchat-%i/admin.sock",
        "--id %i",
    ] {
        assert!(exec.contains(want), "ExecStart lacks `{want}`: {exec}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("StateDirectory=")),
        "StateDirectory"
    );
    // The stop timeout covers a leave (hand-over at most 2 s, then the links close).
    let stop = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().strip_suffix('s'))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("TimeoutStopSec=<N>s");
    assert!(
        stop >= 10,
        "TimeoutStopSec={stop}s is shorter than a leave may take"
    );
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        report("SKIP: systemd-analyze not installed; the unit was not verified");
        return;
    };
    // verify needs ExecStart's program to exist: point it at an executable that does
    // (this test binary) in a copy of the unit.
    let exe = std::env::current_exe().expect("current_exe");
    let unit = read(UNIT);
    let marker = "ExecStart=/usr/local/bin/ringchatd ";
    assert!(
        unit.contains(marker),
        "ExecStart runs /usr/local/bin/ringchatd"
    );
    let copy = unit.replace(marker, &format!("ExecStart={} ", exe.display()));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ringchatd@.service"), copy).expect("write unit");
    let (ok, out) = run(Command::new(&analyze)
        .current_dir(dir.path())
        .args(["verify", "--man=no"])
        .arg(dir.path().join("ringchatd@1.service")));
    assert!(ok, "systemd-analyze verify failed:\n{out}");
    // verify exits 0 on unknown keys and bad values, and only warns: no warning may
    // concern our unit.
    let ours: Vec<&str> = out.lines().filter(|l| l.contains("ringchatd@")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns:\n{}",
        ours.join("\n")
    );
}

#[test]
fn the_sysusers_entry_creates_the_service_user() {
    let Some(sysusers) = tool("systemd-sysusers") else {
        report("SKIP: systemd-sysusers not installed; the sysusers entry was not tried");
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    let (ok, out) = run(Command::new(&sysusers)
        .arg(format!("--root={}", root.path().display()))
        .arg(workspace().join(SYSUSERS)));
    assert!(ok, "systemd-sysusers failed:\n{out}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("ringchat:"))
        .unwrap_or_else(|| panic!("no ringchat user in\n{passwd}"));
    assert!(
        user.ends_with("nologin"),
        "the ringchat user cannot log in: {user}"
    );
    assert!(
        group.lines().any(|l| l.starts_with("ringchat:")),
        "no ringchat group"
    );
}

// ------------------------------------------------------------------------------------------
// The example node file

fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((code, text))
}

#[test]
fn the_example_node_file_starts_a_server() {
    let bins = binaries();
    let ports = node_ports();
    let metrics = node_ports().ring;
    let dir = tempfile::tempdir().expect("tempdir");
    // The file as installed, with the ports moved to free ones (flags beat the file) and
    // the unit's --id and --admin-socket.
    let mut child = process::command(&bins.ringchatd, None)
        .args(["--id", "1", "--config"])
        .arg(workspace().join(NODE_EXAMPLE))
        .args(["--port", &ports.ring.to_string()])
        .args(["--client-port", &ports.client.to_string()])
        .args(["--peer", &format!("127.0.0.1:{}", ports.ring)])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .arg("--admin-socket")
        .arg(dir.path().join("admin.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringchatd");
    let ready = wait_for(SHORT, "/readyz of the example server", || {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Err(format!("ringchatd exited: {status}")));
        }
        match http_get(metrics, "/readyz") {
            Ok((200, _)) => Ok(Ok(())),
            Ok((code, body)) => Err(format!("{code}: {body}")),
            Err(e) => Err(e),
        }
    });
    if let Err(e) = ready {
        let mut log = String::new();
        child.stderr.take().map(|mut s| s.read_to_string(&mut log));
        panic!("the example node file does not start a server: {e}\n{log}");
    }
    process::signal(&child, Signal::SIGTERM);
    let status = process::wait_exit(&mut child, SHORT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    // The example asks for JSON logs (for journald): every line is a JSON object.
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("read log");
    assert!(!log.trim().is_empty(), "no log lines");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
}
