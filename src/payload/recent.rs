//! The objects this proxy wrote lately, and when. Content addressing makes every hop of a
//! large value name the same object again; writing it again only refreshes its age for the
//! bucket's expiry rule. That refresh matters only once the object is older than the margin
//! the TTL leaves over the longest run plus retention, so within `refresh_after` of its last
//! write a new reference takes the object as it is.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Enough for every object a busy proxy writes in an hour of 1 MiB payloads at 15 MiB/s; an
/// object pushed out is simply written again.
const ENTRIES: usize = 65_536;

pub struct RecentWrites {
    refresh_after: Duration,
    /// Object name -> when its last write began (the store's timestamp is no earlier).
    written: Mutex<LruCache<String, Instant>>,
}

impl RecentWrites {
    /// Zero `refresh_after` writes every time.
    pub fn new(refresh_after: Duration) -> Self {
        let entries = NonZeroUsize::new(ENTRIES).unwrap_or(NonZeroUsize::MIN);
        RecentWrites {
            refresh_after,
            written: Mutex::new(LruCache::new(entries)),
        }
    }

    /// Whether this proxy began writing `object` less than `refresh_after` ago.
    pub fn fresh(&self, object: &str, now: Instant) -> bool {
        let mut written = self.lock();
        written
            .get(object)
            .is_some_and(|began| now.saturating_duration_since(*began) < self.refresh_after)
    }

    /// Records a write of `object` that began at `began` and succeeded.
    pub fn wrote(&self, object: String, began: Instant) {
        if !self.refresh_after.is_zero() {
            self.lock().put(object, began);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Instant>> {
        // Entries are timestamps: a panic elsewhere cannot leave one that shortens a life.
        self.written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_fresh_only_within_refresh_after_of_its_last_write() {
        let recent = RecentWrites::new(Duration::from_secs(60));
        let began = Instant::now();
        assert!(!recent.fresh("a", began), "never written here");
        recent.wrote("a".into(), began);
        assert!(recent.fresh("a", began + Duration::from_secs(59)));
        assert!(
            !recent.fresh("a", began + Duration::from_secs(60)),
            "old: write it again"
        );
        assert!(!recent.fresh("b", began));
    }

    #[test]
    fn zero_refresh_after_writes_every_time() {
        let recent = RecentWrites::new(Duration::ZERO);
        let began = Instant::now();
        recent.wrote("a".into(), began);
        assert!(!recent.fresh("a", began));
    }
}
