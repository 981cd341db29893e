//! What each payload becomes: on the way to the server, payloads at or above the
//! threshold are stored and replaced by references; on the way back, references this
//! proxy can resolve are replaced by the verified original. Stores and fetches of one
//! message run in parallel, bounded.

use std::ops::Range;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use sha2::{Digest, Sha256};

use crate::driver::{Driver, StoreError};
use crate::metrics::{Metrics, OpLabel};
use crate::payload::cache::{CacheKey, VerifiedCache};
use crate::payload::recent::RecentWrites;
use crate::payload::reference::{
    self, CLAIM_HASH_ALGORITHM, CLAIM_HASH_VALUE, Reference, ReferenceError, SHA256, Target,
};
use crate::payload::rewrite::{self, Replacement, Spliced};
use crate::payload::schema::{Node, Schema};
use crate::payload::verify::{self, Verifying};
use crate::payload::wire::WireError;

/// A driver and the smallest payload it takes: the tier with the largest `min_bytes`
/// not above a payload's size stores it.
#[derive(Debug, Clone)]
pub struct Tier {
    pub driver: Driver,
    pub min_bytes: u64,
    /// Whether references may name `{prefix}v0/d/sha256/{hex}`, the key the SDKs write for no
    /// namespace: any namespace that knows an object's hash could read it, so only a store
    /// (or prefix) that serves one namespace should accept them.
    pub accept_unscoped_keys: bool,
}

