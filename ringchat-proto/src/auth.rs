//! Cluster-secret authentication (docs/PROTOCOL.md, "Ring authentication"): the ring
//! handshake, the per-frame MAC of an authenticated link, and the MAC of discovery
//! datagrams. All of it is HMAC-SHA256 keyed by `cluster.secret`.
//!
//! Pure functions and small state machines only (no sockets, no clock): the daemon drives
//! them, the client can verify discovery answers with them, and the unit tests below check
//! tampering, replay, reordering, wrong keys and truncation without a network.
//!
//! Every MAC input starts with a label naming its purpose and carries each field with a
//! length prefix, so a MAC made for one purpose (an acceptor's proof, a frame, a datagram)
//! is never valid for another, and no two field lists encode to the same bytes.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::NodeId;
pub use crate::discovery::DatagramAuth;

type HmacSha256 = Hmac<Sha256>;

/// Shortest `cluster.secret` accepted, in bytes: 128 bits of a random key.
pub const MIN_SECRET_LEN: usize = 16;
/// Bytes of a handshake or datagram nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of a MAC (a whole HMAC-SHA256 output).
pub const TAG_LEN: usize = 32;
/// How far a datagram's timestamp may be from the receiver's clock, in seconds.
pub const DATAGRAM_WINDOW_SECS: u64 = 30;
/// Nonces of accepted datagrams remembered at most (a few seconds of a large cluster's
/// announcements fit many times over; only MAC-valid datagrams are ever stored).
pub const REPLAY_CACHE: usize = 8192;

const LABEL_ACCEPTOR: &[u8] = b"ringchat/ring/v1/acceptor-proof";
const LABEL_CONNECTOR: &[u8] = b"ringchat/ring/v1/connector-proof";
const LABEL_DATA: &[u8] = b"ringchat/ring/v1/data/connector-to-acceptor";
const LABEL_DATAGRAM: &[u8] = b"ringchat/discovery/v1/datagram";
const LABEL_FINGERPRINT: &[u8] = b"ringchat/v1/key-fingerprint";

/// Why authentication failed. The texts name what was wrong, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `cluster.secret` is too short to be a key.
    #[error("the secret has {0} bytes; at least {MIN_SECRET_LEN} are required")]
    ShortSecret(usize),
    /// The peer sent something other than the expected handshake message.
    #[error("expected {expected}, got something else (does the peer have cluster.secret?)")]
    Unexpected {
        /// The message that was due.
        expected: &'static str,
    },
    /// A hex field has the wrong length or characters.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The peer belongs to another cluster.
    #[error("the peer is in cluster {0:?}")]
    OtherCluster(String),
    /// A proof or MAC does not verify: the sender lacks the key, or the bytes were changed.
    #[error("bad MAC (wrong key, or tampered, replayed or reordered)")]
    BadMac,
    /// A frame is shorter than its MAC.
    #[error("frame shorter than its MAC")]
    Truncated,
    /// An authenticated link carried a frame naming another sender than its handshake.
    #[error("frame claims to be from {claimed} on the link of {authenticated}")]
    WrongSender {
        /// The frame's `from`.
        claimed: NodeId,
        /// The id the handshake proved.
        authenticated: NodeId,
    },
    /// A datagram carries no `auth` field.
    #[error("no auth field")]
    Missing,
    /// A datagram's timestamp is outside the window around our clock.
    #[error("timestamp {ts} is more than {DATAGRAM_WINDOW_SECS} s from now ({now})")]
    Stale {
        /// The datagram's timestamp.
        ts: u64,
        /// Our clock.
        now: u64,
    },
    /// A datagram's nonce was seen before.
    #[error("replayed nonce")]
    Replayed,
    /// The replay cache is full of live nonces (a burst beyond any real cluster's rate).
    #[error("replay cache full")]
    CacheFull,
}

