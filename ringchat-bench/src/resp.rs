//! The part of RESP (the Redis serialization protocol, version 2) that the `--redis` target
//! needs: commands out as arrays of bulk strings, and replies in (simple strings, errors,
//! integers, bulk strings, arrays).
//!
//! Hand-written because the bench tool uses two commands (PUBLISH, SUBSCRIBE) and must not
//! be what limits the figures; a full client would add a connection manager and a command
//! API we do not use. The decoder is bounded: header lines (and error texts) of at most 512 bytes, bulk
//! strings of at most [`MAX_BULK`] bytes, arrays of at most [`MAX_ARRAY`] elements, nested
//! at most [`MAX_DEPTH`] deep; anything else is an error, never a panic or an allocation
//! the peer chose.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Longest bulk string accepted (the bench's messages are at most 4 KiB).
pub const MAX_BULK: usize = 1 << 20;
/// Most elements in one array (pub/sub pushes have three).
pub const MAX_ARRAY: usize = 64;
/// Deepest nesting of arrays.
pub const MAX_DEPTH: usize = 2;
const MAX_LINE: usize = 512;

/// One RESP value from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(Bytes),
    /// `-ERR ...`.
    Error(Bytes),
    /// `:42`.
    Integer(i64),
    /// `$3 abc`, or `$-1` (`None`).
    Bulk(Option<Bytes>),
    /// `*2 ...`, or `*-1` (`None`).
    Array(Option<Vec<Value>>),
}

/// A command as RESP: an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Bytes {
    let len: usize = args.iter().map(|a| a.len() + 16).sum();
    let mut out = BytesMut::with_capacity(len + 16);
    out.put_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.put_slice(format!("${}\r\n", a.len()).as_bytes());
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
    out.freeze()
}

/// Frames RESP replies in and pre-encoded commands out.
#[derive(Debug, Default, Clone, Copy)]
pub struct RespCodec;

impl Decoder for RespCodec {
    type Item = Value;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Value>> {
        match parse(src, 0, 0).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            Some((value, used)) => {
                src.advance(used);
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }
}

impl Encoder<Bytes> for RespCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// The header line starting at `at` (without CRLF) and where the next part starts, or
/// `None` when the line is not complete yet.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[at..];
    match rest.windows(2).take(MAX_LINE).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&rest[..end], at + end + 2))),
        None if rest.len() > MAX_LINE => Err(format!("RESP line longer than {MAX_LINE} bytes")),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            format!(
                "RESP number expected, got {:?}",
                String::from_utf8_lossy(text)
            )
        })
}

/// A length in `-1..=max`: `None` for -1 (a null value).
fn length(text: &[u8], max: usize, what: &str) -> Result<Option<usize>, String> {
    match number(text)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .map(Some)
            .ok_or_else(|| format!("RESP {what} length {n} out of range (0..={max})")),
    }
}

/// Parses one value starting at `at`; `None` until it is complete.
fn parse(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, String> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let value = match kind {
        b'+' => Value::Simple(Bytes::copy_from_slice(text)),
        b'-' => Value::Error(Bytes::copy_from_slice(text)),
        b':' => Value::Integer(number(text)?),
        b'$' => match length(text, MAX_BULK, "bulk")? {
            None => Value::Bulk(None),
            Some(n) => {
                if buf.len() < next + n + 2 {
                    return Ok(None);
                }
                if &buf[next + n..next + n + 2] != b"\r\n" {
                    return Err("RESP bulk string not followed by CRLF".into());
                }
                let data = Bytes::copy_from_slice(&buf[next..next + n]);
                return Ok(Some((Value::Bulk(Some(data)), next + n + 2)));
            }
        },
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(format!("RESP arrays nested deeper than {MAX_DEPTH}"));
            }
            match length(text, MAX_ARRAY, "array")? {
                None => Value::Array(None),
                Some(n) => {
                    let mut items = Vec::with_capacity(n);
                    let mut pos = next;
                    for _ in 0..n {
                        let Some((v, after)) = parse(buf, pos, depth + 1)? else {
                            return Ok(None);
                        };
                        items.push(v);
                        pos = after;
                    }
                    return Ok(Some((Value::Array(Some(items)), pos)));
                }
            }
        }
        other => return Err(format!("RESP type byte {other:#04x} unknown")),
    };
    Ok(Some((value, next)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> io::Result<Vec<Value>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(v) = RespCodec.decode(&mut buf)? {
            out.push(v);
        }
        Ok(out)
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            &command(&[b"PUBLISH", b"ch", b"hi"])[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
    }

    #[test]
    fn replies_and_pushes_decode() {
        let got = decode_all(
            b"+OK\r\n-ERR no\r\n:3\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\na\r\nbc\r\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Value::Simple(Bytes::from_static(b"OK")),
                Value::Error(Bytes::from_static(b"ERR no")),
                Value::Integer(3),
                Value::Bulk(None),
                Value::Array(Some(vec![bulk("message"), bulk("ch"), bulk("a\r\nbc")])),
            ]
        );
    }

    #[test]
    fn partial_input_waits_for_more() {
        let whole = b"*2\r\n$3\r\nabc\r\n:12\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(RespCodec.decode(&mut buf).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
        assert_eq!(decode_all(whole).unwrap().len(), 1);
    }

    #[test]
    fn hostile_input_is_an_error() {
        for bad in [
            &b"$99999999\r\n"[..],
            b"*1000\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"?x\r\n",
            b":12a\r\n",
            b"$2\r\nabcd",
            &[b'+'; 600][..],
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
