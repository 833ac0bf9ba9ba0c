//! Fuzz bodies for the wire formats of `ringchat-proto`: the frame decoder, the client
//! request parser, ring messages and discovery datagrams.
//!
//! Each body takes whatever bytes it is given and panics only when the code under test
//! breaks one of its own promises (never on the input itself). The `cargo fuzz` targets in
//! `fuzz/fuzz_targets/` call these, and `ringchat-proto/tests/fuzz_bodies.rs` includes this
//! file and runs the same bodies under proptest in the normal test run, so they are always
//! compiled and checked.

use bytes::BytesMut;
use ringchat_proto::ErrorCode;
use ringchat_proto::client::{ClientLimits, ClientRequest, parse_client_request};
use ringchat_proto::discovery::{ANNOUNCE, DiscoveryMessage, MAX_DATAGRAM, RESPONSE};
use ringchat_proto::frame::{FrameCodec, FrameError, HEADER_LEN};
use ringchat_proto::limits::{MAX_CLIENT_ID_CHARS, MAX_MESSAGE_ID_CHARS, MAX_USERNAME_CHARS};
use ringchat_proto::peer::PeerMessage;
use tokio_util::codec::{Decoder, Encoder};

/// How a decoder run ended: the frames it yielded, then the error that stopped it, if any.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Vec<u8>>,
    error: Option<&'static str>,
}

fn error_kind(e: &FrameError) -> &'static str {
    match e {
        FrameError::Empty => "empty",
        FrameError::TooLarge { .. } => "too large",
        FrameError::Io(_) => "io",
    }
}

/// The frame format read straight off a complete byte string: the reference the
/// incremental decoder must agree with.
fn reference_decode(max_frame: usize, stream: &[u8]) -> Decoded {
    let mut frames = Vec::new();
    let mut rest = stream;
    while rest.len() >= HEADER_LEN {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let error = match len {
            0 => Some("empty"),
            n if n > max_frame => Some("too large"),
            _ => None,
        };
        if error.is_some() {
            return Decoded { frames, error };
        }
        if rest.len() < HEADER_LEN + len {
            break;
        }
        frames.push(rest[HEADER_LEN..HEADER_LEN + len].to_vec());
        rest = &rest[HEADER_LEN + len..];
    }
    Decoded {
        frames,
        error: None,
    }
}

