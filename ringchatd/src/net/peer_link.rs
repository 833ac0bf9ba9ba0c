//! One outbound ring link: connects, writes queued frames, reconnects once when the
//! connection breaks, and reports the peer unreachable when it cannot.
//!
//! Nothing is ever read from this connection except its end: the peer answers on its own
//! link to us. A kill -9 of the peer closes the socket, the immediate reconnect is refused,
//! and the node hears of it within a round trip instead of a heartbeat timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringchat_proto::NodeId;
use ringchat_proto::auth::{FrameSealer, TAG_LEN};
use ringchat_proto::frame::HEADER_LEN;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::ring_auth::{self, HandshakeError, RingAuth};
use crate::node::Event;

/// Timing of a link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// A write that blocks this long means the peer is stuck.
    pub write_timeout: Duration,
    /// With `cluster.secret`: every connection starts with the handshake and every frame
    /// carries a MAC.
    pub auth: Option<Arc<RingAuth>>,
}

/// A connection that lasted this long was healthy; its end is not part of a break loop.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(5);

/// Frames written in one go before a flush.
const WRITE_BATCH: usize = 256;

/// Runs the link until its queue is dropped or the peer is unreachable.
pub async fn run(
    address: String,
    port: u16,
    id: Option<NodeId>,
    mut rx: mpsc::Receiver<Bytes>,
    cfg: LinkConfig,
    events: mpsc::Sender<Event>,
) {
    let mut breaks = 0;
    loop {
        let mut stream = match timeout(
            cfg.connect_timeout,
            TcpStream::connect((address.as_str(), port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = ?id, %address, port, error = %e, "Ring link cannot connect.");
                break;
            }
            Err(_) => {
                tracing::debug!(peer = ?id, %address, port, "Ring link connect timed out.");
                break;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut sealer = match &cfg.auth {
            None => None,
            Some(auth) => match ring_auth::connect(&mut stream, auth, cfg.write_timeout).await {
                Ok((_, sealer)) => Some(sealer),
                Err(HandshakeError::Auth(e)) => {
                    ring_auth::report_failure("ring", format_args!("{address}:{port}"), &e);
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = ?id, %address, port, error = %e, "Ring link handshake failed.");
                    break;
                }
            },
        };
        let connected_at = tokio::time::Instant::now();
        let (mut rd, wr) = stream.into_split();
        let mut wr = BufWriter::with_capacity(64 * 1024, wr);
        let mut probe = [0u8; 64];
        let broke = loop {
            tokio::select! {
                biased;
                frame = rx.recv() => {
                    let Some(frame) = frame else {
                        let _ = timeout(cfg.write_timeout, wr.flush()).await;
                        return;
                    };
                    if write_batch(&mut wr, frame, &mut rx, &mut sealer, cfg.write_timeout).await.is_err() {
                        break true;
                    }
                    breaks = 0;
                }
                // The peer writes here only to report an error on our frames (logged by it);
                // the end of the stream means it closed the connection.
                n = rd.read(&mut probe) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        break true;
                    }
                }
            }
        };
        if broke {
            // A connection that lived a while was closed for idleness or a restart, not
            // in a loop: start counting afresh.
            if connected_at.elapsed() > HEALTHY_CONNECTION {
                breaks = 0;
            }
            breaks += 1;
            if breaks > 3 {
                tracing::debug!(peer = ?id, %address, port, "Ring link keeps breaking.");
                break;
            }
            tracing::debug!(peer = ?id, %address, port, "Ring link broke; reconnecting.");
        }
    }
    if let Some(id) = id {
        let _ = events.send(Event::PeerUnreachable(id)).await;
    }
}

async fn write_batch(
    wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    first: Bytes,
    rx: &mut mpsc::Receiver<Bytes>,
    sealer: &mut Option<FrameSealer>,
    limit: Duration,
) -> std::io::Result<()> {
    let work = async {
        write_frame(wr, &first, sealer).await?;
        for _ in 0..WRITE_BATCH {
            match rx.try_recv() {
                Ok(frame) => write_frame(wr, &frame, sealer).await?,
                Err(_) => break,
            }
        }
        wr.flush().await
    };
    timeout(limit, work).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        ))
    })
}

/// Writes one frame built by `frame_json`; on an authenticated link its payload is followed
/// by its MAC (and the length prefix counts both).
async fn write_frame(
    wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    framed: &Bytes,
    sealer: &mut Option<FrameSealer>,
) -> std::io::Result<()> {
    let Some(sealer) = sealer else {
        return wr.write_all(framed).await;
    };
    let payload = framed.get(HEADER_LEN..).unwrap_or_default();
    let tag = sealer.seal(payload);
    let len = u32::try_from(payload.len() + TAG_LEN)
        .map_err(|_| std::io::Error::other("ring frame too large"))?;
    wr.write_all(&len.to_be_bytes()).await?;
    wr.write_all(payload).await?;
    wr.write_all(&tag).await
}
