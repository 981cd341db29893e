//! The in-flight byte budget: how much payload the process holds at once, across the proxy's
//! calls and the codec server's requests, so that a burst waits or is refused instead of
//! growing memory without bound.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counted in KiB, so that a budget of many GiB fits a semaphore's permits.
#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

/// Bytes held until dropped.
#[derive(Debug)]
pub struct Held {
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
#[error("{wanted} bytes do not fit the in-flight budget of {budget} bytes now")]
pub struct Exhausted {
    pub wanted: usize,
    pub budget: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget {
            permits: Arc::new(Semaphore::new(kib(bytes) as usize)),
            bytes,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `len` bytes if they fit now.
    pub fn try_hold(&self, len: usize) -> Result<Held, Exhausted> {
        match kib(len) {
            0 => Ok(Held { _permit: None }),
            needed => self
                .permits
                .clone()
                .try_acquire_many_owned(needed)
                .map(|p| Held { _permit: Some(p) })
                .map_err(|_| self.exhausted(len)),
        }
    }

    /// Holds `len` bytes, waiting for them to be released; more than the whole budget never fits.
    pub async fn hold(&self, len: usize) -> Result<Held, Exhausted> {
        match kib(len) {
            0 => Ok(Held { _permit: None }),
            _ if len > self.bytes => Err(self.exhausted(len)),
            needed => self
                .permits
                .clone()
                .acquire_many_owned(needed)
                .await
                .map(|p| Held { _permit: Some(p) })
                .map_err(|_| self.exhausted(len)),
        }
    }

    fn exhausted(&self, wanted: usize) -> Exhausted {
        Exhausted {
            wanted,
            budget: self.bytes,
        }
    }
}

fn kib(len: usize) -> u32 {
    u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX)
}
