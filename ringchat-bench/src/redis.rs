//! The `--redis HOST:PORT` target: the same load generator (schedule, window, message size,
//! client counts, measurement window, histograms) against a Redis server's pub/sub, so
//! that RingChat can be compared with it on the same machine.
//!
//! A sender PUBLISHes to one channel per run; the integer reply stands for
//! `message_delivered` (Redis has put the message in every subscriber's output buffer; it
//! neither replicates nor orders across servers, so this is a lower bound for what a chat
//! server must do). Listeners SUBSCRIBE to the channel; a `message` push stands for
//! `chat_broadcast`. A payload is exactly `size` bytes: the message counter in decimal, a
//! space, then the same padding as RingChat's texts (longer only when `size` cannot hold
//! the counter). Redis connections are not reopened: a broken one ends that client.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_util::codec::Framed;

use crate::listener::{ListenerConfig, ListenerStats};
use crate::resp::{self, RespCodec, Value};
use crate::sender::{AckRecord, Schedule, SenderConfig, SenderStats};
use crate::session;
use crate::wire;

/// A RESP connection.
pub type RespConn = Framed<TcpStream, RespCodec>;

/// The payload of message `n`: `"<n> "` and padding, `size` bytes (or just `"<n> "`).
pub fn payload(n: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{n} ").into_bytes();
    let pad = size.saturating_sub(p.len());
    p.extend_from_slice(wire::content(pad).as_bytes());
    p
}

/// The counter at the start of a payload made by [`payload`].
pub fn counter_of(payload: &[u8]) -> Option<u64> {
    let end = payload.iter().position(|&b| b == b' ')?;
    std::str::from_utf8(&payload[..end]).ok()?.parse().ok()
}

/// A TCP connection to Redis with `TCP_NODELAY`, within `limit`.
pub async fn dial(addr: &str, limit: Duration) -> Result<RespConn> {
    let stream = session::tcp(addr, limit).await.context("redis")?;
    Ok(Framed::new(stream, RespCodec))
}

/// A connection subscribed to `channel` (the server has confirmed the subscription).
pub async fn subscribe(addr: &str, channel: &str, limit: Duration) -> Result<RespConn> {
    let mut conn = dial(addr, limit).await?;
    let work = async {
        conn.send(resp::command(&[b"SUBSCRIBE", channel.as_bytes()]))
            .await
            .context("sending SUBSCRIBE")?;
        loop {
            match conn.next().await {
                Some(Ok(Value::Array(Some(items))))
                    if items.first() == Some(&bulk(b"subscribe")) =>
                {
                    return Ok(());
                }
                Some(Ok(Value::Error(e))) => {
                    bail!("SUBSCRIBE refused: {}", String::from_utf8_lossy(&e))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow!(e).context("reading the SUBSCRIBE answer")),
                None => bail!("connection closed before SUBSCRIBE was confirmed"),
            }
        }
    };
    timeout(limit, work)
        .await
        .with_context(|| format!("redis {addr}: SUBSCRIBE not confirmed within {limit:?}"))?
        .with_context(|| format!("redis {addr}"))?;
    Ok(conn)
}

fn bulk(b: &'static [u8]) -> Value {
    Value::Bulk(Some(bytes::Bytes::from_static(b)))
}