/// Feeds `stream` to a [`FrameCodec`] of `max_frame` in reads of the sizes `cuts` names
/// (cycled; each taken as 1 + its value modulo 4096), as a socket would deliver it.
///
/// Checks that the decoder never panics, never holds more than one incomplete frame
/// (`max_frame + 4` bytes) after it has said "need more", yields exactly the frames and
/// the error that reading the whole string at once gives, and that each frame re-encodes
/// to the bytes it came from. Returns the frames.
pub fn frame_decoder(max_frame: usize, stream: &[u8], cuts: &[u16]) -> Vec<Vec<u8>> {
    let max_frame = max_frame.max(1);
    let mut codec = FrameCodec::new(max_frame);
    let mut buf = BytesMut::new();
    let mut got = Decoded {
        frames: Vec::new(),
        error: None,
    };
    let mut pos = 0;
    let mut i = 0;
    'feed: while pos < stream.len() {
        let cut = cuts
            .get(i % cuts.len().max(1))
            .map_or(stream.len(), |c| 1 + usize::from(*c) % 4096);
        let step = cut.min(stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + step]);
        pos += step;
        i += 1;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(
                        !frame.is_empty() && frame.len() <= max_frame,
                        "a frame of {} bytes passed the limit of {max_frame}",
                        frame.len()
                    );
                    got.frames.push(frame.to_vec());
                }
                Ok(None) => {
                    assert!(
                        buf.len() < HEADER_LEN + max_frame,
                        "the decoder holds {} bytes waiting for a frame of at most {max_frame}",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    got.error = Some(error_kind(&e));
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(
        got,
        reference_decode(max_frame, stream),
        "split reads changed the frames"
    );
    let mut again = BytesMut::new();
    for f in &got.frames {
        codec
            .encode(f.as_slice(), &mut again)
            .expect("a decoded frame is within the limit");
    }
    assert_eq!(
        &again[..],
        &stream[..again.len()],
        "decoded frames do not re-encode to their bytes"
    );
    got.frames
}

/// [`frame_decoder`] with its parameters taken from raw fuzz input: two bytes of limit,
/// one byte counting the cut sizes that follow (one byte each), then the stream.
pub fn frame_decoder_bytes(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let max_frame = 1 + usize::from(u16::from_be_bytes([data[0], data[1]])) % 1024;
    let n_cuts = usize::from(data[2]).min(data.len() - 3);
    let cuts: Vec<u16> = data[3..3 + n_cuts].iter().map(|b| u16::from(*b)).collect();
    frame_decoder(max_frame, &data[3 + n_cuts..], &cuts);
}

/// Parses `payload` as a client request with a content limit of `max_content_chars`.
///
/// Checks that the parser answers `Ok` or a typed error (the code PROTOCOL.md gives for
/// the kind of damage), never panics, and that what it accepts is within the limits.
pub fn client_request(payload: &[u8], max_content_chars: usize) {
    let limits = ClientLimits { max_content_chars };
    let within = |s: &str, max: usize| (1..=max).contains(&s.chars().count());
    match parse_client_request(payload, &limits) {
        Ok(ClientRequest::Connect {
            client_id,
            username,
            ..
        }) => {
            assert!(within(&client_id, MAX_CLIENT_ID_CHARS));
            assert!(within(&username, MAX_USERNAME_CHARS));
        }
        Ok(ClientRequest::Message(m)) => {
            assert!(within(&m.client_id, MAX_CLIENT_ID_CHARS));
            assert!(within(&m.username, MAX_USERNAME_CHARS));
            assert!(within(&m.message_id, MAX_MESSAGE_ID_CHARS));
            assert!(within(&m.content, max_content_chars));
        }
        Ok(ClientRequest::History { limit, .. }) => {
            assert!((1..=ringchat_proto::limits::MAX_HISTORY_LIMIT).contains(&limit));
        }
        Ok(ClientRequest::Ping | ClientRequest::Disconnect) => {}
        Err(e) => {
            let utf8 = std::str::from_utf8(payload).is_ok();
            let object = utf8
                && serde_json::from_slice::<serde_json::Value>(payload)
                    .is_ok_and(|v| v.is_object());
            match e.code {
                ErrorCode::BadFrame => assert!(!utf8, "valid UTF-8 refused as a bad frame"),
                ErrorCode::BadJson => assert!(utf8 && !object, "a JSON object refused as bad JSON"),
                ErrorCode::UnknownType | ErrorCode::BadField | ErrorCode::ContentTooLong => {
                    assert!(object, "{:?} for something that is no JSON object", e.code)
                }
                other => panic!("the parser answered {other:?}, which is not a parse error"),
            }
        }
    }
}

/// Parses `payload` as a ring frame. Checks that an accepted message survives its own
/// encoding unchanged (the daemon forwards and re-encodes what it reads).
pub fn peer_message(payload: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<PeerMessage>(payload) else {
        return;
    };
    let _ = msg.body.kind();
    let wire = serde_json::to_vec(&msg).expect("a parsed ring message encodes");
    let back: PeerMessage = serde_json::from_slice(&wire).expect("an encoded ring message parses");
    assert_same(&back, &msg, "a ring message changed through its encoding");
}

/// Parses `datagram` as discovery. Checks the size limit and the `msg_type` filter, that
/// the sender's id is derived without panicking, and that what is accepted round-trips.
pub fn discovery_datagram(datagram: &[u8]) {
    let Some(msg) = DiscoveryMessage::parse(datagram) else {
        return;
    };
    assert!(
        datagram.len() <= MAX_DATAGRAM,
        "an oversized datagram was read"
    );
    assert!(msg.msg_type == ANNOUNCE || msg.msg_type == RESPONSE);
    let _ = (msg.server_id(), msg.is_client_query());
    let wire = serde_json::to_vec(&msg).expect("a parsed datagram encodes");
    if wire.len() > MAX_DATAGRAM {
        // Defaults written out can make a datagram near the limit longer than it came.
        return;
    }
    let back = DiscoveryMessage::parse(&wire).expect("an encoded datagram parses");
    assert_same(
        &back,
        &msg,
        "a discovery datagram changed through its encoding",
    );
}

/// Asserts that `a` and `b` encode to the same JSON, floats within a relative 1e-12:
/// serde_json's fast float parsing may move a timestamp by one unit in the last place.
fn assert_same<T: serde::Serialize>(a: &T, b: &T, what: &str) {
    let (a, b) = (
        serde_json::to_value(a).expect("encodes"),
        serde_json::to_value(b).expect("encodes"),
    );
    assert!(same_json(&a, &b), "{what}: {a} became {b}");
}

fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
