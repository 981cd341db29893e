//! gRPC length-prefixed messages and per-message compression.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::read::GzDecoder;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("gRPC body is not one length-prefixed message ({0} bytes)")]
    NotUnary(usize),
    #[error("compressed message but unsupported grpc-encoding {0:?}")]
    Encoding(String),
    #[error("corrupt gzip message: {0}")]
    Gzip(String),
    #[error("message exceeds {limit} bytes once decompressed")]
    TooLarge { limit: usize },
}

/// The single message of a unary body, decompressed; `encoding` is the `grpc-encoding` header.
pub fn decode(body: Bytes, encoding: Option<&str>, limit: usize) -> Result<Bytes, FrameError> {
    if body.len() < 5 {
        return Err(FrameError::NotUnary(body.len()));
    }
    let compressed = body[0] == 1;
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body[0] > 1 || body.len() != 5 + len {
        return Err(FrameError::NotUnary(body.len()));
    }
    let payload = body.slice(5..);
    match (compressed, encoding) {
        (false, _) if len > limit => Err(FrameError::TooLarge { limit }),
        (false, _) => Ok(payload),
        (true, Some("gzip")) => gunzip(&payload, limit),
        (true, other) => Err(FrameError::Encoding(other.unwrap_or("identity").to_owned())),
    }
}

/// Frames a message given as chunks, uncompressed: the chunks follow the 5-byte prefix as
/// they are, so a large message is never copied into a frame. A rewritten answer goes back
/// uncompressed even to a gzip client (per-message flag 0, which every gRPC client reads):
/// on the sidecar's loopback hop, compressing 10 MiB again cost more than storing it.
pub fn encode(chunks: Vec<Bytes>) -> Result<Vec<Bytes>, FrameError> {
    let prefix = prefix(chunks.iter().map(Bytes::len).sum())?;
    Ok(std::iter::once(prefix).chain(chunks).collect())
}

/// The 5-byte prefix of an uncompressed message of `len` bytes.
pub fn prefix(len: usize) -> Result<Bytes, FrameError> {
    let len = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        limit: u32::MAX as usize,
    })?;
    let mut prefix = BytesMut::with_capacity(5);
    prefix.put_u8(0);
    prefix.put_u32(len);
    Ok(prefix.freeze())
}

/// Collects a body's data chunks into one buffer. Until told the declared length is paid
/// for ([`Collector::expect_declared`]), the buffer grows with the bytes that arrived, not
/// with what the prefix claims: a prefix is the client's word, and one claiming 4 GiB must
/// not reserve 4 GiB. Once it is paid for, a large message is held once, not once as chunks
/// and again as they are joined.
#[derive(Default)]
pub struct Collector {
    /// A body that arrives as one chunk is kept as it is, with no copy.
    first: Option<Bytes>,
    joined: BytesMut,
    len: usize,
    /// Room to make at the first join: the declared length, once paid for.
    room: usize,
}

impl Collector {
    pub fn push(&mut self, chunk: Bytes, limit: usize) -> Result<(), FrameError> {
        self.len += chunk.len();
        if self.len > limit {
            return Err(FrameError::TooLarge { limit });
        }
        if self.first.is_none() && self.joined.is_empty() {
            if declared_len(&chunk).is_some_and(|n| n > limit) {
                return Err(FrameError::TooLarge { limit });
            }
            self.first = Some(chunk);
            return Ok(());
        }
        if let Some(first) = self.first.take() {
            self.joined.reserve(self.room.max(first.len() + chunk.len()));
            self.joined.extend_from_slice(&first);
        }
        self.joined.extend_from_slice(&chunk);
        Ok(())
    }

    /// The whole frame's length, once its prefix has arrived.
    pub fn declared(&self) -> Option<usize> {
        declared_len(self.first.as_deref().unwrap_or(&self.joined))
    }

    /// The declared length is paid for (charged to the in-flight budget): make room for all of
    /// it at once.
    pub fn expect_declared(&mut self) {
        self.room = self.declared().unwrap_or(0);
    }

    pub fn finish(self) -> Bytes {
        self.first.unwrap_or_else(|| self.joined.freeze())
    }
}

/// The whole frame's length, from the prefix at the start of a body.
fn declared_len(start: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = start.get(1..5)?.try_into().ok()?;
    Some(5 + u32::from_be_bytes(prefix) as usize)
}

fn gunzip(data: &[u8], limit: usize) -> Result<Bytes, FrameError> {
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    GzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FrameError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(FrameError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(chunks: Vec<Bytes>) -> Bytes {
        Bytes::from(chunks.concat())
    }

    /// `message` gzip-compressed and framed with the compressed flag, as a gzip client sends it.
    fn gzipped(message: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, message).unwrap();
        let mut framed = joined(encode(vec![encoder.finish().unwrap().into()]).unwrap()).to_vec();
        framed[0] = 1;
        Bytes::from(framed)
    }

    #[test]
    fn plain_and_gzip_messages_decode() {
        let plain = joined(encode(vec![Bytes::from_static(b"hel"), Bytes::from_static(b"lo")]).unwrap());
        assert_eq!(decode(plain, Some("gzip"), 100).unwrap(), &b"hello"[..]);
        assert_eq!(
            decode(gzipped(b"hello"), Some("gzip"), 100).unwrap(),
            &b"hello"[..]
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            decode(Bytes::from_static(b"\0\0\0"), None, 10).unwrap_err(),
            FrameError::NotUnary(3)
        );
        assert!(decode(Bytes::from_static(b"\0\0\0\0\x09abc"), None, 10).is_err());
        let framed = gzipped(b"hello");
        assert!(matches!(
            decode(framed.clone(), Some("snappy"), 10),
            Err(FrameError::Encoding(_))
        ));
        assert_eq!(
            decode(framed, Some("gzip"), 4).unwrap_err(),
            FrameError::TooLarge { limit: 4 }
        );
    }

    #[test]
    fn collector_joins_chunks_and_refuses_oversized_bodies() {
        let framed = joined(encode(vec![Bytes::from(vec![7; 100])]).unwrap());
        let mut collector = Collector::default();
        for chunk in framed.chunks(7) {
            collector.push(Bytes::copy_from_slice(chunk), 1000).unwrap();
        }
        assert_eq!(collector.finish(), framed);
        // The prefix alone tells that the message will not fit.
        let mut collector = Collector::default();
        let err = collector.push(framed.slice(..5), 50).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { limit: 50 });
    }

    #[test]
    fn a_declared_length_reserves_nothing_until_it_is_paid_for() {
        let claims_a_gibibyte = Bytes::from_static(&[0, 0x40, 0, 0, 0, 1, 2, 3]);
        let mut collector = Collector::default();
        collector.push(claims_a_gibibyte.clone(), usize::MAX).unwrap();
        collector.push(Bytes::from_static(&[4]), usize::MAX).unwrap();
        assert_eq!(collector.declared(), Some(5 + (1 << 30)));
        assert!(collector.joined.capacity() < 1 << 20);
        let mut paid = Collector::default();
        paid.push(claims_a_gibibyte.slice(..6), usize::MAX).unwrap();
        paid.expect_declared();
        paid.push(claims_a_gibibyte.slice(6..), usize::MAX).unwrap();
        assert!(paid.joined.capacity() >= 5 + (1 << 30));
    }
}
