//! The length-prefixed frame codec: a 4-byte big-endian length `N`, then exactly `N` bytes.
//!
//! The decoder checks `N` before it reserves anything, so a hostile length never makes us
//! allocate; it yields whole payloads only, however the bytes were split into segments.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Why the byte stream can no longer be read as frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A zero length prefix: no frame may be empty.
    #[error("frame length is 0")]
    Empty,
    /// The length prefix exceeds the limit of this connection.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The connection's limit.
        max: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decoder and encoder for one connection, with that connection's frame limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The limit this codec enforces.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < HEADER_LEN + len {
            // Nothing is reserved for the announced length: memory grows only with the
            // bytes that really arrive, so a peer cannot make us allocate by announcing.
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        check_len(payload.len(), self.max_frame)?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
        Ok(())
    }
}

/// Pre-framed bytes (from [`frame_json`]) are written as they are: a broadcast is encoded
/// once and the same buffer goes to every client.
impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, framed: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.extend_from_slice(&framed);
        Ok(())
    }
}

fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    match len {
        0 => Err(FrameError::Empty),
        n if n > max => Err(FrameError::TooLarge { len: n, max }),
        _ => Ok(()),
    }
}

/// Serializes `value` as JSON and prefixes the length: a whole frame, ready to share.
pub fn frame_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    // A broadcast of a 100-character text is about 330 bytes: room for it without a regrowth.
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(&[0; HEADER_LEN]);
    serde_json::to_writer(&mut buf, value)?;
    let len = (buf.len() - HEADER_LEN) as u32;
    buf[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(buf))
}

/// Length of the payload of a frame built by [`frame_json`].
pub fn payload_len(framed: &Bytes) -> usize {
    framed.len().saturating_sub(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut codec = FrameCodec::new(1 << 20);
        let mut out = BytesMut::new();
        for p in payloads {
            codec.encode(p.as_slice(), &mut out).unwrap();
        }
        out.to_vec()
    }

    #[test]
    fn zero_length_is_refused() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(matches!(
            FrameCodec::new(10).decode(&mut buf),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        let err = FrameCodec::new(65_536).decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 0xffff_ffff,
                max: 65_536
            }
        ));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn limit_is_inclusive() {
        let mut codec = FrameCodec::new(3);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, b'a', b'b', b'c'][..]);
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        let mut out = BytesMut::new();
        assert!(codec.encode(&b"abcd"[..], &mut out).is_err());
    }

    #[test]
    fn frame_json_prefixes_the_length() {
        let framed = frame_json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(&framed[..4], &[0, 0, 0, 7]);
        assert_eq!(&framed[4..], br#"{"a":1}"#);
        assert_eq!(payload_len(&framed), 7);
    }

    proptest! {
        /// Frames come out whole and in order however the stream is split into reads.
        #[test]
        fn split_reads_yield_the_same_frames(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let wire = encode_all(&payloads);
            let mut codec = FrameCodec::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < wire.len() {
                let step = cuts[i % cuts.len()].min(wire.len() - pos);
                buf.extend_from_slice(&wire[pos..pos + step]);
                pos += step;
                i += 1;
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    got.push(frame.to_vec());
                }
            }
            prop_assert_eq!(got, payloads);
        }

        /// Arbitrary bytes never panic the decoder and never yield an over-limit frame.
        #[test]
        fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = FrameCodec::new(64);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                prop_assert!(!frame.is_empty() && frame.len() <= 64);
            }
        }
    }
}