/// The cluster's shared key, ready to MAC with. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct ClusterKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// The key for `secret`, which must have at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::ShortSecret(secret.len()));
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::ShortSecret(0))?;
        Ok(Self { mac })
    }

    /// The key in a secret file's text: a trailing line break (as editors and `echo`
    /// leave one) is not part of the key.
    pub fn from_file_text(text: &str) -> Result<Self, AuthError> {
        Self::new(text.trim_end_matches(['\r', '\n']).as_bytes())
    }

    /// Whether `other` is the same key (to tell a reload that the secret changed, without
    /// ever comparing or printing the secrets themselves).
    pub fn same_as(&self, other: &ClusterKey) -> bool {
        let theirs = other.tag(LABEL_FINGERPRINT, &[]);
        self.verify(LABEL_FINGERPRINT, &[], &theirs).is_ok()
    }

    fn keyed(&self, label: &[u8], fields: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        put_field(&mut mac, label);
        for field in fields {
            put_field(&mut mac, field);
        }
        mac
    }

    fn tag(&self, label: &[u8], fields: &[&[u8]]) -> [u8; TAG_LEN] {
        self.keyed(label, fields).finalize().into_bytes().into()
    }

    fn verify(&self, label: &[u8], fields: &[&[u8]], tag: &[u8]) -> Result<(), AuthError> {
        // `verify_slice` compares in constant time.
        self.keyed(label, fields)
            .verify_slice(tag)
            .map_err(|_| AuthError::BadMac)
    }
}

fn put_field(mac: &mut HmacSha256, field: &[u8]) {
    mac.update(&(field.len() as u32).to_be_bytes());
    mac.update(field);
}

/// Fresh random bytes from the operating system (nonces must never repeat).
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    // The OS random source failing is not a state to run on: nonces would repeat.
    getrandom::fill(&mut nonce).expect("the operating system's random source failed");
    nonce
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Exactly `N` bytes from lower- or upper-case hex; `what` names the field in the error.
pub fn from_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], AuthError> {
    let bytes = s.as_bytes();
    if bytes.len() != 2 * N {
        return Err(AuthError::Malformed(what));
    }
    let digit = |c: u8| (c as char).to_digit(16).ok_or(AuthError::Malformed(what));
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(out)
}

/// The handshake messages of an authenticated ring connection, in order: the connector's
/// `ring_auth_hello`, the acceptor's `ring_auth_challenge`, the connector's `ring_auth_proof`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", rename_all = "snake_case")]
pub enum HandshakeMessage {
    /// Opens the handshake: who connects, for which cluster, and its nonce.
    RingAuthHello {
        /// The connector's id.
        from: NodeId,
        /// The connector's cluster name.
        cluster: String,
        /// The connector's nonce, hex.
        nonce: String,
    },
    /// The acceptor's nonce and its proof of the key over both nonces and both ids.
    RingAuthChallenge {
        /// The acceptor's id.
        from: NodeId,
        /// The acceptor's nonce, hex.
        nonce: String,
        /// MAC proving the acceptor holds the key, hex.
        proof: String,
    },
    /// The connector's proof of the key.
    RingAuthProof {
        /// MAC proving the connector holds the key, hex.
        proof: String,
    },
}

impl HandshakeMessage {
    /// Parses one handshake frame; anything else (a ring message from a keyless peer, an
    /// error frame) is [`AuthError::Unexpected`].
    pub fn parse(payload: &[u8], expected: &'static str) -> Result<Self, AuthError> {
        serde_json::from_slice(payload).map_err(|_| AuthError::Unexpected { expected })
    }

    /// The message as a frame payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What both proofs and the link key are computed over.
#[derive(Clone)]
struct Transcript {
    cluster: String,
    connector_nonce: [u8; NONCE_LEN],
    acceptor_nonce: [u8; NONCE_LEN],
    connector: NodeId,
    acceptor: NodeId,
}

impl Transcript {
    fn fields(&self) -> [Vec<u8>; 5] {
        [
            self.cluster.as_bytes().to_vec(),
            self.connector_nonce.to_vec(),
            self.acceptor_nonce.to_vec(),
            self.connector.to_be_bytes().to_vec(),
            self.acceptor.to_be_bytes().to_vec(),
        ]
    }