impl Tier {
    /// The tier a driver's configuration describes, its store opened.
    pub fn open(config: &crate::config::DriverConfig) -> Result<Tier, crate::driver::DriverError> {
        Ok(Tier {
            driver: Driver::open(&config.url, &config.prefix, &config.options)?,
            min_bytes: config.min_bytes,
            accept_unscoped_keys: config.accept_unscoped_keys,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Payloads whose serialized size is at least this many bytes are offloaded.
    pub threshold_bytes: u64,
    /// Store or fetch operations in flight for one message.
    pub parallelism: usize,
    /// An object this proxy wrote less than this long ago is not written again for a new
    /// reference (see `recent`); zero writes every time.
    pub refresh_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error("integrity check failed for {object}: expected sha256 {expected}, got {actual}")]
    HashMismatch {
        object: String,
        expected: String,
        actual: String,
    },
    #[error("integrity check failed for {object}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        object: String,
        expected: u64,
        actual: u64,
    },
    #[error("reference to {object} refused: {reason}")]
    Denied { object: String, reason: String },
    #[error("cannot encode reference: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A reference whose scope and claims were checked for one call: where its object is and
/// what the object must be.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    tier: usize,
    key: String,
    /// The object's name in messages.
    pub object: String,
    sha256: String,
    size: Option<u64>,
}

impl Checked {
    fn cache_key(&self, driver: &Driver) -> CacheKey {
        CacheKey {
            driver: driver.name(),
            object: self.object.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// A reference that one of the transformer's stores owns.
#[derive(Debug, Clone)]
pub struct Owned {
    pub reference: Reference,
    tier: usize,
}

/// The transformer of the running configuration, swapped whole when it is reloaded; a call
/// keeps the one it began with.
pub struct Current(RwLock<Arc<Transformer>>);

impl Current {
    pub fn new(transformer: Arc<Transformer>) -> Self {
        Current(RwLock::new(transformer))
    }

    pub fn get(&self) -> Arc<Transformer> {
        match self.0.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, transformer: Arc<Transformer>) {
        match self.0.write() {
            Ok(mut current) => *current = transformer,
            Err(poisoned) => *poisoned.into_inner() = transformer,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("at least one store is required")]
pub struct NoStore;

pub struct Transformer {
    schema: Arc<Schema>,
    tiers: Vec<Tier>,
    settings: Settings,
    cache: VerifiedCache,
    recent: RecentWrites,
    metrics: Arc<Metrics>,
}

impl Transformer {
    pub fn new(
        schema: Arc<Schema>,
        mut tiers: Vec<Tier>,
        settings: Settings,
        cache: VerifiedCache,
        metrics: Arc<Metrics>,
    ) -> Result<Self, NoStore> {
        if tiers.is_empty() {
            return Err(NoStore);
        }
        tiers.sort_by_key(|t| t.min_bytes);
        Ok(Transformer {
            schema,
            tiers,
            recent: RecentWrites::new(settings.refresh_after),
            settings,
            cache,
            metrics,
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Offloads the large payloads of a message bound for the server.
    /// `None` means nothing changed: forward the original bytes.
    pub async fn offload(
        &self,
        root: Node,
        msg: &Bytes,
        target: &Target,
    ) -> Result<Option<Spliced>, TransformError> {
        let threshold = self.settings.threshold_bytes;
        let candidates: Vec<Range<usize>> = rewrite::payload_ranges(&self.schema, root, msg)?
            .into_iter()
            .filter(|r| r.len() as u64 >= threshold)
            // With a low threshold, references an SDK client already wrote must stay as they are.
            .filter(|r| !matches!(Reference::from_payload(&msg[r.clone()]), Ok(Some(_))))
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let replacements: Vec<Replacement> = stream::iter(candidates)
            .map(|range| self.store_one(msg, range, target))
            .buffered(self.parallelism())
            .try_collect()
            .await?;
        Ok(Some(rewrite::splice(&self.schema, root, msg, &replacements)?))
    }

    /// Puts back every payload this proxy can resolve in a message bound for a worker or client.
    pub async fn rehydrate(
        &self,
        root: Node,
        msg: &Bytes,
        namespace: &str,
    ) -> Result<Option<Spliced>, TransformError> {
        let found = self.owned_references(root, msg)?;
        self.rehydrate_found(root, msg, namespace, found).await
    }

    /// Puts back the payloads `found` in `msg` (see [`Transformer::owned_references`]).
    pub(crate) async fn rehydrate_found(
        &self,
        root: Node,
        msg: &Bytes,
        namespace: &str,
        found: Vec<(Range<usize>, Owned)>,
    ) -> Result<Option<Spliced>, TransformError> {
        if found.is_empty() {
            return Ok(None);
        }
        let replacements: Vec<Replacement> = stream::iter(found)
            .map(|(range, owned)| async move {
                let bytes = self.fetch(&owned, namespace).await?;
                Ok::<_, TransformError>(Replacement { range, bytes })
            })
            .buffered(self.parallelism())
            .try_collect()
            .await?;
        Ok(Some(rewrite::splice(&self.schema, root, msg, &replacements)?))
    }

    /// The payloads of a message that are references one of these stores can resolve.
    pub(crate) fn owned_references(
        &self,
        root: Node,
        msg: &[u8],
    ) -> Result<Vec<(Range<usize>, Owned)>, TransformError> {
        let mut found = Vec::new();
        for range in rewrite::payload_ranges(&self.schema, root, msg)? {
            if let Some(owned) = self.owned_reference(&msg[range.clone()])? {
                found.push((range, owned));
            }
        }
        Ok(found)
    }

    /// Store or fetch operations in flight for one message.
    pub(crate) fn parallelism(&self) -> usize {
        self.settings.parallelism.max(1)
    }

    /// The reference a serialized payload holds, when one of these stores wrote it.
    /// References of other drivers (an SDK's own store, say) are not ours to resolve.
    pub fn owned_reference(&self, payload: &[u8]) -> Result<Option<Owned>, ReferenceError> {
        let Some(reference) = Reference::from_payload(payload)? else {
            return Ok(None);
        };
        let tier = self.tiers.iter().position(|t| t.driver.owns(&reference));
        Ok(tier.map(|tier| Owned { reference, tier }))
    }

    /// The object a reference names, as errors and audit logs name it.
    pub fn object_of(&self, owned: &Owned) -> String {
        let driver = &self.tiers[owned.tier].driver;
        driver.object_name(driver.key_of(&owned.reference).unwrap_or_default())
    }

    /// The reference that replaces a payload at or above the threshold, or `None` when the
    /// payload stays inline (small, or a reference already).
    pub async fn offload_payload(
        &self,
        payload: &Bytes,
        target: &Target,
    ) -> Result<Option<Bytes>, TransformError> {
        if (payload.len() as u64) < self.settings.threshold_bytes
            || Reference::from_payload(payload)?.is_some()
        {
            return Ok(None);
        }
        let replacement = self.store_one(payload, 0..payload.len(), target).await?;
        Ok(Some(replacement.bytes))
    }

    async fn store_one(
        &self,
        msg: &Bytes,
        range: Range<usize>,
        target: &Target,
    ) -> Result<Replacement, TransformError> {
        let payload = msg.slice(range.clone());
        let size = payload.len() as u64;
        let driver = self.driver_for(size);
        let hash = hex::encode(Sha256::digest(&payload));
        let key = reference::object_key(driver.prefix(), target, &hash);
        let object = driver.object_name(&key);
        self.write(driver, &key, &object, payload.clone()).await?;
        self.metrics.offloaded_payloads.inc();
        self.metrics.offloaded_bytes.inc_by(size);
        tracing::debug!(%object, size, "offloaded payload");
        let reference = Reference {
            driver_name: driver.name().to_owned(),
            claim: driver.claim(&key, &hash),
            size_bytes: None,
        };
        let replacement = Replacement {
            range,
            bytes: Bytes::from(reference.to_payload(size)?),
        };
        // The next poll carries this reference back: it finds the original here, not in the store.
        let cache_key = CacheKey {
            driver: driver.name(),
            object,
            sha256: hash,
            size: Some(size),
        };
        self.cache.insert(cache_key, detached(payload, msg));
        Ok(replacement)
    }

    /// Writes an object unless this proxy wrote it within `refresh_after`: a content-addressed
    /// object's bytes cannot differ, and only its age is refreshed by writing it again.
    async fn write(
        &self,
        driver: &Driver,
        key: &str,
        object: &str,
        payload: Bytes,
    ) -> Result<(), StoreError> {
        let began = Instant::now();
        if self.recent.fresh(object, began) {
            self.metrics.writes_skipped.inc();
            return Ok(());
        }
        driver.put(key, payload).await?;
        self.observe("put", began);
        self.recent.wrote(object.to_owned(), began);
        Ok(())
    }

    /// The original payload of a reference, verified, if it is in `namespace`'s scope.
    pub async fn fetch(&self, owned: &Owned, namespace: &str) -> Result<Bytes, TransformError> {
        let checked = self.check(owned, namespace)?;
        if let Some(bytes) = self.cached(&checked) {
            return Ok(bytes);
        }
        let started = Instant::now();
        let driver = &self.tiers[checked.tier].driver;
        let reading = driver.read(&checked.key).await?;
        let bytes = verify::read_whole(reading, &checked.object, &checked.sha256, checked.size).await?;
        self.fetched(&checked, bytes.len(), started);
        self.cache.insert(checked.cache_key(driver), bytes.clone());
        Ok(bytes)
    }

    /// Whether `namespace` may read what a reference names, and what the object must hash to.
    pub(crate) fn check(&self, owned: &Owned, namespace: &str) -> Result<Checked, TransformError> {
        let driver = &self.tiers[owned.tier].driver;
        let reference = &owned.reference;
        let key = driver.key_of(reference).unwrap_or_default();
        let object = driver.object_name(key);
        let denied = |reason: String| TransformError::Denied {
            object: object.clone(),
            reason,
        };
        let Some(sha256) = reference.sha256() else {
            return Err(denied(format!(
                "claim must carry {CLAIM_HASH_ALGORITHM}={SHA256} and {CLAIM_HASH_VALUE}"
            )));
        };
        let scope = reference::namespace_scope(driver.prefix(), namespace);
        let unscoped = reference::unscoped_key(driver.prefix(), &sha256);
        if key == unscoped && !self.tiers[owned.tier].accept_unscoped_keys {
            return Err(denied(
                "key has no namespace segment, and this store does not accept such keys (acceptUnscopedKeys)"
                    .to_owned(),
            ));
        }
        if key != unscoped && !key.starts_with(&scope) {
            return Err(denied(format!(
                "key is outside {scope}, the store prefix of namespace {namespace:?}"
            )));
        }
        Ok(Checked {
            tier: owned.tier,
            key: key.to_owned(),
            object,
            sha256,
            size: reference.size_bytes,
        })
    }

    /// Verified bytes of a checked reference that this proxy already holds.
    pub(crate) fn cached(&self, checked: &Checked) -> Option<Bytes> {
        let hit = self
            .cache
            .get(&checked.cache_key(&self.tiers[checked.tier].driver));
        let counter = match hit {
            Some(_) => &self.metrics.cache_hits,
            None => &self.metrics.cache_misses,
        };
        counter.inc();
        hit
    }

    /// Reads a checked reference's object, sending its chunks in order as they arrive. The
    /// last chunk is sent only once the whole object passed the check, so a receiver never
    /// holds every byte of an object that fails it; a failure is sent as the last item.
    pub(crate) async fn stream_one(
        &self,
        checked: &Checked,
        send: impl Fn(Result<Bytes, TransformError>) -> bool,
    ) {
        if let Err(e) = self.stream_verified(checked, &send).await {
            send(Err(e));
        }
    }

    async fn stream_verified(
        &self,
        checked: &Checked,
        send: &impl Fn(Result<Bytes, TransformError>) -> bool,
    ) -> Result<(), TransformError> {
        let started = Instant::now();
        let driver = &self.tiers[checked.tier].driver;
        let reading = driver.read(&checked.key).await?;
        let mut verifying = Verifying::new(&checked.object, &checked.sha256, checked.size, reading.size)?;
        let cacheable = self.cache.takes(reading.size);
        let (mut kept, mut held) = (Vec::new(), None);
        let mut chunks = reading.chunks;
        while let Some(chunk) = chunks.try_next().await? {
            verifying.update(&chunk)?;
            if cacheable {
                kept.push(chunk.clone());
            }
            if let Some(previous) = held.replace(chunk)
                && !send(Ok(previous))
            {
                return Ok(()); // the client is gone
            }
        }
        verifying.finish()?;
        self.fetched(checked, reading.size as usize, started);
        if let Some(last) = held {
            send(Ok(last));
        }
        if cacheable {
            self.cache
                .insert(checked.cache_key(driver), Bytes::from(kept.concat()));
        }
        Ok(())
    }

    fn fetched(&self, checked: &Checked, len: usize, started: Instant) {
        self.observe("get", started);
        self.metrics.fetched_payloads.inc();
        self.metrics.fetched_bytes.inc_by(len as u64);
        tracing::debug!(object = %checked.object, len, "fetched payload");
    }

    fn driver_for(&self, size: u64) -> &Driver {
        // Sorted by `min_bytes`, and `new` refuses an empty list: the first tier takes
        // whatever is below every `min_bytes`.
        let tier = self.tiers.iter().rev().find(|t| t.min_bytes <= size);
        &tier.unwrap_or(&self.tiers[0]).driver
    }

    fn observe(&self, op: &'static str, started: Instant) {
        self.metrics
            .store_seconds
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A payload cut from a much larger message is copied before it is cached, so that the cache
/// does not keep the whole message alive.
fn detached(payload: Bytes, msg: &Bytes) -> Bytes {
    if payload.len() * 2 >= msg.len() {
        payload
    } else {
        Bytes::copy_from_slice(&payload)
    }
}
