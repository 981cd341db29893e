//! The proxy's configuration: a YAML or JSON file (the one the operator renders into a
//! ConfigMap), overridden by command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::jwt::JwtConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Where workers connect: plaintext gRPC, loopback by default.
    pub listen: SocketAddr,
    pub upstream: UpstreamConfig,
    /// Payloads whose serialized size is at least this many bytes are offloaded; 0 offloads all.
    pub threshold_bytes: u64,
    /// Stores; the one with the largest `minBytes` not above a payload's size takes it.
    pub drivers: Vec<DriverConfig>,
    /// An object this proxy wrote less than this many seconds ago is referenced again without
    /// being written again. Writing refreshes the object's age for the bucket's expiry rule, so
    /// this must not exceed the margin of the TTL over the longest run plus retention (the
    /// operator sets it from the policy's TTL). 0 writes every time.
    pub refresh_after_seconds: u64,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    /// Prometheus metrics, `/healthz` and `/readyz`.
    pub metrics_listen: SocketAddr,
    /// The codec server for the Temporal Web UI and CLI, on a listener of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<CodecConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodecConfig {
    /// Loopback only, unless `tls` is set and callers must authenticate.
    pub listen: SocketAddr,
    /// Browser origins allowed to call (the Web UI's, e.g. `https://temporal.example.com`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The Temporal namespaces it serves; empty: any a caller may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// `/decode` resolves references up to this size; larger ones stay references.
    #[serde(default = "default_decode_max_bytes")]
    pub decode_max_bytes: u64,
    /// `/download` refuses larger originals. Default 64 MiB, or what a quarter of
    /// `limits.inflightBytes` holds if that is less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_max_bytes: Option<u64>,
    /// Serve HTTPS with this certificate and key (PEM files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsFiles>,
    /// Lines `SUBJECT:TOKEN[:NAMESPACE,...]`: bearer tokens and what they may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// OIDC access tokens, verified against the provider's JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<JwtConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn default_decode_max_bytes() -> u64 {
    4 * MIB as u64
}

/// What a browser sends as `Origin`: scheme and host in lower case, a port, nothing else.
fn exact_origin(origin: &str) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:[]".contains(c))
}

/// An original is held about four times over while it is answered (fetched, decoded,
/// base64-encoded, cached).
pub const HELD_PER_BYTE: u64 = 4;

impl CodecConfig {
    pub fn new(listen: SocketAddr) -> Self {
        CodecConfig {
            listen,
            allowed_origins: Vec::new(),
            namespaces: Vec::new(),
            decode_max_bytes: default_decode_max_bytes(),
            download_max_bytes: None,
            tls: None,
            tokens_file: None,
            oidc: None,
        }
    }

    pub fn download_max(&self, limits: &LimitsConfig) -> u64 {
        let fits = limits.inflight_bytes as u64 / HELD_PER_BYTE;
        self.download_max_bytes.unwrap_or((64 * MIB as u64).min(fits))
    }

    fn validate(&self, limits: &LimitsConfig) -> Result<(), String> {
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "codec.listen {} is not loopback: a codec server hands out plaintext payloads, so off loopback it needs codec.tls",
                self.listen
            ));
        }
        if !self.listen.ip().is_loopback() && self.tokens_file.is_none() && self.oidc.is_none() {
            return Err(format!(
                "codec.listen {} is not loopback: set codec.tokensFile or codec.oidc so that callers must authenticate",
                self.listen
            ));
        }
        if let Some(origin) = self.allowed_origins.iter().find(|o| !exact_origin(o)) {
            return Err(format!(
                "codec.allowedOrigins {origin:?}: give exact origins as browsers send them (http[s]://host[:port] in lower case, no path, never *)"
            ));
        }
        if self.download_max(limits).saturating_mul(HELD_PER_BYTE) > limits.inflight_bytes as u64 {
            return Err(format!(
                "codec.downloadMaxBytes times {HELD_PER_BYTE} must fit limits.inflightBytes"
            ));
        }
        if self.decode_max_bytes > self.download_max(limits) {
            return Err("codec.decodeMaxBytes must not exceed codec.downloadMaxBytes".to_owned());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub address: String,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriverConfig {
    /// `file:///dir`, `s3://bucket/prefix/`, `gs://bucket/prefix/`, `az://container/prefix/`.
    pub url: String,
    /// Prepended to every key this driver writes, e.g. `billing/`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub min_bytes: u64,
    /// Store options, by `object_store` configuration key (`endpoint`, `region`, ...).
    /// Credentials belong in the environment or `credentialsDir`, not here.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// A directory of credentials (a mounted Secret): each file is an option named after
    /// the file, lower-cased (`AWS_ACCESS_KEY_ID` -> `aws_access_key_id`). Relative to the
    /// configuration file. Read again whenever the configuration is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<PathBuf>,
    /// For a `file://` store, which has no bucket rules: the proxy deletes what it wrote
    /// under this driver's prefix once it is this many days old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_days: Option<u64>,
    /// Accept references to `v0/d/sha256/{hex}`, the key the SDKs write for payloads of no
    /// namespace (Nexus results, a codec server's /encode). Off by default: any namespace that
    /// knows an object's hash could read it. Turn it on for a store that serves one namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_unscoped_keys: bool,
}

/// Never the options' values: they hold the mounted credentials.
impl std::fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverConfig")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("min_bytes", &self.min_bytes)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("credentials_dir", &self.credentials_dir)
            .field("expire_after_days", &self.expire_after_days)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_message_bytes: usize,
    pub client_max_message_bytes: usize,
    pub inflight_bytes: usize,
    /// Store or fetch operations in flight for one message.
    pub parallelism: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CacheConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
}

