//! Storage drivers: where offloaded payloads live, behind one small type that
//! `object_store` backs. This issue has the filesystem (`file://`) and an in-memory
//! store (`memory://`, for tests); the cloud stores plug in the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::reference::{CLAIM_HASH_ALGORITHM, CLAIM_HASH_VALUE, CLAIM_KEY, Reference, SHA256};

pub const FILE_DRIVER: &str = "claimcheck.file";
pub const MEMORY_DRIVER: &str = "claimcheck.memory";

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("unsupported store URL {0:?}: expected file:///absolute/dir or memory://")]
    UnsupportedUrl(String),
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
}

/// A failed store operation; every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {object} does not exist")]
    NotFound { object: String },
    #[error("store unavailable for {object}: {reason}")]
    Unavailable { object: String, reason: String },
    #[error("invalid object key {object}: {reason}")]
    BadKey { object: String, reason: String },
}

/// One configured store.
#[derive(Debug, Clone)]
pub struct Driver {
    /// The `driver_name` written into references.
    name: &'static str,
    /// Prefix under which this driver writes and from which it reads.
    prefix: String,
    /// How objects are named in messages: the URL without credentials.
    location: String,
    /// A filesystem root whose disappearance (an unmounted volume) means "unavailable"
    /// rather than "object missing".
    root: Option<PathBuf>,
    store: Arc<dyn ObjectStore>,
}

impl Driver {
    /// Opens the store named by `url`; `prefix` is prepended to every key this driver writes.
    pub fn open(url: &str, prefix: &str) -> Result<Driver, DriverError> {
        let open_err = |reason: String| DriverError::Open {
            url: url.to_owned(),
            reason,
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(DriverError::UnsupportedUrl(url.to_owned()));
            }
            std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(path).map_err(|e| open_err(e.to_string()))?;
            return Ok(Driver {
                name: FILE_DRIVER,
                prefix: prefix.to_owned(),
                location: format!("file://{}/", path.trim_end_matches('/')),
                root: Some(PathBuf::from(path)),
                store: Arc::new(store),
            });
        }
        if url.starts_with("memory://") {
            return Ok(Driver {
                name: MEMORY_DRIVER,
                prefix: prefix.to_owned(),
                location: url.to_owned(),
                root: None,
                store: Arc::new(InMemory::new()),
            });
        }
        Err(DriverError::UnsupportedUrl(url.to_owned()))
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The human-readable name of an object of this store, used in every error.
    pub fn object_name(&self, key: &str) -> String {
        format!("{}{key}", self.location)
    }

    /// The claim that lets this driver (or an SDK driver of the same name) find `key` again.
    pub fn claim(&self, key: &str, sha256_hex: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CLAIM_KEY.to_owned(), key.to_owned()),
            (CLAIM_HASH_ALGORITHM.to_owned(), SHA256.to_owned()),
            (CLAIM_HASH_VALUE.to_owned(), sha256_hex.to_owned()),
        ])
    }

    /// Whether this driver wrote `reference` (same driver name and store).
    pub fn owns(&self, reference: &Reference) -> bool {
        reference.driver_name == self.name
    }

    /// Writes the object unconditionally: a re-put of content-addressed bytes refreshes
    /// the object's age, so lifecycle expiry never removes it under a newer reference.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.check_root(key).await?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.store_error(key, e))
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        self.check_root(key).await?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.store_error(key, e))?;
        result.bytes().await.map_err(|e| self.store_error(key, e))
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        Path::parse(key).map_err(|e| StoreError::BadKey {
            object: self.object_name(key),
            reason: e.to_string(),
        })
    }

    async fn check_root(&self, key: &str) -> Result<(), StoreError> {
        let Some(root) = &self.root else { return Ok(()) };
        match tokio::fs::metadata(root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            _ => Err(StoreError::Unavailable {
                object: self.object_name(key),
                reason: format!("store root {} is not a mounted directory", root.display()),
            }),
        }
    }

    fn store_error(&self, key: &str, error: object_store::Error) -> StoreError {
        let object = self.object_name(key);
        match error {
            object_store::Error::NotFound { .. } => StoreError::NotFound { object },
            other => StoreError::Unavailable {
                object,
                reason: other.to_string(),
            },
        }
    }
}
