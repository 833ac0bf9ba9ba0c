//! The fuzz targets' bodies (`fuzz/src/proto.rs`) under proptest, in the normal test run:
//! arbitrary bytes in arbitrary reads into the frame decoder, valid frames however split,
//! and arbitrary bytes and JSON objects (valid messages with random fields replaced,
//! dropped or added) into the client, ring and discovery parsers. A fixed seed keeps CI
//! repeatable; `PROPTEST_RNG_SEED=<n>` and `PROPTEST_CASES=<n>` explore further.

#[path = "../../fuzz/src/proto.rs"]
mod proto;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use ringchat_proto::ChatEntry;
use ringchat_proto::frame::FrameCodec;
use ringchat_proto::peer::{LeaveReason, NodeInfo, PeerBody, PeerMessage};
use serde_json::{Map, Value, json};
use tokio_util::codec::Encoder;

fn config(cases: u32) -> ProptestConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").map_or(cases, |n| n as u32),
        rng_seed: proptest::test_runner::RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(4)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep, with the numbers and strings parsers trip over:
/// huge, negative, fractional, empty, long, multi-byte.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..12).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
        (0usize..70, any::<bool>())
            .prop_map(|(n, wide)| Value::String(if wide { "ü" } else { "a" }.repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `template` with up to four fields replaced by any value, removed, or added, and its
/// `msg_type` perhaps upper-cased: mostly-valid messages reach the deeper checks.
fn mutated(templates: Vec<Value>, keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(templates),
        vec(
            (proptest::sample::select(keys), any::<bool>(), json_value()),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut msg, edits, upper)| {
            let map: &mut Map<String, Value> = msg.as_object_mut().expect("templates are objects");
            for (key, remove, value) in edits {
                if remove {
                    map.remove(key);
                } else {
                    map.insert(key.to_string(), value);
                }
            }
            if upper && let Some(Value::String(t)) = map.get_mut("msg_type") {
                *t = t.to_uppercase();
            }
            msg
        })
}

fn client_templates() -> Vec<Value> {
    vec![
        json!({"msg_type": "client_connect", "client_id": "c1", "username": "Alice"}),
        json!({"msg_type": "client_connect", "client_id": "c1", "username": "Bob", "from_sequence": 7}),
        json!({"msg_type": "client_message", "client_id": "c1", "username": "Alice",
               "content": "hello", "message_id": "c1:1", "timestamp": 1.5}),
        json!({"msg_type": "history_request", "from_sequence": 3, "limit": 50}),
        json!({"msg_type": "client_ping", "client_id": "c1"}),
        json!({"msg_type": "client_disconnect"}),
    ]
}

const CLIENT_KEYS: &[&str] = &[
    "msg_type",
    "client_id",
    "username",
    "content",
    "message_id",
    "from_sequence",
    "limit",
    "sender_id",
    "timestamp",
    "extra",
];

fn node(id: u64) -> NodeInfo {
    NodeInfo {
        id,
        address: "127.0.0.1".into(),
        port: 5000 + id as u16,
        client_port: 5100 + id as u16,
    }
}

fn peer_templates() -> Vec<Value> {
    let entry = ChatEntry {
        message_id: "m".into(),
        sequence_number: 4,
        client_id: "c".into(),
        username: "u".into(),
        content: "x".into(),
        timestamp: 1.25,
        delivered: true,
        epoch: 65_539,
    };
    let bodies = [
        PeerBody::RingJoinRequest {
            node: node(4),
            epoch: 3,
            last_seq: 9,
            last_epoch: 2,
            probe: true,
        },
        PeerBody::RingJoinAccept {
            node: node(2),
            leader: Some(node(3)),
            epoch: 5,
            accepted: false,
        },
        PeerBody::RingUpdate {
            epoch: 5,
            members: vec![node(1), node(2)],
            version: 3,
        },
        PeerBody::RingLeave {
            epoch: 5,
            node: 2,
            reason: LeaveReason::Failed,
        },
        PeerBody::Heartbeat {
            epoch: 5,
            nonce: 1,
            leader: Some(3),
        },
        PeerBody::HeartbeatAck { epoch: 5, nonce: 1 },
        PeerBody::ElectionStart { epoch: 5 },
        PeerBody::ElectionVote {
            epoch: 5,
            candidate: 3,
        },
        PeerBody::ElectionLeader {
            epoch: 5,
            leader: node(3),
        },
        PeerBody::ReplicationSync {
            epoch: 5,
            prev_seq: 3,
            prev_epoch: 5,
            entries: vec![entry.clone()],
            reset: false,
            commit: 3,
        },
        PeerBody::ReplicationAck {
            epoch: 5,
            last_seq: 4,
            last_epoch: 5,
            ok: true,
            draining: true,
        },
        PeerBody::SyncRequest {
            epoch: 5,
            from_seq: 1,
            limit: 100,
        },
        PeerBody::SyncResponse {
            epoch: 5,
            entries: vec![entry],
            last_seq: 4,
        },
    ];
    bodies
        .into_iter()
        .map(|body| {
            serde_json::to_value(PeerMessage {
                from: 3,
                sender_id: "Server 3".into(),
                timestamp: 1_764_097_425.125,
                cluster: "ringchat".into(),
                origin: Some(node(3)),
                body,
            })
            .expect("a ring message encodes")
        })
        .collect()
}

const PEER_KEYS: &[&str] = &[
    "msg_type",
    "from",
    "origin",
    "cluster",
    "timestamp",
    "epoch",
    "node",
    "leader",
    "members",
    "version",
    "candidate",
    "nonce",
    "entries",
    "prev_seq",
    "prev_epoch",
    "last_seq",
    "last_epoch",
    "reset",
    "commit",
    "ok",
    "from_seq",
    "limit",
    "probe",
    "accepted",
    "reason",
];

fn discovery_templates() -> Vec<Value> {
    vec![
        json!({"msg_type": "discovery_announce", "sender_id": "Server 3", "timestamp": 1.5,
               "server_address": "127.0.0.1", "server_port": 5003, "is_leader": true,
               "leader_id": 3, "leader_address": "127.0.0.1", "leader_port": 5103, "epoch": 65_539,
               "cluster": "ringchat", "node_id": 3, "client_port": 5103, "leader_ring_port": 5003}),
        json!({"msg_type": "discovery_announce", "sender_id": "k3f9a", "timestamp": 1,
               "server_address": "", "server_port": 0, "is_leader": false}),
        json!({"msg_type": "discovery_response", "sender_id": "Server 12",
               "server_address": "127.0.0.1", "server_port": 5012}),
    ]
}

const DISCOVERY_KEYS: &[&str] = &[
    "msg_type",
    "sender_id",
    "timestamp",
    "server_address",
    "server_port",
    "is_leader",
    "leader_id",
    "leader_address",
    "leader_port",
    "epoch",
    "cluster",
    "node_id",
    "client_port",
    "leader_ring_port",
];

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary bytes in arbitrary reads: no panic, at most one incomplete frame held,
    /// the same frames and error as reading it all at once.
    #[test]
    fn decoder_takes_arbitrary_bytes_in_arbitrary_reads(
        max_frame in 1usize..600,
        stream in vec(any::<u8>(), 0..2048),
        cuts in vec(any::<u16>(), 0..12),
    ) {
        proto::frame_decoder(max_frame, &stream, &cuts);
    }

    /// Streams that are mostly valid frames (lengths near the limit, some over it, some
    /// zero) in arbitrary reads.
    #[test]
    fn decoder_takes_plausible_frames_in_arbitrary_reads(
        max_frame in 1usize..300,
        lens in vec(0u32..320, 0..12),
        cuts in vec(any::<u16>(), 0..12),
        fill in any::<u8>(),
    ) {
        let mut stream = Vec::new();
        for len in lens {
            stream.extend_from_slice(&len.to_be_bytes());
            stream.resize(stream.len() + len as usize, fill);
        }
        proto::frame_decoder(max_frame, &stream, &cuts);
    }

    /// The fuzz target's own reading of raw input.
    #[test]
    fn decoder_target_takes_raw_input(data in vec(any::<u8>(), 0..2048)) {
        proto::frame_decoder_bytes(&data);
    }

    /// Valid frames come out identical however the stream is split.
    #[test]
    fn valid_frames_round_trip_however_split(
        payloads in vec(vec(any::<u8>(), 1..400), 1..16),
        cuts in vec(any::<u16>(), 1..16),
    ) {
        let mut codec = FrameCodec::new(400);
        let mut wire = bytes::BytesMut::new();
        for p in &payloads {
            codec.encode(p.as_slice(), &mut wire).expect("within the limit");
        }
        prop_assert_eq!(proto::frame_decoder(400, &wire, &cuts), payloads);
    }

    /// Arbitrary bytes into every parser: answers or typed errors, never a panic.
    #[test]
    fn parsers_take_arbitrary_bytes(data in vec(any::<u8>(), 0..512), limit in 1usize..5000) {
        proto::client_request(&data, limit);
        proto::peer_message(&data);
        proto::discovery_datagram(&data);
    }
}

