//! The verified-fetch cache: payload bytes that already passed the integrity check,
//! bounded by entries and by bytes. Workers re-read the whole history on every sticky
//! cache miss, so the same objects are fetched again and again.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

/// Identifies verified bytes: the same object name with another hash or size is another entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub driver: &'static str,
    pub object: String,
    pub sha256: String,
    pub size: Option<u64>,
}

pub struct VerifiedCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<CacheKey, Bytes>,
    bytes: usize,
}

impl VerifiedCache {
    /// A cache of at most `max_entries` entries and `max_bytes` bytes; zero of either disables it.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        let cap = NonZeroUsize::new(max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        let max_bytes = if max_entries == 0 { 0 } else { max_bytes };
        VerifiedCache {
            max_bytes,
            inner: Mutex::new(Inner {
                entries: LruCache::new(cap),
                bytes: 0,
            }),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.lock().entries.get(key).cloned()
    }

    /// Whether a value of `len` bytes would be kept.
    pub fn takes(&self, len: u64) -> bool {
        len <= self.max_bytes as u64
    }

    /// Caches bytes the caller has verified against `key`.
    pub fn insert(&self, key: CacheKey, verified: Bytes) {
        if !self.takes(verified.len() as u64) {
            return;
        }
        let mut inner = self.lock();
        inner.bytes += verified.len();
        if let Some((_, evicted)) = inner.entries.push(key, verified) {
            inner.bytes -= evicted.len();
        }
        while inner.bytes > self.max_bytes {
            match inner.entries.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way that
        // matters for correctness (entries are verified bytes), so recover the guard.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey {
            driver: "d",
            object: format!("o{n}"),
            sha256: "h".into(),
            size: Some(4),
        }
    }

    #[test]
    fn bounded_by_bytes_and_entries() {
        let cache = VerifiedCache::new(3, 8);
        cache.insert(key(1), Bytes::from_static(b"aaaa"));
        cache.insert(key(2), Bytes::from_static(b"bbbb"));
        cache.insert(key(3), Bytes::from_static(b"cccc"));
        assert!(cache.get(&key(1)).is_none(), "over 8 bytes: the oldest goes");
        assert_eq!(cache.get(&key(3)).as_deref(), Some(&b"cccc"[..]));
        let cache = VerifiedCache::new(1, 100);
        cache.insert(key(1), Bytes::from_static(b"aaaa"));
        cache.insert(key(2), Bytes::from_static(b"bbbb"));
        assert!(cache.get(&key(1)).is_none(), "over 1 entry: the oldest goes");
    }

    #[test]
    fn oversized_values_and_disabled_cache_store_nothing() {
        let cache = VerifiedCache::new(10, 3);
        cache.insert(key(1), Bytes::from_static(b"aaaa"));
        assert!(cache.get(&key(1)).is_none());
        let cache = VerifiedCache::new(0, 100);
        cache.insert(key(1), Bytes::from_static(b"a"));
        assert!(cache.get(&key(1)).is_none());
    }
}
