//! Storage drivers: where offloaded payloads live, behind one type that `object_store`
//! backs, whatever the store (S3, GCS, Azure Blob, filesystem, memory for tests).

mod open;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::payload::reference::{CLAIM_HASH_ALGORITHM, CLAIM_HASH_VALUE, Reference, SHA256};

pub use open::{AZURE, FILE, GCS, MEMORY, S3, cloud_store, gcs_builder, s3_builder};

/// Parts of a large object written to S3 or Azure, and how many go at once.
const PART_BYTES: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(
        "unsupported store URL {0:?}: expected file:///dir, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
    )]
    UnsupportedUrl(String),
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
}

/// A failed store operation; every variant names the object, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {object} does not exist")]
    NotFound { object: String },
    #[error("store unavailable for {object}: {reason}")]
    Unavailable { object: String, reason: String },
    #[error("invalid object key {object}: {reason}")]
    BadKey { object: String, reason: String },
}

/// How a store's references look: the driver name and the claim keys that locate an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub name: &'static str,
    pub bucket_claim: Option<&'static str>,
    /// The claim key naming the object, as written; the SDKs' other spellings of it are read
    /// too (docs/interop.md), the first one present winning.
    pub key_claim: &'static str,
    pub key_aliases: &'static [&'static str],
}

/// An object being read.
pub struct Reading {
    /// The size the store reports for the whole object.
    pub size: u64,
    pub chunks: BoxStream<'static, Result<Bytes, StoreError>>,
}

/// One configured store.
#[derive(Debug, Clone)]
pub struct Driver {
    layout: Layout,
    bucket: Option<String>,
    /// Prefix under which this driver writes and from which it reads; empty or ends in `/`.
    prefix: String,
    /// How objects are named in messages: the URL of the bucket, without credentials.
    location: String,
    /// A filesystem root whose disappearance (an unmounted volume) means "unavailable"
    /// rather than "object missing".
    root: Option<PathBuf>,
    store: Arc<dyn ObjectStore>,
}

impl Driver {
    fn new(
        layout: Layout,
        bucket: Option<String>,
        prefix: String,
        location: String,
        root: Option<PathBuf>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Driver {
            layout,
            bucket,
            prefix,
            location,
            root,
            store,
        }
    }

    /// The `driver_name` written into references.
    pub fn name(&self) -> &'static str {
        self.layout.name
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bucket or container, for cloud stores.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    /// The human-readable name of an object of this store, used in every error.
    pub fn object_name(&self, key: &str) -> String {
        format!("{}{key}", self.location)
    }

    /// The claim that lets this driver, or an SDK driver of the same name, find `key` again.
    pub fn claim(&self, key: &str, sha256_hex: &str) -> BTreeMap<String, String> {
        let mut claim = BTreeMap::from([
            (self.layout.key_claim.to_owned(), key.to_owned()),
            (CLAIM_HASH_ALGORITHM.to_owned(), SHA256.to_owned()),
            (CLAIM_HASH_VALUE.to_owned(), sha256_hex.to_owned()),
        ]);
        if let (Some(name), Some(bucket)) = (self.layout.bucket_claim, &self.bucket) {
            claim.insert(name.to_owned(), bucket.clone());
        }
        claim
    }