    fn fields_ref(fields: &[Vec<u8>; 5]) -> [&[u8]; 5] {
        [&fields[0], &fields[1], &fields[2], &fields[3], &fields[4]]
    }

    /// The key of this connection's frames: fresh per connection (both nonces), so a frame
    /// recorded on one connection is worthless on any other.
    fn link_key(&self, key: &ClusterKey) -> HmacSha256 {
        let fields = self.fields();
        let derived = key.tag(LABEL_DATA, &Self::fields_ref(&fields));
        // Any length is a valid HMAC key.
        HmacSha256::new_from_slice(&derived).expect("HMAC takes keys of any length")
    }
}

impl ClusterKey {
    fn transcript_tag(&self, t: &Transcript, label: &[u8]) -> [u8; TAG_LEN] {
        let fields = t.fields();
        self.tag(label, &Transcript::fields_ref(&fields))
    }

    fn transcript_verify(
        &self,
        t: &Transcript,
        label: &[u8],
        proof: &str,
    ) -> Result<(), AuthError> {
        let proof: [u8; TAG_LEN] = from_hex(proof, "proof")?;
        let fields = t.fields();
        self.verify(label, &Transcript::fields_ref(&fields), &proof)
    }
}

/// The connecting side of a handshake, after its hello went out.
pub struct Connector {
    key: ClusterKey,
    me: NodeId,
    cluster: String,
    nonce: [u8; NONCE_LEN],
}

impl Connector {
    /// Starts a handshake as `me` of `cluster`: returns the state and the hello to send.
    pub fn start(key: &ClusterKey, me: NodeId, cluster: &str) -> (Self, HandshakeMessage) {
        let nonce = random_nonce();
        let hello = HandshakeMessage::RingAuthHello {
            from: me,
            cluster: cluster.to_string(),
            nonce: to_hex(&nonce),
        };
        let state = Self {
            key: key.clone(),
            me,
            cluster: cluster.to_string(),
            nonce,
        };
        (state, hello)
    }

    /// Checks the acceptor's challenge; on success returns the acceptor's id, the proof to
    /// send, and the sealer of this connection's frames.
    pub fn finish(
        self,
        challenge: &HandshakeMessage,
    ) -> Result<(NodeId, HandshakeMessage, FrameSealer), AuthError> {
        let HandshakeMessage::RingAuthChallenge { from, nonce, proof } = challenge else {
            return Err(AuthError::Unexpected {
                expected: "ring_auth_challenge",
            });
        };
        let t = Transcript {
            cluster: self.cluster,
            connector_nonce: self.nonce,
            acceptor_nonce: from_hex(nonce, "nonce")?,
            connector: self.me,
            acceptor: *from,
        };
        self.key.transcript_verify(&t, LABEL_ACCEPTOR, proof)?;
        let reply = HandshakeMessage::RingAuthProof {
            proof: to_hex(&self.key.transcript_tag(&t, LABEL_CONNECTOR)),
        };
        let sealer = FrameSealer {
            key: t.link_key(&self.key),
            counter: 0,
        };
        Ok((*from, reply, sealer))
    }
}

/// The accepting side of a handshake, after its challenge went out.
pub struct Acceptor {
    key: ClusterKey,
    transcript: Transcript,
}

impl Acceptor {
    /// Answers a hello as `me` of `cluster`: returns the state and the challenge to send.
    pub fn start(
        key: &ClusterKey,
        me: NodeId,
        cluster: &str,
        hello: &HandshakeMessage,
    ) -> Result<(Self, HandshakeMessage), AuthError> {
        let HandshakeMessage::RingAuthHello {
            from,
            cluster: theirs,
            nonce,
        } = hello
        else {
            return Err(AuthError::Unexpected {
                expected: "ring_auth_hello",
            });
        };
        if theirs != cluster {
            return Err(AuthError::OtherCluster(theirs.chars().take(64).collect()));
        }
        let t = Transcript {
            cluster: cluster.to_string(),
            connector_nonce: from_hex(nonce, "nonce")?,
            acceptor_nonce: random_nonce(),
            connector: *from,
            acceptor: me,
        };
        let challenge = HandshakeMessage::RingAuthChallenge {
            from: me,
            nonce: to_hex(&t.acceptor_nonce),
            proof: to_hex(&key.transcript_tag(&t, LABEL_ACCEPTOR)),
        };
        let state = Self {
            key: key.clone(),
            transcript: t,
        };
        Ok((state, challenge))
    }

