//! The `--redis` target counts correctly: small runs against a tiny in-test pub/sub server
//! that speaks RESP (SUBSCRIBE, PUBLISH) over TCP, so no Redis is needed. Assertions on
//! counts only, never on timings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ringchat_bench::openloop::{self, Flavor, OpenLoopConfig};
use ringchat_bench::resp::{RespCodec, Value};
use ringchat_bench::session::ConnectOptions;
use ringchat_bench::throughput::{self, ThroughputConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

/// A pub/sub server: SUBSCRIBE registers the connection, PUBLISH pushes the message to every
/// subscriber of the channel and answers with their number, or with an error for every
/// `refuse_every`-th PUBLISH.
#[derive(Clone, Default)]
struct FakeRedis {
    channels: Arc<Mutex<HashMap<Bytes, Vec<mpsc::UnboundedSender<Bytes>>>>>,
    published: Arc<AtomicU64>,
    refuse_every: Option<u64>,
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

impl FakeRedis {
    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(self.clone().serve(Framed::new(stream, RespCodec)));
            }
        });
        addr
    }

    async fn serve(self, mut conn: Framed<tokio::net::TcpStream, RespCodec>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        loop {
            tokio::select! {
                out = rx.recv() => {
                    let Some(out) = out else { return };
                    if conn.send(out).await.is_err() {
                        return;
                    }
                }
                cmd = conn.next() => {
                    let Some(Ok(Value::Array(Some(args)))) = cmd else { return };
                    let args: Vec<Bytes> = args
                        .into_iter()
                        .filter_map(|a| match a {
                            Value::Bulk(Some(b)) => Some(b),
                            _ => None,
                        })
                        .collect();
                    let _ = tx.send(self.handle(&args, &tx));
                }
            }
        }
    }

    fn handle(&self, args: &[Bytes], tx: &mpsc::UnboundedSender<Bytes>) -> Bytes {
        let mut channels = self.channels.lock().expect("lock");
        match (args.first().map(|a| &a[..]), args.get(1), args.get(2)) {
            (Some(b"SUBSCRIBE"), Some(ch), None) => {
                channels.entry(ch.clone()).or_default().push(tx.clone());
                let mut out = b"*3\r\n".to_vec();
                out.extend(bulk(b"subscribe"));
                out.extend(bulk(ch));
                out.extend(b":1\r\n");
                out.into()
            }
            (Some(b"PUBLISH"), Some(ch), Some(payload)) => {
                let n = self.published.fetch_add(1, Ordering::SeqCst) + 1;
                if self.refuse_every.is_some_and(|k| n.is_multiple_of(k)) {
                    return Bytes::from_static(b"-ERR refused by the fake\r\n");
                }
                let mut push = b"*3\r\n".to_vec();
                push.extend(bulk(b"message"));
                push.extend(bulk(ch));
                push.extend(bulk(payload));
                let push = Bytes::from(push);
                let subs = channels.entry(ch.clone()).or_default();
                subs.retain(|s| s.send(push.clone()).is_ok());
                format!(":{}\r\n", subs.len()).into()
            }
            _ => Bytes::from_static(b"-ERR unknown command\r\n"),
        }
    }
}

fn throughput_cfg(redis: String, senders: usize, messages: u64) -> ThroughputConfig {
    ThroughputConfig {
        connect: ConnectOptions::new(Vec::new()),
        senders,
        window: 4,
        size: 100,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(120),
        max_messages: Some(messages),
        drain: Duration::from_secs(30),
        ack_timeout: Duration::from_secs(30),
        run_id: "rt".into(),
        username: "bench".into(),
        redis: Some(redis),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_throughput_counts_every_publish_reply() {
    let fake = FakeRedis::default();
    let addr = fake.clone().start().await;
    let r = throughput::run(&throughput_cfg(addr.clone(), 2, 30)).await;
    assert!(r.fatal.is_empty(), "{:?}", r.fatal);
    assert_eq!(r.target, format!("redis {addr}"));
    assert_eq!(
        (r.sent, r.acked, r.acked_in_window, r.unacked),
        (60, 60, 60, 0)
    );
    assert_eq!(r.commit_latency.count, 60);
    assert_eq!((r.failed, r.unknown_acks), (0, 0));
    assert_eq!(fake.published.load(Ordering::SeqCst), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_errors_are_counted_as_refused_not_acked() {
    let fake = FakeRedis {
        refuse_every: Some(5),
        ..FakeRedis::default()
    };
    let addr = fake.clone().start().await;
    let r = throughput::run(&throughput_cfg(addr, 1, 20)).await;
    assert_eq!((r.sent, r.acked, r.failed, r.unacked), (20, 16, 4, 0));
    assert_eq!(r.errors.get("REDIS_ERROR"), Some(&4));
    assert_eq!(r.commit_latency.count, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_latency_counts_deliveries_to_every_subscriber() {
    let fake = FakeRedis::default();
    let addr = fake.clone().start().await;
    let cfg = OpenLoopConfig {
        connect: ConnectOptions::new(Vec::new()),
        rate: 2000.0,
        listeners: 3,
        size: 50,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(120),
        max_messages: Some(40),
        drain: Duration::from_secs(30),
        ack_timeout: Duration::from_secs(30),
        run_id: "rl".into(),
        username: "bench".into(),
        flavor: Flavor::Fanout,
        redis: Some(addr),
    };
    let r = openloop::run(&cfg).await.expect("run");
    assert!(r.fatal.is_empty(), "{:?}", r.fatal);
    assert_eq!((r.sent, r.acked, r.unacked), (40, 40, 0));
    assert_eq!(r.commit_latency.count, 40);
    assert_eq!((r.deliveries, r.deliveries_in_window), (120, 120));
    assert_eq!(r.delivery_latency.count, 120);
    assert_eq!((r.missing_deliveries, r.duplicate_deliveries), (0, 0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}
