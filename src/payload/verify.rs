//! The integrity check of a fetched object: its size against what the reference promises,
//! checked before the body is read, and its SHA-256, computed while the body arrives.

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use crate::driver::Reading;
use crate::payload::transform::TransformError;

/// The most a fetch allocates up front when only the store vouches for the object's size.
const UNTRUSTED_CAPACITY: u64 = 16 << 20;

/// One object's body being checked, chunk by chunk.
pub struct Verifying<'a> {
    object: &'a str,
    expected_hash: &'a str,
    /// The size announced: the reference's, which the store's must equal, or the store's.
    size: u64,
    seen: u64,
    hasher: Sha256,
}

impl<'a> Verifying<'a> {
    /// Refuses at once an object whose stored size differs from the reference's.
    pub fn new(
        object: &'a str,
        expected_hash: &'a str,
        expected_size: Option<u64>,
        stored_size: u64,
    ) -> Result<Self, TransformError> {
        if let Some(expected) = expected_size.filter(|expected| *expected != stored_size) {
            return Err(size_mismatch(object, expected, stored_size));
        }
        Ok(Verifying {
            object,
            expected_hash,
            size: stored_size,
            seen: 0,
            hasher: Sha256::new(),
        })
    }

    /// Takes the next chunk; a body longer than announced is refused before it is kept.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), TransformError> {
        self.seen += chunk.len() as u64;
        if self.seen > self.size {
            return Err(size_mismatch(self.object, self.size, self.seen));
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// Passes when the whole body arrived and hashes to what the reference claims.
    pub fn finish(self) -> Result<(), TransformError> {
        if self.seen != self.size {
            return Err(size_mismatch(self.object, self.size, self.seen));
        }
        let actual = hex::encode(self.hasher.finalize());
        if actual != self.expected_hash {
            return Err(TransformError::HashMismatch {
                object: self.object.to_owned(),
                expected: self.expected_hash.to_owned(),
                actual,
            });
        }
        Ok(())
    }
}

/// The whole body of an object, returned only when it passes the check.
pub async fn read_whole(
    reading: Reading,
    object: &str,
    expected_hash: &str,
    expected_size: Option<u64>,
) -> Result<Bytes, TransformError> {
    let mut verifying = Verifying::new(object, expected_hash, expected_size, reading.size)?;
    // A size from the reference is one this proxy agreed to hold; one only the store
    // reports is trusted no further than a first allocation.
    let capacity = expected_size.unwrap_or(reading.size.min(UNTRUSTED_CAPACITY));
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut chunks = reading.chunks;
    while let Some(chunk) = chunks.try_next().await? {
        verifying.update(&chunk)?;
        body.extend_from_slice(&chunk);
    }
    verifying.finish()?;
    Ok(body.freeze())
}

fn size_mismatch(object: &str, expected: u64, actual: u64) -> TransformError {
    TransformError::SizeMismatch {
        object: object.to_owned(),
        expected,
        actual,
    }
}