    /// Checks the connector's proof; on success returns the connector's id (every frame
    /// must come from it) and the opener of this connection's frames.
    pub fn finish(self, proof: &HandshakeMessage) -> Result<(NodeId, FrameOpener), AuthError> {
        let HandshakeMessage::RingAuthProof { proof } = proof else {
            return Err(AuthError::Unexpected {
                expected: "ring_auth_proof",
            });
        };
        let t = &self.transcript;
        self.key.transcript_verify(t, LABEL_CONNECTOR, proof)?;
        let opener = FrameOpener {
            key: t.link_key(&self.key),
            counter: 0,
        };
        Ok((t.connector, opener))
    }
}

/// MACs the frames one authenticated connection sends: `HMAC(link key, counter ‖ payload)`,
/// the counter counting frames from 0. The counter is not sent: both ends count.
pub struct FrameSealer {
    key: HmacSha256,
    counter: u64,
}

impl FrameSealer {
    /// The tag to append to the next frame's `payload`.
    pub fn seal(&mut self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.key.clone();
        mac.update(&self.counter.to_be_bytes());
        mac.update(payload);
        self.counter += 1;
        mac.finalize().into_bytes().into()
    }
}

/// Checks the frames one authenticated connection receives (see [`FrameSealer`]). A frame
/// that was forged, changed, replayed, dropped or reordered fails: its counter differs.
pub struct FrameOpener {
    key: HmacSha256,
    counter: u64,
}

impl FrameOpener {
    /// The payload of `frame` (payload ‖ tag) if its tag is the next one due.
    pub fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], AuthError> {
        let split = frame
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AuthError::Truncated)?;
        let (payload, tag) = frame.split_at(split);
        let mut mac = self.key.clone();
        mac.update(&self.counter.to_be_bytes());
        mac.update(payload);
        mac.verify_slice(tag).map_err(|_| AuthError::BadMac)?;
        self.counter += 1;
        Ok(payload)
    }
}

impl DatagramAuth {
    /// A fresh field with a zero MAC, to serialize and then [`seal_datagram`].
    pub fn unsealed(now_secs: u64) -> Self {
        Self {
            nonce: to_hex(&random_nonce()),
            ts: now_secs,
            mac: ZERO_MAC.to_string(),
        }
    }
}

const ZERO_MAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the MAC's hex sits in a datagram: the last `"mac":"<hex>"` (the `auth` field is
/// serialized last).
fn mac_position(datagram: &[u8], hex: &str) -> Option<usize> {
    let needle = format!("\"mac\":\"{hex}\"");
    let at = datagram
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())?;
    Some(at + "\"mac\":\"".len())
}

/// Fills in the MAC of a datagram serialized with [`DatagramAuth::unsealed`]: the MAC is
/// over the exact bytes sent, with the MAC's own hex as zeros. `None` if there is no
/// unsealed `auth` field in `datagram`.
pub fn seal_datagram(key: &ClusterKey, datagram: &mut [u8]) -> Option<()> {
    let at = mac_position(datagram, ZERO_MAC)?;
    let tag = to_hex(&key.tag(LABEL_DATAGRAM, &[datagram]));
    datagram[at..at + ZERO_MAC.len()].copy_from_slice(tag.as_bytes());
    Some(())
}