const MIB: usize = 1 << 20;

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7233)),
            upstream: UpstreamConfig::default(),
            threshold_bytes: 256 * 1024,
            drivers: Vec::new(),
            refresh_after_seconds: 0,
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            codec: None,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            address: "127.0.0.1:7234".into(),
            tls: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 256 * MIB,
            client_max_message_bytes: 128 * MIB,
            inflight_bytes: 1024 * MIB,
            parallelism: 8,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 1024,
            max_bytes: 256 * MIB,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration in {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<crate::yaml::ReadError>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ProxyConfig {
    /// Reads a YAML (or JSON, which is YAML) file. Paths in it are relative to its
    /// directory (as mounted volumes sit beside the ConfigMap); credential directories are
    /// read in.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: ProxyConfig = crate::yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.upstream.tls {
            for file in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                *file = base.join(&*file);
            }
        }
        if let Some(codec) = &mut config.codec {
            let files = codec
                .tls
                .iter_mut()
                .flat_map(|t| [&mut t.cert_file, &mut t.key_file]);
            for file in files.chain(codec.tokens_file.as_mut()) {
                *file = base.join(&*file);
            }
        }
        for driver in &mut config.drivers {
            if let Some(dir) = &mut driver.credentials_dir {
                *dir = base.join(&*dir);
                driver.options.extend(read_credentials(dir)?);
            }
        }
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.drivers.is_empty() {
            return invalid("at least one driver (store URL) is required");
        }
        if self.limits.parallelism == 0 {
            return invalid("limits.parallelism must be at least 1");
        }
        if self.limits.inflight_bytes < self.limits.max_message_bytes {
            return invalid("limits.inflightBytes must be at least limits.maxMessageBytes");
        }
        if let Some(codec) = &self.codec {
            codec.validate(&self.limits).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }
}

/// The files of a mounted Secret, as options. Kubernetes keeps its bookkeeping in
/// dot-files (`..data`), which are skipped; the keys themselves are symlinks, followed.
fn read_credentials(dir: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let read_error = |path: &Path, source| ConfigError::Read {
        path: path.into(),
        source,
    };
    let mut options = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
        let path = entry.map_err(|e| read_error(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let value = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
        // `kubectl create secret --from-file` keeps a file's last newline.
        options.insert(
            name.to_lowercase(),
            value.trim_end_matches(['\r', '\n']).to_owned(),
        );
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rendered_file_format() {
        let yaml = "
listen: 127.0.0.1:7000
upstream: {address: 'temporal:7233', tls: {caFile: /etc/ca.pem}}
thresholdBytes: 1024
drivers: [{url: 'file:///data', prefix: 'billing/'}]
";
        let config: ProxyConfig = crate::yaml::from_str(yaml).unwrap();
        assert_eq!(config.threshold_bytes, 1024);
        assert_eq!(config.drivers[0].prefix, "billing/");
        assert_eq!(config.limits, LimitsConfig::default());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn paths_are_relative_to_the_file_and_credentials_are_read_from_the_mounted_secret() {
        let root = tempfile::tempdir().unwrap();
        let (config_dir, secret) = (root.path().join("proxy"), root.path().join("credentials/hot"));
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::create_dir_all(secret.join("..2026_11_22")).unwrap();
        std::fs::write(secret.join("..2026_11_22/AWS_ACCESS_KEY_ID"), "key").unwrap();
        std::os::unix::fs::symlink("..2026_11_22/AWS_ACCESS_KEY_ID", secret.join("AWS_ACCESS_KEY_ID"))
            .unwrap();
        std::os::unix::fs::symlink("..2026_11_22", secret.join("..data")).unwrap();
        let file = config_dir.join("proxy.yaml");
        std::fs::write(
            &file,
            "upstream: {address: 'temporal:7233', tls: {caFile: ../tls/ca.crt}}\n\
             drivers: [{url: 's3://b/', options: {region: eu-west-1}, credentialsDir: ../credentials/hot}]\n",
        )
        .unwrap();
        let config = ProxyConfig::load(&file).unwrap();
        let tls = config.upstream.tls.unwrap();
        assert_eq!(tls.ca_file.unwrap(), config_dir.join("../tls/ca.crt"));
        let options = &config.drivers[0].options;
        assert_eq!(options.len(), 2, "{:?}", options.keys());
        assert_eq!(options["aws_access_key_id"], "key");
        assert_eq!(options["region"], "eu-west-1");
    }

    #[test]
    fn unknown_fields_and_missing_drivers_are_refused() {
        assert!(crate::yaml::from_str::<ProxyConfig>("treshold: 1").is_err());
        assert!(ProxyConfig::default().validate().is_err());
    }

    /// A store's secret written inline stays out of the error that names the bad line.
    #[test]
    fn a_parse_error_does_not_quote_the_file() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("proxy.yaml");
        let yaml = "drivers: [{url: 's3://b/', options: {aws_secret_access_key: s3cr3t-v4lue}}]\nthresholdBytes: [\n";
        std::fs::write(&file, yaml).unwrap();
        let message = format!("{:#}", anyhow::Error::new(ProxyConfig::load(&file).unwrap_err()));
        assert!(message.contains("line"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
        let message = ProxyConfig::load(&file).unwrap_err().to_string();
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
