//! Opens a store from its URL and options: `file:///dir`, `s3://bucket/prefix/`,
//! `gs://bucket/prefix/`, `az://container/prefix/` (or `azure://`), `memory://`.
//!
//! Cloud credentials come from the environment the way each cloud's own tools read them
//! (static keys, web identity / IRSA, workload identity, instance metadata), or from the
//! options, whose keys are `object_store`'s configuration keys (`endpoint`, `region`,
//! `access_key_id`, `use_emulator`, ...).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, RetryConfig};

use super::{Driver, DriverError, Layout};

/// The claim layout of each store; S3 and GCS match the Temporal SDK drivers exactly.
pub const S3: Layout = Layout {
    name: "aws.s3driver",
    bucket_claim: Some("bucket"),
    key_claim: "key",
    key_aliases: &[],
};
pub const GCS: Layout = Layout {
    name: "gcp.gcsdriver",
    bucket_claim: Some("bucket"),
    key_claim: "object_name",
    // The Go SDK's GCS driver writes `key`, the TypeScript SDK's `object`.
    key_aliases: &["key", "object"],
};
pub const AZURE: Layout = Layout {
    name: "claimcheck.azureblob",
    bucket_claim: Some("container"),
    key_claim: "key",
    key_aliases: &[],
};
pub const FILE: Layout = Layout {
    name: "claimcheck.file",
    bucket_claim: None,
    key_claim: "key",
    key_aliases: &[],
};
pub const MEMORY: Layout = Layout {
    name: "claimcheck.memory",
    bucket_claim: None,
    key_claim: "key",
    key_aliases: &[],
};

impl Driver {
    /// Opens the store named by `url`. For cloud stores the URL's path is a key prefix, to
    /// which `prefix` is appended; for `file://` the path is the root directory.
    pub fn open(url: &str, prefix: &str, options: &BTreeMap<String, String>) -> Result<Driver, DriverError> {
        let unsupported = || DriverError::UnsupportedUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(unsupported)?;
        if scheme == "file" {
            return open_file(url, rest, prefix);
        }
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = join_prefix(path, prefix);
        if scheme == "memory" {
            return Ok(Driver::new(
                MEMORY,
                None,
                prefix,
                url.to_owned(),
                None,
                Arc::new(InMemory::new()),
            ));
        }
        if bucket.is_empty() {
            return Err(unsupported());
        }
        let bucket_url = format!("{scheme}://{bucket}");
        let layout = match scheme {
            "s3" => S3,
            "gs" => GCS,
            "az" | "azure" => AZURE,
            _ => return Err(unsupported()),
        };
        let store = cloud_store(&bucket_url, options)?;
        let location = format!("{bucket_url}/");
        Ok(Driver::new(
            layout,
            Some(bucket.to_owned()),
            prefix,
            location,
            None,
            store,
        ))
    }
}

/// The `object_store` of a cloud bucket URL (`s3://b`, `gs://b`, `az://c`), configured from
/// the environment, then from `options`.
pub fn cloud_store(
    bucket_url: &str,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, DriverError> {
    match bucket_url.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3") => Ok(Arc::new(s3_store(bucket_url, options)?)),
        Some("gs") => Ok(Arc::new(gcs_store(bucket_url, options)?)),
        Some("az" | "azure") => Ok(Arc::new(azure_store(bucket_url, options)?)),
        _ => Err(DriverError::UnsupportedUrl(bucket_url.to_owned())),
    }
}

fn open_file(url: &str, path: &str, prefix: &str) -> Result<Driver, DriverError> {
    if !path.starts_with('/') {
        return Err(DriverError::UnsupportedUrl(url.to_owned()));
    }
    let open_err = |reason: String| DriverError::Open {
        url: url.to_owned(),
        reason,
    };
    std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;
    let store = LocalFileSystem::new_with_prefix(path).map_err(|e| open_err(e.to_string()))?;
    let location = format!("file://{}/", path.trim_end_matches('/'));
    let root = Some(PathBuf::from(path));
    Ok(Driver::new(
        FILE,
        None,
        join_prefix("", prefix),
        location,
        root,
        Arc::new(store),
    ))
}

/// `a/b` + `c` → `a/b/c/`: every prefix ends with a slash, or is empty.
fn join_prefix(path: &str, prefix: &str) -> String {
    let parts: Vec<&str> = [path, prefix]
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}/", parts.join("/"))
    }
}