/// Checks a received datagram's MAC (`auth` is its parsed field), then its freshness
/// against `now_secs` and `replay`. Nothing is remembered unless the MAC is good.
pub fn verify_datagram(
    key: &ClusterKey,
    datagram: &[u8],
    auth: Option<&DatagramAuth>,
    now_secs: u64,
    replay: &mut ReplayGuard,
) -> Result<(), AuthError> {
    let auth = auth.ok_or(AuthError::Missing)?;
    let tag: [u8; TAG_LEN] = from_hex(&auth.mac, "mac")?;
    let nonce: [u8; NONCE_LEN] = from_hex(&auth.nonce, "nonce")?;
    let at = mac_position(datagram, &auth.mac).ok_or(AuthError::Malformed("mac"))?;
    let mut canonical = datagram.to_vec();
    canonical[at..at + ZERO_MAC.len()].copy_from_slice(ZERO_MAC.as_bytes());
    key.verify(LABEL_DATAGRAM, &[&canonical], &tag)?;
    replay.admit(nonce, auth.ts, now_secs)
}

/// Nonces of recently accepted datagrams, bounded: within the timestamp window a nonce is
/// accepted once; outside it the timestamp check refuses the datagram anyway.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<[u8; NONCE_LEN], u64>,
}

impl ReplayGuard {
    /// Accepts `nonce` sent at `ts` if `ts` is within the window of `now` and the nonce is
    /// new; remembers it.
    pub fn admit(&mut self, nonce: [u8; NONCE_LEN], ts: u64, now: u64) -> Result<(), AuthError> {
        if ts.abs_diff(now) > DATAGRAM_WINDOW_SECS {
            return Err(AuthError::Stale { ts, now });
        }
        if self.seen.contains_key(&nonce) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= REPLAY_CACHE {
            self.seen
                .retain(|_, seen_ts| seen_ts.abs_diff(now) <= DATAGRAM_WINDOW_SECS);
            if self.seen.len() >= REPLAY_CACHE {
                return Err(AuthError::CacheFull);
            }
        }
        self.seen.insert(nonce, ts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::new(s.as_bytes()).unwrap()
    }

    const K: &str = "correct horse battery staple";

    /// Runs a whole handshake between `connector_key` (id 1) and `acceptor_key` (id 2).
    fn handshake(
        connector_key: &ClusterKey,
        acceptor_key: &ClusterKey,
    ) -> Result<(FrameSealer, FrameOpener), AuthError> {
        let (c, hello) = Connector::start(connector_key, 1, "ring");
        let hello = HandshakeMessage::parse(&hello.to_bytes(), "hello")?;
        let (a, challenge) = Acceptor::start(acceptor_key, 2, "ring", &hello)?;
        let (acceptor_id, proof, sealer) = c.finish(&challenge)?;
        assert_eq!(acceptor_id, 2);
        let (connector_id, opener) = a.finish(&proof)?;
        assert_eq!(connector_id, 1);
        Ok((sealer, opener))
    }

    fn sealed(sealer: &mut FrameSealer, payload: &[u8]) -> Vec<u8> {
        let mut frame = payload.to_vec();
        frame.extend_from_slice(&sealer.seal(payload));
        frame
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            ClusterKey::new(b"short").unwrap_err(),
            AuthError::ShortSecret(5)
        );
        assert!(ClusterKey::new(&[7; MIN_SECRET_LEN]).is_ok());
        assert_eq!(format!("{:?}", key(K)), "ClusterKey(<redacted>)");
        assert!(key(K).same_as(&key(K)));
        assert!(!key(K).same_as(&key("another secret of enough length")));
    }

