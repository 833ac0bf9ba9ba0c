//! Micro-benchmarks of the per-message wire work: framing, the client request parser, and
//! the JSON of broadcasts and replication batches. `cargo bench -p ringchat-proto`.

use bytes::BytesMut;
use divan::{Bencher, black_box};
use ringchat_proto::ChatEntry;
use ringchat_proto::client::{ClientLimits, parse_client_request};
use ringchat_proto::frame::{FrameCodec, frame_json};
use ringchat_proto::peer::{NodeInfo, PeerBody, PeerMessage};
use ringchat_proto::requests;
use ringchat_proto::server::{ChatBroadcast, ServerMessage};
use tokio_util::codec::{Decoder, Encoder};

fn main() {
    divan::main();
}

/// A 100-byte text, the size the throughput target is stated for.
fn text() -> String {
    "x".repeat(100)
}

fn entry(seq: u64) -> ChatEntry {
    ChatEntry {
        message_id: format!("bench-client-0001:{seq}"),
        sequence_number: seq,
        client_id: "bench-client-0001".into(),
        username: "bench".into(),
        content: text(),
        timestamp: 1_764_650_000.123,
        delivered: true,
        epoch: 4_294_967_299,
    }
}

fn replication(n: u64) -> PeerMessage {
    PeerMessage {
        from: 3,
        sender_id: "Server 3".into(),
        timestamp: 1_764_650_000.5,
        cluster: "ringchat".into(),
        origin: Some(NodeInfo {
            id: 3,
            address: "127.0.0.1".into(),
            port: 5003,
            client_port: 5103,
        }),
        body: PeerBody::ReplicationSync {
            epoch: 4_294_967_299,
            prev_seq: 1000,
            prev_epoch: 4_294_967_299,
            entries: (1001..1001 + n).map(entry).collect(),
            reset: false,
            commit: 1000,
        },
    }
}

#[divan::bench]
fn frame_encode(bencher: Bencher) {
    let payload = vec![b'a'; 200];
    let mut codec = FrameCodec::new(1 << 16);
    let mut out = BytesMut::with_capacity(1 << 16);
    bencher.bench_local(|| {
        out.clear();
        codec
            .encode(black_box(payload.as_slice()), &mut out)
            .unwrap();
    });
}

#[divan::bench]
fn frame_decode(bencher: Bencher) {
    let mut wire = BytesMut::new();
    FrameCodec::new(1 << 16)
        .encode(&[b'a'; 200][..], &mut wire)
        .unwrap();
    let mut codec = FrameCodec::new(1 << 16);
    bencher
        .with_inputs(|| wire.clone())
        .bench_local_refs(|buf| codec.decode(buf).unwrap());
}

#[divan::bench]
fn client_message_parse(bencher: Bencher) {
    let frame = requests::message(
        "bench-client-0001",
        "bench",
        &text(),
        "bench-client-0001:42",
    );
    let payload = &frame[4..];
    let limits = ClientLimits::default();
    bencher.bench_local(|| parse_client_request(black_box(payload), &limits).unwrap());
}

#[divan::bench]
fn client_message_serialise(bencher: Bencher) {
    let content = text();
    bencher.bench_local(|| {
        requests::message(
            "bench-client-0001",
            "bench",
            black_box(&content),
            "bench-client-0001:42",
        )
    });
}

#[divan::bench]
fn chat_broadcast_serialise(bencher: Bencher) {
    let msg = ServerMessage::ChatBroadcast(ChatBroadcast {
        sender_id: "Server 3".into(),
        entry: entry(42),
    });
    bencher.bench_local(|| frame_json(black_box(&msg)).unwrap());
}

#[divan::bench]
fn chat_broadcast_parse(bencher: Bencher) {
    let msg = ServerMessage::ChatBroadcast(ChatBroadcast {
        sender_id: "Server 3".into(),
        entry: entry(42),
    });
    let json = serde_json::to_vec(&msg).unwrap();
    bencher.bench_local(|| serde_json::from_slice::<ServerMessage>(black_box(&json)).unwrap());
}

/// Replication frames with 1 and 64 entries: serialising is the leader's cost per follower.
#[divan::bench(args = [1, 64])]
fn replication_serialise(bencher: Bencher, n: u64) {
    let msg = replication(n);
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| frame_json(black_box(&msg)).unwrap());
}

/// Parsing straight into the type, the follower's cost per batch.
#[divan::bench(args = [1, 64])]
fn replication_parse(bencher: Bencher, n: u64) {
    let json = serde_json::to_vec(&replication(n)).unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| serde_json::from_slice::<PeerMessage>(black_box(&json)).unwrap());
}

/// Parsing via `serde_json::Value` first, as the ring listener does (it checks that the
/// frame is an object before it looks at the fields).
#[divan::bench(args = [1, 64])]
fn replication_parse_via_value(bencher: Bencher, n: u64) {
    let json = serde_json::to_vec(&replication(n)).unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&json)).unwrap();
            serde_json::from_value::<PeerMessage>(v).unwrap()
        });
}
