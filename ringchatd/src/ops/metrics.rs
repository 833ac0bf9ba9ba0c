//! Prometheus metrics (served by [`crate::ops::http`] at `/metrics`). Names follow Prometheus
//! conventions: `ringchat_` prefix, base units, `_total` on counters; labels are few and
//! bounded (never per client or per message).

use anyhow::Context;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ringchat_core::{ElectionTrigger, Role};
use ringchat_proto::ErrorCode;

/// Histogram buckets (seconds) around the alert thresholds: a failover must stay under
/// 1.5 s, a commit under a few milliseconds on a LAN.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5,
    2.5, 5.0,
];

/// Installs the process-wide recorder; the handle renders the text format.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .context("metrics: bad buckets")?
        .install_recorder()
        .context("metrics: a recorder is installed already")?;
    gauge!("ringchat_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    register_zeroes();
    Ok(handle)
}

/// Counters exist from the start at 0, so that `increase()` in alert rules and dashboards
/// sees their first event, and a scrape shows every series an operator may look for.
fn register_zeroes() {
    for name in [
        "ringchat_leader_changes_seen_total",
        "ringchat_messages_received_total",
        "ringchat_messages_deduplicated_total",
        "ringchat_slow_client_disconnects_total",
    ] {
        counter!(name).absolute(0);
    }
    for neighbor in ["successor", "predecessor"] {
        counter!("ringchat_heartbeats_sent_total", "neighbor" => neighbor).absolute(0);
        counter!("ringchat_heartbeat_misses_total", "neighbor" => neighbor).absolute(0);
    }
    for reason in [
        "unreachable",
        "heartbeat_timeout",
        "replication_timeout",
        "no_report",
        "left",
        "restarted",
    ] {
        counter!("ringchat_ring_repairs_total", "reason" => reason).absolute(0);
    }
    for trigger in [
        ElectionTrigger::Startup,
        ElectionTrigger::LeaderLost,
        ElectionTrigger::Timeout,
        ElectionTrigger::HigherId,
        ElectionTrigger::Requested,
    ] {
        counter!("ringchat_election_rounds_total", "trigger" => trigger.as_str()).absolute(0);
    }
    for kind in ["election", "elected"] {
        counter!("ringchat_election_messages_total", "type" => kind).absolute(0);
    }
    for result in ["accepted", "redirected", "rejected_limit"] {
        counter!("ringchat_client_connections_total", "result" => result).absolute(0);
    }
    for channel in ["ring", "discovery"] {
        counter!("ringchat_auth_failures_total", "channel" => channel).absolute(0);
    }
    for code in [
        ErrorCode::BadFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadField,
        ErrorCode::NotConnected,
        ErrorCode::NotLeader,
        ErrorCode::NoLeader,
        ErrorCode::ContentTooLong,
        ErrorCode::RateLimited,
        ErrorCode::ShuttingDown,
    ] {
        counter!("ringchat_protocol_errors_total", "code" => code.as_str()).absolute(0);
    }
}

/// The role, leader and epoch gauges, after every change.
pub fn view(role: Role, has_leader: bool, epoch: u64, members: usize, draining: bool) {
    gauge!("ringchat_draining").set(f64::from(u8::from(draining)));
    gauge!("ringchat_is_leader").set(f64::from(u8::from(role == Role::Leader)));
    gauge!("ringchat_has_leader").set(f64::from(u8::from(has_leader)));
    gauge!("ringchat_election_epoch").set(epoch as f64);
    gauge!("ringchat_ring_members").set(members as f64);
}

/// The leader this server follows changed.
pub fn leader_changed() {
    counter!("ringchat_leader_changes_seen_total").increment(1);
}

/// This server started an election round.
pub fn election_started(trigger: ElectionTrigger) {
    counter!("ringchat_election_rounds_total", "trigger" => trigger.as_str()).increment(1);
}

/// A round this server took part in ended with a known leader.
pub fn election_finished(seconds: f64) {
    histogram!("ringchat_election_duration_seconds").record(seconds);
}

/// An election message this server sent (`election_vote` or `election_leader`).
pub fn election_message(kind: &'static str) {
    counter!("ringchat_election_messages_total", "type" => kind).increment(1);
}

/// A heartbeat sent (`successor`, `predecessor`, or `other`: a leader beats to every member).
pub fn heartbeat_sent(neighbor: &'static str) {
    counter!("ringchat_heartbeats_sent_total", "neighbor" => neighbor).increment(1);
}

/// A neighbour's heartbeat was late.
pub fn heartbeat_missed(neighbor: &'static str) {
    counter!("ringchat_heartbeat_misses_total", "neighbor" => neighbor).increment(1);
}

/// A heartbeat round trip.
pub fn heartbeat_rtt(neighbor: &'static str, seconds: f64) {
    histogram!("ringchat_heartbeat_rtt_seconds", "neighbor" => neighbor).record(seconds);
}

/// The ring was spliced because a server failed or left.
pub fn ring_repair(reason: &'static str) {
    counter!("ringchat_ring_repairs_total", "reason" => reason).increment(1);
}

/// A peer or datagram failed `cluster.secret` authentication (`ring` or `discovery`).
pub fn auth_failure(channel: &'static str) {
    counter!("ringchat_auth_failures_total", "channel" => channel).increment(1);
}

/// A frame of an older epoch was refused.
pub fn stale_message(kind: &'static str) {
    counter!("ringchat_stale_messages_total", "kind" => kind).increment(1);
}

/// A client message arrived at the leader; `duplicate` when it was stored before.
pub fn message_received(duplicate: bool) {
    counter!("ringchat_messages_received_total").increment(1);
    if duplicate {
        counter!("ringchat_messages_deduplicated_total").increment(1);
    }
}

/// Receive-to-acknowledge time of one message.
pub fn commit_latency(seconds: f64) {
    histogram!("ringchat_message_commit_duration_seconds").record(seconds);
}

/// History held in memory on this server: entries (the retained window) and text bytes.
pub fn history(entries: u64, bytes: usize) {
    gauge!("ringchat_history_entries").set(entries as f64);
    gauge!("ringchat_history_bytes").set(bytes as f64);
}

/// Replication lag of one follower, as the leader sees it: entries it lacks, and the age
/// of the oldest entry it has not acknowledged.
pub fn replication_lag(follower: u64, entries: u64, seconds: f64) {
    let follower = follower.to_string();
    gauge!("ringchat_replication_lag_entries", "follower" => follower.clone()).set(entries as f64);
    gauge!("ringchat_replication_lag_seconds", "follower" => follower).set(seconds);
}

/// Connected client sessions.
pub fn clients(sessions: usize) {
    gauge!("ringchat_clients_connected").set(sessions as f64);
}

/// A client connection attempt and what became of it (`accepted`, `redirected`,
/// `rejected_limit`).
pub fn client_connection(result: &'static str) {
    counter!("ringchat_client_connections_total", "result" => result).increment(1);
}

/// A client was dropped for reading too slowly.
pub fn slow_client_disconnect() {
    counter!("ringchat_slow_client_disconnects_total").increment(1);
}

/// A protocol error answered to a client.
pub fn protocol_error(code: &'static str) {
    counter!("ringchat_protocol_errors_total", "code" => code).increment(1);
}
