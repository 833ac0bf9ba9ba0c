//! The ring port: accepts other servers' links and hands their frames to the node task.
//!
//! Input here is untrusted like any other: frames are size-checked before allocation, a
//! malformed frame gets an `error` frame and, where the framing is lost, a close; an idle
//! or stalled connection is dropped after a while; connections are capped.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ringchat_proto::ErrorCode;
use ringchat_proto::auth::{AuthError, TAG_LEN};
use ringchat_proto::frame::{FrameCodec, FrameError};
use ringchat_proto::ids::unix_timestamp;
use ringchat_proto::limits::MAX_PEER_FRAME;
use ringchat_proto::peer::PeerMessage;
use ringchat_proto::server::{ErrorMessage, ServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::accept::accept_loop;
use super::ring_auth::{self, HandshakeError, RingAuth};
use crate::node::Event;

/// Inbound ring connections at most (a ring is small; this bounds abuse).
const MAX_PEER_CONNECTIONS: usize = 256;
/// A ring connection silent this long is closed (links to non-neighbours are often idle,
/// and the sender simply reconnects).
const IDLE: Duration = Duration::from_secs(60);
/// A connector that has not proved the key this long after connecting is dropped.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Accepts ring connections until `shutdown`; with `auth`, only from servers that prove
/// the cluster's key.
pub async fn run(
    listener: TcpListener,
    sender_id: String,
    cluster: String,
    auth: Option<Arc<RingAuth>>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    accept_loop(
        listener,
        "ring",
        MAX_PEER_CONNECTIONS,
        shutdown,
        |_| {},
        move |stream, _| {
            let (sender_id, cluster) = (sender_id.clone(), cluster.clone());
            let (events, stop, auth) = (events.clone(), stop.clone(), auth.clone());
            async move { serve(stream, &sender_id, &cluster, auth.as_deref(), events, stop).await }
        },
    )
    .await;
}

async fn serve(
    stream: TcpStream,
    sender_id: &str,
    cluster: &str,
    auth: Option<&RingAuth>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let peer_text = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let max = MAX_PEER_FRAME + if auth.is_some() { TAG_LEN } else { 0 };
    let mut framed = Framed::new(stream, FrameCodec::new(max));
    // With a key: the connector proves it first, then every frame must carry its MAC.
    let mut opener = None;
    if let Some(auth) = auth {
        let handshake = tokio::select! {
            _ = shutdown.cancelled() => return,
            h = ring_auth::accept(&mut framed, auth, HANDSHAKE) => h,
        };
        match handshake {
            Ok(authenticated) => opener = Some(authenticated),
            Err(HandshakeError::Auth(e)) => {
                ring_auth::report_failure("ring", &peer_text, &e);
                return;
            }
            Err(e) => {
                tracing::debug!(?peer, error = %e, "Ring handshake not completed.");
                return;
            }
        }
    }
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = timeout(IDLE, framed.next()) => n,
        };
        let payload = match next {
            Err(_) | Ok(None) => return,
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => {
                let code = match e {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    FrameError::Empty => ErrorCode::BadFrame,
                    FrameError::Io(_) => return,
                };
                tracing::warn!(?peer, error = %e, "Bad frame on the ring port; closing.");
                reply_error(&mut framed, sender_id, code, &e.to_string()).await;
                return;
            }
        };
        let payload = match opener.as_mut() {
            None => &payload[..],
            Some((_, opener)) => match opener.open(&payload) {
                Ok(p) => p,
                Err(e) => {
                    ring_auth::report_failure("ring", &peer_text, &e);
                    return;
                }
            },
        };
        let parsed = parse(payload);
        if let (Ok(msg), Some((authenticated, _))) = (&parsed, &opener)
            && msg.from != *authenticated
        {
            let e = AuthError::WrongSender {
                claimed: msg.from,
                authenticated: *authenticated,
            };
            ring_auth::report_failure("ring", &peer_text, &e);
            return;
        }
        match parsed {
            Ok(msg) if !msg.cluster.is_empty() && msg.cluster != cluster => {
                tracing::debug!(?peer, cluster = %msg.cluster, "Ring frame of another cluster ignored.");
            }
            Ok(msg) => {
                if events.send(Event::Peer(msg)).await.is_err() {
                    return;
                }
            }
            Err((code, why)) => {
                tracing::warn!(?peer, code = code.as_str(), %why, "Bad ring message.");
                reply_error(&mut framed, sender_id, code, &why).await;
                if code.closes_connection() {
                    return;
                }
            }
        }
    }
}

/// Decodes a ring frame. A valid one (every frame between healthy servers) is decoded
/// straight from the text; only a frame that fails is parsed again as a JSON value, to
/// tell bad JSON from an unknown type or a bad field in the error it gets.
fn parse(payload: &[u8]) -> Result<PeerMessage, (ErrorCode, String)> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| (ErrorCode::BadFrame, format!("frame is not UTF-8: {e}")))?;
    if let Ok(msg) = serde_json::from_str::<PeerMessage>(text) {
        return Ok(msg);
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| (ErrorCode::BadJson, format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err((
            ErrorCode::BadJson,
            "a frame must hold one JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown variant") {
            (ErrorCode::UnknownType, msg)
        } else {
            (ErrorCode::BadField, msg)
        }
    })
}

async fn reply_error(
    framed: &mut Framed<TcpStream, FrameCodec>,
    sender_id: &str,
    code: ErrorCode,
    message: &str,
) {
    let msg = ServerMessage::Error(ErrorMessage {
        sender_id: sender_id.to_string(),
        timestamp: unix_timestamp(),
        code,
        message: message.into(),
        message_id: None,
    });
    if let Ok(bytes) = serde_json::to_vec(&msg) {
        let _ = timeout(Duration::from_secs(1), framed.send(bytes.as_slice())).await;
    }
}