    #[test]
    fn frames_pass_in_order_and_fail_when_tampered_replayed_or_reordered() {
        let (mut sealer, mut opener) = handshake(&key(K), &key(K)).unwrap();
        let f0 = sealed(&mut sealer, b"first");
        let f1 = sealed(&mut sealer, b"second");
        let f2 = sealed(&mut sealer, b"third");
        assert_eq!(opener.open(&f0).unwrap(), b"first");
        // Replay of an accepted frame, and the frame after next (reordering), both fail.
        assert_eq!(opener.open(&f0), Err(AuthError::BadMac));
        assert_eq!(opener.open(&f2), Err(AuthError::BadMac));
        let mut tampered = f1.clone();
        tampered[0] ^= 1;
        assert_eq!(opener.open(&tampered), Err(AuthError::BadMac));
        assert_eq!(opener.open(&f1[..TAG_LEN - 1]), Err(AuthError::Truncated));
        assert_eq!(opener.open(&f1[1..]), Err(AuthError::BadMac));
        assert_eq!(opener.open(&f1).unwrap(), b"second");
        assert_eq!(opener.open(&f2).unwrap(), b"third");
    }

    #[test]
    fn frames_of_one_connection_are_worthless_on_another() {
        let (mut s1, _) = handshake(&key(K), &key(K)).unwrap();
        let (_, mut o2) = handshake(&key(K), &key(K)).unwrap();
        assert_eq!(o2.open(&sealed(&mut s1, b"x")), Err(AuthError::BadMac));
    }

    #[test]
    fn a_wrong_key_fails_on_either_side() {
        let wrong = key("not the cluster's secret at all");
        // A keyless acceptor's proof is refused by the connector...
        assert_eq!(handshake(&key(K), &wrong).err(), Some(AuthError::BadMac));
        // ...and a keyless connector's proof by the acceptor.
        let (c, hello) = Connector::start(&wrong, 1, "ring");
        let (a, challenge) = Acceptor::start(&key(K), 2, "ring", &hello).unwrap();
        // The connector cannot check the acceptor (it lacks the key) and forges a proof.
        assert_eq!(c.finish(&challenge).err(), Some(AuthError::BadMac));
        let forged = HandshakeMessage::RingAuthProof {
            proof: to_hex(&[0xab; TAG_LEN]),
        };
        assert_eq!(a.finish(&forged).err(), Some(AuthError::BadMac));
    }

    #[test]
    fn proofs_are_bound_to_ids_nonces_and_direction() {
        let k = key(K);
        let (c, hello) = Connector::start(&k, 1, "ring");
        let (_, challenge) = Acceptor::start(&k, 2, "ring", &hello).unwrap();
        // An acceptor proof relayed with another acceptor id fails.
        let HandshakeMessage::RingAuthChallenge { nonce, proof, .. } = challenge.clone() else {
            unreachable!()
        };
        let relabelled = HandshakeMessage::RingAuthChallenge {
            from: 9,
            nonce,
            proof: proof.clone(),
        };
        assert_eq!(c.finish(&relabelled).err(), Some(AuthError::BadMac));
        // The acceptor's proof reflected back as the connector's proof fails (labels differ).
        let (c, hello) = Connector::start(&k, 1, "ring");
        let (a, challenge) = Acceptor::start(&k, 2, "ring", &hello).unwrap();
        let HandshakeMessage::RingAuthChallenge { proof, .. } = challenge.clone() else {
            unreachable!()
        };
        assert_eq!(
            a.finish(&HandshakeMessage::RingAuthProof { proof }).err(),
            Some(AuthError::BadMac)
        );
        assert!(c.finish(&challenge).is_ok());
    }

    #[test]
    fn handshake_refuses_other_messages_and_clusters() {
        let k = key(K);
        let ring_frame = br#"{"from":3,"msg_type":"heartbeat","epoch":1,"nonce":1}"#;
        let parsed = HandshakeMessage::parse(ring_frame, "ring_auth_hello");
        assert!(matches!(parsed, Err(AuthError::Unexpected { .. })));
        let (_, hello) = Connector::start(&k, 1, "other");
        assert!(matches!(
            Acceptor::start(&k, 2, "ring", &hello),
            Err(AuthError::OtherCluster(_))
        ));
        let bad_nonce = HandshakeMessage::RingAuthHello {
            from: 1,
            cluster: "ring".into(),
            nonce: "zz".into(),
        };
        assert!(matches!(
            Acceptor::start(&k, 2, "ring", &bad_nonce),
            Err(AuthError::Malformed("nonce"))
        ));
    }

