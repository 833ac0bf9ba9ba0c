//! The ring handshake over a socket (the protocol itself is `ringchat_proto::auth`), and
//! how an authentication failure is reported: counted, and logged at warn at most once per
//! interval per channel, so that a host hammering a port cannot flood the log.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use ringchat_proto::NodeId;
use ringchat_proto::auth::{
    Acceptor, AuthError, ClusterKey, Connector, FrameOpener, FrameSealer, HandshakeMessage,
};
use ringchat_proto::frame::FrameCodec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// Largest handshake frame read by the connector (an `error` frame of a keyless peer fits).
const MAX_HANDSHAKE_FRAME: usize = 4096;
/// At most one warn line per channel this often; the rest are counted in the next one.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What a server needs to authenticate its ring links: the key and who it is.
#[derive(Debug, Clone)]
pub struct RingAuth {
    /// The cluster's key.
    pub key: ClusterKey,
    /// This server's id.
    pub me: NodeId,
    /// The cluster name (part of every proof).
    pub cluster: String,
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer failed authentication: counted and logged as an auth failure.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The connection failed, closed or stalled: an ordinary network failure.
    #[error("connection lost during the handshake: {0}")]
    Io(String),
}

/// Runs the connector's side on a fresh connection; returns the peer's id and the sealer
/// for the frames this side sends.
pub async fn connect(
    stream: &mut TcpStream,
    auth: &RingAuth,
    limit: Duration,
) -> Result<(NodeId, FrameSealer), HandshakeError> {
    let mut framed = Framed::new(stream, FrameCodec::new(MAX_HANDSHAKE_FRAME));
    let work = async {
        let (state, hello) = Connector::start(&auth.key, auth.me, &auth.cluster);
        send(&mut framed, &hello).await?;
        let challenge = recv(&mut framed, "ring_auth_challenge").await?;
        let (peer, proof, sealer) = state.finish(&challenge)?;
        send(&mut framed, &proof).await?;
        Ok((peer, sealer))
    };
    timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(HandshakeError::Io("timed out".into())))
}

/// Runs the acceptor's side on `framed` (which goes on carrying the link's frames);
/// returns the connector's id and the opener of its frames.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, FrameCodec>,
    auth: &RingAuth,
    limit: Duration,
) -> Result<(NodeId, FrameOpener), HandshakeError> {
    let work = async {
        let hello = recv(framed, "ring_auth_hello").await?;
        let (state, challenge) = Acceptor::start(&auth.key, auth.me, &auth.cluster, &hello)?;
        send(framed, &challenge).await?;
        let proof = recv(framed, "ring_auth_proof").await?;
        Ok(state.finish(&proof)?)
    };
    timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(HandshakeError::Io("timed out".into())))
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, FrameCodec>,
    msg: &HandshakeMessage,
) -> Result<(), HandshakeError> {
    framed
        .send(msg.to_bytes().as_slice())
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

async fn recv<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, FrameCodec>,
    expected: &'static str,
) -> Result<HandshakeMessage, HandshakeError> {
    match framed.next().await {
        Some(Ok(payload)) => Ok(HandshakeMessage::parse(&payload, expected)?),
        // A frame too large or empty for a handshake is not one.
        Some(Err(ringchat_proto::frame::FrameError::Io(e))) => {
            Err(HandshakeError::Io(e.to_string()))
        }
        Some(Err(_)) => Err(AuthError::Unexpected { expected }.into()),
        None => Err(HandshakeError::Io("closed by the peer".into())),
    }
}

/// Counts an authentication failure on `channel` (`ring` or `discovery`) and logs it at
/// warn, rate-limited. `peer` is the remote address; the key never appears.
pub fn report_failure(channel: &'static str, peer: impl Display, err: &AuthError) {
    crate::ops::metrics::auth_failure(channel);
    static LAST: Mutex<BTreeMap<&'static str, (Instant, u64)>> = Mutex::new(BTreeMap::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match last.get_mut(channel) {
        Some((at, suppressed)) if now.duration_since(*at) < WARN_INTERVAL => *suppressed += 1,
        entry => {
            let suppressed = entry.map_or(0, |(_, s)| *s);
            last.insert(channel, (now, 0));
            tracing::warn!(
                channel,
                %peer,
                error = %err,
                suppressed,
                "Authentication failed; refused."
            );
        }
    }
}