/// A store that does not answer must fail a call well within a worker's deadline: the
/// proxy answers UNAVAILABLE and Temporal retries the task. Options override these.
const CLIENT_DEFAULTS: [(&str, &str); 2] = [("connect_timeout", "5s"), ("timeout", "30s")];

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        ..RetryConfig::default()
    }
}

/// The defaults, then the policy's options.
fn with_defaults(options: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    CLIENT_DEFAULTS
        .into_iter()
        .chain(options.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The S3 configuration of `url`: also the region, endpoint and credential chain of the
/// operator's bucket rules.
pub fn s3_builder(url: &str, options: &BTreeMap<String, String>) -> Result<AmazonS3Builder, DriverError> {
    let mut builder = AmazonS3Builder::from_env().with_url(url).with_retry(retry());
    for (key, value) in with_defaults(options) {
        builder = builder.with_config(config_key::<AmazonS3ConfigKey>(url, key)?, value);
    }
    Ok(builder)
}

fn s3_store(url: &str, options: &BTreeMap<String, String>) -> Result<AmazonS3, DriverError> {
    s3_builder(url, options)?.build().map_err(|e| build_error(url, e))
}

/// The GCS configuration of `url`: also the endpoint and credential chain of the
/// operator's bucket rules.
pub fn gcs_builder(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<GoogleCloudStorageBuilder, DriverError> {
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_url(url)
        .with_retry(retry());
    for (key, value) in with_defaults(options) {
        builder = builder.with_config(config_key::<GoogleConfigKey>(url, key)?, value);
    }
    Ok(builder)
}

fn gcs_store(url: &str, options: &BTreeMap<String, String>) -> Result<GoogleCloudStorage, DriverError> {
    gcs_builder(url, options)?
        .build()
        .map_err(|e| build_error(url, e))
}

fn azure_store(url: &str, options: &BTreeMap<String, String>) -> Result<MicrosoftAzure, DriverError> {
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_url(url)
        .with_retry(retry());
    for (key, value) in with_defaults(options) {
        builder = builder.with_config(config_key::<AzureConfigKey>(url, key)?, value);
    }
    builder.build().map_err(|e| build_error(url, e))
}

fn config_key<K: FromStr>(url: &str, key: &str) -> Result<K, DriverError> {
    K::from_str(key).map_err(|_| DriverError::Open {
        url: url.to_owned(),
        reason: format!("unknown option {key:?}"),
    })
}

fn build_error(url: &str, error: object_store::Error) -> DriverError {
    DriverError::Open {
        url: url.to_owned(),
        reason: super::redact(&error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(join_prefix("", ""), "");
        assert_eq!(join_prefix("billing", ""), "billing/");
        assert_eq!(join_prefix("a/b/", "/c"), "a/b/c/");
    }

    #[test]
    fn cloud_urls_name_bucket_and_prefix() {
        let options = BTreeMap::from([
            ("endpoint".to_owned(), "http://127.0.0.1:9000".to_owned()),
            ("region".to_owned(), "us-east-1".to_owned()),
            ("access_key_id".to_owned(), "k".to_owned()),
            ("secret_access_key".to_owned(), "s".to_owned()),
        ]);
        let driver = Driver::open("s3://payloads/billing/", "team", &options).unwrap();
        assert_eq!(
            (driver.name(), driver.prefix()),
            ("aws.s3driver", "billing/team/")
        );
        assert_eq!(driver.object_name("k"), "s3://payloads/k");
        let claim = driver.claim("billing/team/v0/x", "ab");
        assert_eq!(claim["bucket"], "payloads");
        assert_eq!(claim["key"], "billing/team/v0/x");
    }

    #[test]
    fn bad_urls_and_options_are_refused() {
        let none = BTreeMap::new();
        assert!(matches!(
            Driver::open("ftp://x/", "", &none),
            Err(DriverError::UnsupportedUrl(_))
        ));
        assert!(matches!(
            Driver::open("file://relative", "", &none),
            Err(DriverError::UnsupportedUrl(_))
        ));
        let bad = BTreeMap::from([("no_such_option".to_owned(), "1".to_owned())]);
        let err = Driver::open("s3://b/", "", &bad).unwrap_err().to_string();
        assert!(err.contains("no_such_option"), "{err}");
    }
}
