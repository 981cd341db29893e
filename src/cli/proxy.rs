//! `claimcheck proxy`: the payload proxy, from its configuration file and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::config::{CodecConfig, DriverConfig, ProxyConfig, ServerTlsFiles, TlsFiles};
use crate::run::{BoundCodecServer, BoundProxy};

/// Flags override the configuration file.
#[derive(Args)]
pub struct ProxyArgs {
    /// YAML or JSON configuration file (as rendered by the operator).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Temporal frontend: host:port, http://host:port or https://host:port.
    #[arg(long)]
    upstream: Option<String>,
    /// Store URL (file:///dir, memory://); replaces the file's drivers.
    #[arg(long)]
    store: Option<String>,
    /// Key prefix for --store.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Option of --store, as KEY=VALUE (endpoint, region, ...); repeatable.
    #[arg(long, value_parser = key_value)]
    store_option: Vec<(String, String)>,
    /// Let --store accept references to `v0/d/sha256/{hex}` (no namespace segment): only for a
    /// store that serves one namespace.
    #[arg(long, requires = "store")]
    accept_unscoped_keys: bool,
    #[arg(long)]
    threshold_bytes: Option<u64>,
    /// An object written less than this many seconds ago is not written again
    /// (refreshAfterSeconds); keep it within the TTL's margin over run timeout plus retention.
    #[arg(long)]
    refresh_after_seconds: Option<u64>,
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[arg(long)]
    max_message_bytes: Option<usize>,
    #[arg(long)]
    client_max_message_bytes: Option<usize>,
    /// Payload bytes held at once across calls (limits.inflightBytes).
    #[arg(long)]
    inflight_bytes: Option<usize>,
    /// The verified-fetch cache's size in bytes (cache.maxBytes).
    #[arg(long)]
    cache_max_bytes: Option<usize>,
    /// CA bundle (PEM) for TLS to the upstream; implies TLS.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS to the upstream.
    #[arg(long, requires = "upstream_key")]
    upstream_cert: Option<PathBuf>,
    #[arg(long, requires = "upstream_cert")]
    upstream_key: Option<PathBuf>,
    #[arg(long)]
    upstream_server_name: Option<String>,
    /// Serve the codec server for the Temporal Web UI and CLI on this address.
    #[arg(long)]
    codec_listen: Option<SocketAddr>,
    /// A browser origin allowed to call the codec server (the Web UI's); repeatable.
    #[arg(long)]
    codec_allow_origin: Vec<String>,
    /// Bearer tokens of the codec server: lines SUBJECT:TOKEN[:NAMESPACE,...].
    #[arg(long)]
    codec_tokens_file: Option<PathBuf>,
    /// /decode resolves references up to this size; larger ones stay references.
    #[arg(long)]
    codec_decode_max_bytes: Option<u64>,
    /// The codec server's certificate (PEM); with --codec-tls-key, it serves HTTPS.
    #[arg(long, requires = "codec_tls_key")]
    codec_tls_cert: Option<PathBuf>,
    #[arg(long, requires = "codec_tls_cert")]
    codec_tls_key: Option<PathBuf>,
}

impl ProxyArgs {
    /// The configuration: the file's, then the flags'. Called again on every reload.
    fn config(&self) -> anyhow::Result<ProxyConfig> {
        let mut config = match &self.config {
            Some(path) => ProxyConfig::load(path)?,
            None => ProxyConfig::default(),
        };
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = &self.upstream {
            config.upstream.address = v.clone();
        }
        if let Some(url) = self.store.clone() {
            let options = self.store_option.iter().cloned().collect();
            config.drivers = vec![DriverConfig {
                url,
                prefix: self.prefix.clone(),
                min_bytes: 0,
                options,
                credentials_dir: None,
                expire_after_days: None,
                accept_unscoped_keys: self.accept_unscoped_keys,
            }];
        }
        if let Some(v) = self.threshold_bytes {
            config.threshold_bytes = v;
        }
        if let Some(v) = self.refresh_after_seconds {
            config.refresh_after_seconds = v;
        }
        if let Some(v) = self.metrics_listen {
            config.metrics_listen = v;
        }
        if let Some(v) = self.max_message_bytes {
            config.limits.max_message_bytes = v;
        }
        if let Some(v) = self.client_max_message_bytes {
            config.limits.client_max_message_bytes = v;
        }
        if let Some(v) = self.inflight_bytes {
            config.limits.inflight_bytes = v;
        }
        if let Some(v) = self.cache_max_bytes {
            config.cache.max_bytes = v;
        }
        let tls_flags = [&self.upstream_ca, &self.upstream_cert, &self.upstream_key]
            .iter()
            .any(|f| f.is_some())
            || self.upstream_server_name.is_some();
        if tls_flags {
            let tls = config.upstream.tls.get_or_insert_with(TlsFiles::default);
            tls.ca_file = self.upstream_ca.clone().or(tls.ca_file.take());
            tls.cert_file = self.upstream_cert.clone().or(tls.cert_file.take());
            tls.key_file = self.upstream_key.clone().or(tls.key_file.take());
            tls.server_name = self.upstream_server_name.clone().or(tls.server_name.take());
        }
        self.codec(&mut config);
        Ok(config)
    }

    /// The codec flags, over the file's `codec` section (`--codec-listen` starts one).
    fn codec(&self, config: &mut ProxyConfig) {
        if let Some(listen) = self.codec_listen {
            config
                .codec
                .get_or_insert_with(|| CodecConfig::new(listen))
                .listen = listen;
        }
        let Some(codec) = config.codec.as_mut() else {
            return;
        };
        codec
            .allowed_origins
            .extend(self.codec_allow_origin.iter().cloned());
        if let Some(file) = &self.codec_tokens_file {
            codec.tokens_file = Some(file.clone());
        }
        if let Some(v) = self.codec_decode_max_bytes {
            codec.decode_max_bytes = v;
        }
        if let (Some(cert_file), Some(key_file)) = (&self.codec_tls_cert, &self.codec_tls_key) {
            codec.tls = Some(ServerTlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            });
        }
    }
}

/// Serves until SIGTERM; with a configuration file, follows its changes.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let mut proxy = BoundProxy::bind(&config).await?;
    if args.config.is_some() {
        proxy = proxy.reloading(Box::new(move || args.config()));
    }
    proxy.serve(crate::shutdown::signal()).await
}

/// The codec server alone, until SIGTERM; with a configuration file, follows its changes.
pub async fn run_codec(args: ProxyArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let mut codec = BoundCodecServer::bind(&config).await?;
    if args.config.is_some() {
        codec = codec.reloading(Box::new(move || args.config()));
    }
    codec.serve(crate::shutdown::signal()).await
}

pub(super) fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}
