//! One client connection: a reader that parses requests and a writer that drains the
//! bounded outbox the node task fills. Protocol errors are answered here; everything that
//! needs the ring's state goes to the node task.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ringchat_proto::client::{ClientLimits, ClientRequest, parse_client_request};
use ringchat_proto::frame::{FrameCodec, FrameError, frame_json};
use ringchat_proto::ids::unix_timestamp;
use ringchat_proto::server::{ErrorMessage, ServerMessage};
use ringchat_proto::{ErrorCode, ProtocolError};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::node::{ConnId, Event};

/// Limits of a client session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `sender_id` on error frames.
    pub sender_id: String,
    /// Largest frame a client may send.
    pub max_frame: usize,
    /// Longest chat text in characters; shared so that a reload applies to open sessions.
    pub max_text: Arc<AtomicUsize>,
    /// Frames queued before the client counts as slow.
    pub queue: usize,
    /// Silence after which the connection is closed.
    pub idle_timeout: Duration,
    /// A single write that blocks this long closes the connection.
    pub write_timeout: Duration,
}

/// Serves one client until it leaves, misbehaves, is too slow, or the server stops.
pub async fn serve(
    stream: TcpStream,
    conn: ConnId,
    cfg: SessionConfig,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (outbox, rx) = mpsc::channel::<Bytes>(cfg.queue);
    let kick = CancellationToken::new();
    let opened = Event::ClientOpened {
        conn,
        outbox: outbox.clone(),
        kick: kick.clone(),
    };
    if events.send(opened).await.is_err() {
        return;
    }
    let writer = tokio::spawn(write_loop(wr, rx, kick.clone(), cfg.write_timeout));
    read_loop(rd, conn, &cfg, &events, &outbox, &kick, &shutdown).await;
    drop(outbox);
    let _ = events.send(Event::ClientClosed { conn }).await;
    // The writer drains what is queued (an error, a last leader_info) and closes.
    let _ = timeout(cfg.write_timeout, writer).await;
    kick.cancel();
}

async fn read_loop(
    rd: tokio::net::tcp::OwnedReadHalf,
    conn: ConnId,
    cfg: &SessionConfig,
    events: &mpsc::Sender<Event>,
    outbox: &mpsc::Sender<Bytes>,
    kick: &CancellationToken,
    shutdown: &CancellationToken,
) {
    let mut frames = FramedRead::new(rd, FrameCodec::new(cfg.max_frame));
    loop {
        let next = tokio::select! {
            _ = kick.cancelled() => return,
            _ = shutdown.cancelled() => return,
            n = timeout(cfg.idle_timeout, frames.next()) => n,
        };
        let payload = match next {
            Err(_) => {
                tracing::debug!(conn, "Client idle too long; closing.");
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(FrameError::Io(_)))) => return,
            Ok(Some(Err(e))) => {
                let code = match e {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    _ => ErrorCode::BadFrame,
                };
                send_error(outbox, cfg, ProtocolError::new(code, e.to_string()));
                return;
            }
        };
        let limits = ClientLimits {
            max_content_chars: cfg.max_text.load(Ordering::Relaxed),
        };
        match parse_client_request(&payload, &limits) {
            Ok(req) => {
                let last = matches!(req, ClientRequest::Disconnect);
                if events
                    .send(Event::ClientRequest { conn, req })
                    .await
                    .is_err()
                    || last
                {
                    return;
                }
            }
            Err(err) => {
                tracing::debug!(conn, code = err.code.as_str(), reason = %err.message, "Client protocol error.");
                let fatal = err.code.closes_connection();
                send_error(outbox, cfg, err);
                if fatal {
                    return;
                }
            }
        }
    }
}

fn send_error(outbox: &mpsc::Sender<Bytes>, cfg: &SessionConfig, err: ProtocolError) {
    crate::ops::metrics::protocol_error(err.code.as_str());
    let msg = ServerMessage::Error(ErrorMessage {
        sender_id: cfg.sender_id.clone(),
        timestamp: unix_timestamp(),
        code: err.code,
        message: err.message,
        message_id: err.message_id,
    });
    if let Ok(frame) = frame_json(&msg) {
        // A client that does not read even its errors is dropped like any slow client.
        let _ = outbox.try_send(frame);
    }
}

async fn write_loop(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    kick: CancellationToken,
    write_timeout: Duration,
) {
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    loop {
        let frame = tokio::select! {
            biased;
            _ = kick.cancelled() => break,
            f = rx.recv() => f,
        };
        // No frame: every sender is gone. An empty frame: "close after what came before".
        let Some(frame) = frame.filter(|f| !f.is_empty()) else {
            break;
        };
        let mut batch = vec![frame];
        let mut close = false;
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(f) if f.is_empty() => {
                    close = true;
                    break;
                }
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let work = async {
            for f in &batch {
                wr.write_all(f).await?;
            }
            wr.flush().await
        };
        if !matches!(timeout(write_timeout, work).await, Ok(Ok(()))) || close {
            break;
        }
    }
    let _ = timeout(Duration::from_millis(200), wr.shutdown()).await;
    kick.cancel();
}