    /// The object key a reference names, if it is in this driver's claim layout.
    pub fn key_of<'r>(&self, reference: &'r Reference) -> Option<&'r str> {
        std::iter::once(self.layout.key_claim)
            .chain(self.layout.key_aliases.iter().copied())
            .find_map(|name| reference.claim.get(name))
            .map(String::as_str)
    }

    /// Whether this driver can fetch `reference`: same driver name, same bucket, and a key
    /// under this driver's prefix (so tiers sharing a bucket tell their objects apart).
    pub fn owns(&self, reference: &Reference) -> bool {
        let bucket_matches = match (self.layout.bucket_claim, &self.bucket) {
            (Some(name), Some(bucket)) => reference.claim.get(name) == Some(bucket),
            _ => true,
        };
        reference.driver_name == self.layout.name
            && bucket_matches
            && self
                .key_of(reference)
                .is_some_and(|k| k.starts_with(&self.prefix))
    }

    /// Writes the object unconditionally: a re-put of content-addressed bytes refreshes
    /// the object's age, so lifecycle expiry never removes it under a newer reference.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.check_root(key).await?;
        let put = match self.layout {
            S3 | AZURE if bytes.len() >= PART_BYTES * 2 => self.put_in_parts(&path, bytes).await,
            _ => self.store.put(&path, PutPayload::from(bytes)).await.map(drop),
        };
        match put {
            Ok(_) => Ok(()),
            // A put that finds nothing is a bucket that is not there.
            Err(object_store::Error::NotFound { .. }) => Err(self.missing_bucket(key)),
            Err(e) => Err(self.store_error(key, e)),
        }
    }

    /// A large object goes to S3 or Azure in parts, several at once: the store takes them in
    /// parallel, where one PUT streams through one connection (100 MiB to MinIO: 0.62 of a
    /// raw PUT's speed through the proxy before, 0.89 after). GCS takes one PUT: the emulator
    /// the tests run has no XML multipart upload, and an untested path is not shipped.
    async fn put_in_parts(&self, path: &Path, bytes: Bytes) -> object_store::Result<()> {
        let upload = self.store.put_multipart(path).await?;
        let mut write = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        for start in (0..bytes.len()).step_by(PART_BYTES) {
            if let Err(e) = write.wait_for_capacity(PARTS_IN_FLIGHT).await {
                write.abort().await?;
                return Err(e);
            }
            write.put(bytes.slice(start..(start + PART_BYTES).min(bytes.len())));
        }
        write.finish().await.map(drop)
    }

    /// Opens an object for reading: its size as the store reports it, before any of its body,
    /// and the body's chunks in order as they arrive, so that a reader can check the size
    /// first and hash while the rest is still on the wire.
    pub async fn read(&self, key: &str) -> Result<Reading, StoreError> {
        let path = self.path(key)?;
        self.check_root(key).await?;
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) if !self.bucket_exists().await => {
                return Err(self.missing_bucket(key));
            }
            Err(e) => return Err(self.store_error(key, e)),
        };
        let driver = self.clone();
        let key = key.to_owned();
        Ok(Reading {
            size: result.meta.size,
            chunks: result
                .into_stream()
                .map_err(move |e| driver.store_error(&key, e))
                .boxed(),
        })
    }

    /// Keys this driver wrote (under its prefix) whose last write is before `cutoff`.
    pub async fn written_before(&self, cutoff: std::time::SystemTime) -> Result<Vec<String>, StoreError> {
        let scope = format!("{}v0/", self.prefix);
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Path::from(scope.as_str())))
            .try_collect()
            .await
            .map_err(|e| self.store_error(&scope, e))?;
        let cutoff = chrono_free_utc(cutoff);
        Ok(listed
            .into_iter()
            .filter(|m| m.last_modified.timestamp() < cutoff)
            .map(|m| m.location.to_string())
            .collect())
    }

    /// The folders directly under `scope` (a key prefix ending in `/`), as key prefixes.
    pub async fn folders(&self, scope: &str) -> Result<Vec<String>, StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(scope)?))
            .await
            .map_err(|e| self.store_error(scope, e))?;
        Ok(listed
            .common_prefixes
            .into_iter()
            .map(|folder| format!("{folder}/"))
            .collect())
    }

    /// Every object under `scope` (a key prefix ending in `/`).
    pub async fn objects(&self, scope: &str) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        self.store
            .list(Some(&self.path(scope)?))
            .try_collect()
            .await
            .map_err(|e| self.store_error(scope, e))
    }

    /// Removes an object: the probe after itself, the janitor for expired objects.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.check_root(key).await?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| self.store_error(key, e))
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

    /// Tells a missing object from a missing bucket, on the failure path only.
    async fn bucket_exists(&self) -> bool {
        if self.bucket.is_none() {
            return true;
        }
        !matches!(
            self.store.list_with_delimiter(None).await,
            Err(object_store::Error::NotFound { .. })
        )
    }

    fn missing_bucket(&self, key: &str) -> StoreError {
        StoreError::Unavailable {
            object: self.object_name(key),
            reason: format!("bucket {} does not exist", self.location),
        }
    }

    fn store_error(&self, key: &str, error: object_store::Error) -> StoreError {
        let object = self.object_name(key);
        match error {
            object_store::Error::NotFound { .. } => StoreError::NotFound { object },
            other => StoreError::Unavailable {
                object,
                reason: redact(&other.to_string()),
            },
        }
    }
}

/// Seconds since the Unix epoch, as object_store's `last_modified` counts them.
fn chrono_free_utc(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One line for a status message, a log line and a workflow's history: the store client's
/// description of the failure and the store's error code, never the response body (a
/// SignatureDoesNotMatch body echoes the request) and never a URL query (a SAS token or a
/// presigned signature).
pub(crate) fn redact(text: &str) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    let head = ["<?xml", "<Error", ": {"]
        .iter()
        .filter_map(|marker| first_line.find(marker))
        .min()
        .map_or(first_line, |at| &first_line[..at]);
    let head = head.trim_end_matches([' ', ':']);
    let words: Vec<String> = head.split(' ').map(without_query).collect();
    match error_code(text) {
        Some(code) => format!("{} ({code})", words.join(" ")),
        None => words.join(" "),
    }
}

fn without_query(word: &str) -> String {
    match word.find("://").and_then(|_| word.find('?')) {
        Some(at) => format!("{}?<redacted>", &word[..at]),
        None => word.to_owned(),
    }
}

/// The `<Code>` of an S3, GCS XML or Azure error body.
fn error_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len]).filter(|code| code.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gcs_reference_names_its_object_in_any_sdk_spelling() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let driver = Driver::new(
            GCS,
            Some("b".into()),
            String::new(),
            "gs://b/".into(),
            None,
            store,
        );
        // Python writes object_name, Go key, TypeScript object.
        for claim in ["object_name", "key", "object"] {
            let reference = Reference {
                driver_name: "gcp.gcsdriver".into(),
                claim: BTreeMap::from([("bucket".into(), "b".into()), (claim.into(), "v0/k".into())]),
                size_bytes: None,
            };
            assert_eq!(driver.key_of(&reference), Some("v0/k"), "{claim}");
            assert!(driver.owns(&reference), "{claim}");
        }
    }

    #[test]
    fn query_strings_are_redacted() {
        let text =
            "Error performing GET https://a.blob.core.windows.net/c/k?sv=1&sig=SECRET in 1s, (status 403)";
        let out = redact(text);
        assert!(!out.contains("SECRET"), "{out}");
        assert!(
            out.contains("https://a.blob.core.windows.net/c/k?<redacted> in 1s"),
            "{out}"
        );
    }

    #[test]
    fn response_bodies_are_reduced_to_their_error_code() {
        let text = "Generic S3 error: Error performing GET http://127.0.0.1:9000/b/k in 1ms - Server returned \
                    non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch\
                    </Code><StringToSign>AWS4-HMAC-SHA256 SECRET</StringToSign></Error>";
        assert_eq!(
            redact(text),
            "Generic S3 error: Error performing GET http://127.0.0.1:9000/b/k in 1ms - Server returned \
             non-2xx status code: 403 Forbidden (SignatureDoesNotMatch)"
        );
    }
}