/// Runs one PUBLISH sender with `cfg`'s schedule and window on `channel` and returns what
/// it counted (`seq` in its ack records is the counter: Redis numbers nothing).
pub async fn send(cfg: SenderConfig, addr: String, channel: String) -> SenderStats {
    let mut st = SenderStats::default();
    let mut conn = match dial(&addr, cfg.connect.attempt_timeout).await {
        Ok(c) => c,
        Err(e) => {
            st.fatal = Some(format!("{e:#}"));
            return st;
        }
    };
    let started = Instant::now();
    let size = cfg.content.len();
    let mut schedule = Schedule::new(&cfg);
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut closed_at: Option<Instant> = None;
    let on_reply = |st: &mut SenderStats, inflight: &mut VecDeque<(u64, Instant)>, v| {
        let Some((n, first_sent)) = inflight.pop_front() else {
            st.unknown_acks += 1;
            return;
        };
        match v {
            Value::Integer(_) => {
                let at = Instant::now();
                st.count_ack(&cfg, first_sent, at);
                if cfg.record_acks {
                    st.acks.push(AckRecord {
                        counter: n,
                        seq: n,
                        at,
                        session_started: started,
                        leader: None,
                    });
                }
            }
            Value::Error(_) => {
                st.failed += 1;
                st.error("REDIS_ERROR");
            }
            _ => st.error("BAD_SERVER_FRAME"),
        }
    };
    let channel_bytes = channel.as_bytes();
    loop {
        let now = Instant::now();
        let open = schedule.open(now);
        if open {
            let mut fed = false;
            let mut broken = None;
            while schedule.may_send(now, inflight.len(), cfg.window) {
                let n = schedule.take(now);
                let frame = resp::command(&[b"PUBLISH", channel_bytes, &payload(n, size)]);
                let at = Instant::now();
                if let Some(t) = &cfg.send_times {
                    t.record(n, at);
                }
                inflight.push_back((n, at));
                st.sent += 1;
                fed = true;
                if let Err(e) = conn.feed(frame).await {
                    broken = Some(e);
                    break;
                }
            }
            if broken.is_none() && fed {
                broken = SinkExt::<bytes::Bytes>::flush(&mut conn).await.err();
            }
            if let Some(e) = broken {
                st.fatal = Some(format!("redis {addr}: sending PUBLISH: {e}"));
                break;
            }
        } else {
            let closed = *closed_at.get_or_insert(now);
            if inflight.is_empty() || now >= closed + cfg.drain {
                break;
            }
        }
        let oldest = inflight.front().map(|&(_, at)| at);
        if oldest.is_some_and(|at| now.saturating_duration_since(at) >= cfg.ack_timeout) {
            st.error("ACK_TIMEOUT");
            st.fatal = Some(format!(
                "redis {addr}: no PUBLISH reply within {:?}",
                cfg.ack_timeout
            ));
            break;
        }
        let mut wake = match closed_at {
            None => schedule.wake(now, inflight.len() < cfg.window),
            Some(c) => (now + Duration::from_millis(100)).min(c + cfg.drain),
        };
        if let Some(at) = oldest {
            wake = wake.min(at + cfg.ack_timeout);
        }
        tokio::select! {
            v = conn.next() => match v {
                Some(Ok(v)) => {
                    on_reply(&mut st, &mut inflight, v);
                    // Take whatever else is already buffered before sending again.
                    for _ in 0..256 {
                        match conn.next().now_or_never() {
                            Some(Some(Ok(v))) => on_reply(&mut st, &mut inflight, v),
                            _ => break,
                        }
                    }
                }
                Some(Err(e)) => {
                    st.fatal = Some(format!("redis {addr}: reading replies: {e}"));
                    break;
                }
                None => {
                    st.fatal = Some(format!("redis {addr}: connection closed"));
                    break;
                }
            },
            _ = sleep_until(wake.max(now).into()) => {}
            _ = schedule.stopped(), if open => {}
        }
    }
    st.unacked = inflight.len() as u64;
    st
}

/// Runs one listener on a subscribed connection until the sender is done; counts the
/// `message` pushes of the channel as deliveries.
pub async fn listen(cfg: ListenerConfig, mut conn: RespConn) -> ListenerStats {
    let mut st = ListenerStats {
        seen: vec![false; cfg.send_times.capacity() + 1],
        ..ListenerStats::default()
    };
    let mut done = cfg.done.clone();
    let mut done_at: Option<(Instant, u64)> = None;
    loop {
        if done_at.is_none()
            && let Some(acked) = *done.borrow()
        {
            done_at = Some((Instant::now(), acked));
        }
        if st.finished(done_at, cfg.grace) {
            return st;
        }
        tokio::select! {
            v = conn.next() => match v {
                Some(Ok(Value::Array(Some(items)))) => {
                    let now = Instant::now();
                    match (items.first(), items.get(2)) {
                        (Some(kind), Some(Value::Bulk(Some(p)))) if *kind == bulk(b"message") => {
                            match counter_of(p) {
                                Some(n) => st.count_delivery(&cfg, n, now),
                                None => st.other_broadcasts += 1,
                            }
                        }
                        _ => st.other_broadcasts += 1,
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    st.fatal = Some(format!("redis subscriber: {e}"));
                    return st;
                }
                None => {
                    st.fatal = Some("redis subscriber: connection closed".into());
                    return st;
                }
            },
            changed = done.changed(), if done_at.is_none() => {
                if changed.is_err() {
                    // The sender is gone without a verdict: stop after the grace period.
                    done_at = Some((Instant::now(), u64::MAX));
                }
            }
            _ = sleep(Duration::from_millis(100)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_and_carry_the_counter() {
        let p = payload(42, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(counter_of(&p), Some(42));
        assert_eq!(payload(123_456, 3), b"123456 ".to_vec());
        assert_eq!(counter_of(b"x1 abc"), None);
        assert_eq!(counter_of(b"17"), None);
    }
}