proptest! {
    #![proptest_config(config(1500))]

    /// Client requests with random fields changed: Ok within the limits, or the right code.
    #[test]
    fn client_parser_takes_arbitrary_objects(
        msg in mutated(client_templates(), CLIENT_KEYS),
        limit in 1usize..5000,
    ) {
        proto::client_request(msg.to_string().as_bytes(), limit);
    }

    /// Ring messages with random fields changed: refused, or accepted and stable through
    /// their own encoding.
    #[test]
    fn peer_parser_takes_arbitrary_objects(msg in mutated(peer_templates(), PEER_KEYS)) {
        proto::peer_message(msg.to_string().as_bytes());
    }

    /// Discovery datagrams with random fields changed, likewise.
    #[test]
    fn discovery_parser_takes_arbitrary_objects(
        msg in mutated(discovery_templates(), DISCOVERY_KEYS),
    ) {
        proto::discovery_datagram(msg.to_string().as_bytes());
    }
}

/// The templates themselves are valid: the mutations start from messages the parsers
/// accept, so the round-trip checks are reached.
#[test]
fn templates_are_accepted() {
    use ringchat_proto::client::{ClientLimits, parse_client_request};
    for t in client_templates() {
        assert!(parse_client_request(t.to_string().as_bytes(), &ClientLimits::default()).is_ok());
    }
    for t in peer_templates() {
        assert!(serde_json::from_value::<PeerMessage>(t).is_ok());
    }
    for t in discovery_templates() {
        let bytes = t.to_string();
        assert!(ringchat_proto::discovery::DiscoveryMessage::parse(bytes.as_bytes()).is_some());
    }
}