    fn datagram(k: &ClusterKey, now: u64) -> (Vec<u8>, DatagramAuth) {
        let auth = DatagramAuth::unsealed(now);
        let mut bytes = serde_json::to_vec(
            &serde_json::json!({"msg_type": "discovery_announce", "node_id": 9, "auth": auth}),
        )
        .unwrap();
        seal_datagram(k, &mut bytes).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let auth = serde_json::from_value(parsed["auth"].clone()).unwrap();
        (bytes, auth)
    }

    #[test]
    fn datagrams_verify_once_within_the_window() {
        let k = key(K);
        let mut guard = ReplayGuard::default();
        let (bytes, auth) = datagram(&k, 1000);
        assert_eq!(
            verify_datagram(&k, &bytes, Some(&auth), 1010, &mut guard),
            Ok(())
        );
        assert_eq!(
            verify_datagram(&k, &bytes, Some(&auth), 1010, &mut guard),
            Err(AuthError::Replayed)
        );
        let (bytes, auth) = datagram(&k, 1000);
        assert!(matches!(
            verify_datagram(
                &k,
                &bytes,
                Some(&auth),
                1000 + DATAGRAM_WINDOW_SECS + 1,
                &mut guard
            ),
            Err(AuthError::Stale { .. })
        ));
        assert_eq!(
            verify_datagram(&k, &bytes, None, 1000, &mut guard),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn tampered_or_foreign_datagrams_fail() {
        let k = key(K);
        let mut guard = ReplayGuard::default();
        let (bytes, auth) = datagram(&k, 50);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let forged = text.replace("\"node_id\":9", "\"node_id\":99");
        assert_eq!(
            verify_datagram(&k, forged.as_bytes(), Some(&auth), 50, &mut guard),
            Err(AuthError::BadMac)
        );
        let wrong = key("not the cluster's secret at all");
        let (bytes, auth) = datagram(&wrong, 50);
        assert_eq!(
            verify_datagram(&k, &bytes, Some(&auth), 50, &mut guard),
            Err(AuthError::BadMac)
        );
        // A timestamp moved forward breaks the MAC too: it is part of the signed bytes.
        let (bytes, auth) = datagram(&k, 50);
        let text = String::from_utf8(bytes).unwrap();
        let moved = text.replace("\"ts\":50", "\"ts\":51");
        let later = DatagramAuth { ts: 51, ..auth };
        assert_eq!(
            verify_datagram(&k, moved.as_bytes(), Some(&later), 50, &mut guard),
            Err(AuthError::BadMac)
        );
        assert!(matches!(
            verify_datagram(&k, b"{}", Some(&DatagramAuth::unsealed(50)), 50, &mut guard),
            Err(AuthError::Malformed("mac"))
        ));
    }

    #[test]
    fn the_replay_cache_is_bounded() {
        let mut guard = ReplayGuard::default();
        for i in 0..REPLAY_CACHE as u64 {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            guard.admit(nonce, 100, 100).unwrap();
        }
        assert_eq!(
            guard.admit([0xff; NONCE_LEN], 100, 100),
            Err(AuthError::CacheFull)
        );
        // Once the old nonces are outside the window they make room.
        assert_eq!(guard.admit([0xff; NONCE_LEN], 200, 200), Ok(()));
        assert_eq!(guard.seen.len(), 1);
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex::<4>("0001ABff", "x").unwrap(), bytes);
        assert!(from_hex::<4>("0001abf", "x").is_err());
        assert!(from_hex::<2>("g001", "x").is_err());
        assert!(from_hex::<2>("é1", "x").is_err());
    }
}
