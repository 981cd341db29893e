//! Assembles a running proxy from its configuration: the store tiers, the transformer,
//! the upstream channel, the gRPC listener and the metrics endpoint; and, when the
//! configuration comes from a file, follows that file.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use tokio_rustls::TlsAcceptor;

use crate::codec::{self, Codec, CodecServer, Cors, auth::Authorizer};
use crate::config::{CodecConfig, ProxyConfig, ServerTlsFiles, TlsFiles};
use crate::metrics::Metrics;
use crate::payload::budget::Budget;
use crate::payload::cache::VerifiedCache;
use crate::payload::schema::Schema;
use crate::payload::transform::{Current, Settings, Tier, Transformer};
use crate::proxy::{self, Limits, Proxy, UpstreamTls};
use crate::tls::ServingCert;

/// Produces the configuration again (the file, then the flags), for reloads.
pub type ConfigSource = Box<dyn Fn() -> anyhow::Result<ProxyConfig> + Send + Sync>;

/// How often the configuration file is read again. A mounted ConfigMap changes within
/// the kubelet's sync period (about a minute), so a few seconds more is unnoticeable.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A proxy whose listeners are bound, ready to serve.
pub struct BoundProxy {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub codec_addr: Option<SocketAddr>,
    proxy: Arc<Proxy>,
    grpc: TcpListener,
    core: Core,
}

/// A codec server alone (`claimcheck codec`): the stores and the codec, no gRPC proxy.
pub struct BoundCodecServer {
    pub codec_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    core: Core,
}

/// What the proxy and a codec server share: the stores behind the current transformer, the
/// in-flight budget, the metrics endpoint, the codec listener and the configuration's reload.
struct Core {
    current: Arc<Current>,
    budget: Budget,
    schema: Arc<Schema>,
    metrics: Arc<Metrics>,
    stores: Stores,
    http: TcpListener,
    codec: Option<BoundCodec>,
    source: Option<ConfigSource>,
}

/// The codec server and its listener.
struct BoundCodec {
    server: Arc<CodecServer>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// The certificate served and its files, which the codec re-reads.
    cert: Option<(Arc<ServingCert>, ServerTlsFiles)>,
}

/// What a configuration's drivers became: the transformer over them and their janitors.
struct Stores {
    config: ProxyConfig,
    janitors: Vec<JoinHandle<()>>,
}

impl Drop for Stores {
    fn drop(&mut self) {
        for janitor in &self.janitors {
            janitor.abort();
        }
    }
}

/// The transformer of `config`, and the janitors of its drivers that expire their own objects.
fn open_stores(
    config: &ProxyConfig,
    schema: Arc<Schema>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<Transformer>, Stores)> {
    config.validate()?;
    let tiers = config
        .drivers
        .iter()
        .map(Tier::open)
        .collect::<Result<Vec<_>, _>>()?;
    let settings = Settings {
        threshold_bytes: config.threshold_bytes,
        parallelism: config.limits.parallelism,
        refresh_after: Duration::from_secs(config.refresh_after_seconds),
    };
    let cache = VerifiedCache::new(config.cache.max_entries, config.cache.max_bytes);
    let transformer = Arc::new(Transformer::new(schema, tiers.clone(), settings, cache, metrics)?);
    let janitors = tiers
        .iter()
        .zip(&config.drivers)
        .filter_map(|(tier, driver)| {
            let ttl = Duration::from_secs(driver.expire_after_days?.saturating_mul(86_400));
            Some(tokio::spawn(crate::lifecycle::janitor::run(
                tier.driver.clone(),
                ttl,
            )))
        })
        .collect();
    let stores = Stores {
        config: config.clone(),
        janitors,
    };
    Ok((transformer, stores))
}

impl BoundProxy {
    pub async fn bind(config: &ProxyConfig) -> anyhow::Result<Self> {
        let core = Core::bind(config).await?;
        let tls = config.upstream.tls.as_ref().map(read_tls).transpose()?;
        let upstream = proxy::connect(&config.upstream.address, tls.as_ref())?;
        let limits = Limits {
            max_message_bytes: config.limits.max_message_bytes,
            client_max_message_bytes: config.limits.client_max_message_bytes,
        };
        let proxy = Proxy::new(
            core.current.clone(),
            core.budget.clone(),
            upstream,
            limits,
            core.metrics.clone(),
        );
        let grpc = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(BoundProxy {
            grpc_addr: grpc.local_addr()?,
            metrics_addr: core.http.local_addr()?,
            codec_addr: core.codec_addr()?,
            proxy: Arc::new(proxy),
            grpc,
            core,
        })
    }

    /// Follows the configuration: threshold, drivers, tiers and credentials take effect
    /// without a restart, and calls in flight finish with what they began with.
    pub fn reloading(mut self, source: ConfigSource) -> Self {
        self.core.source = Some(source);
        self
    }

    /// Serves until `shutdown` completes; calls in flight are drained.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(grpc = %self.grpc_addr, metrics = %self.metrics_addr, "claimcheck proxy listening");
        let grpc = proxy::serve(self.proxy, self.grpc, shutdown);
        self.core
            .serve_while(async move { grpc.await.context("gRPC server failed") })
            .await
    }
}

impl BoundCodecServer {
    pub async fn bind(config: &ProxyConfig) -> anyhow::Result<Self> {
        let core = Core::bind(config).await?;
        let codec_addr = core
            .codec_addr()?
            .context("a codec server needs the configuration's codec section (codec.listen)")?;
        Ok(BoundCodecServer {
            codec_addr,
            metrics_addr: core.http.local_addr()?,
            core,
        })
    }

    pub fn reloading(mut self, source: ConfigSource) -> Self {
        self.core.source = Some(source);
        self
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        self.core
            .serve_while(async move {
                shutdown.await;
                Ok(())
            })
            .await
    }
}

impl Core {
    async fn bind(config: &ProxyConfig) -> anyhow::Result<Self> {
        let schema = Arc::new(Schema::temporal()?);
        let metrics = Arc::new(Metrics::new());
        let (transformer, stores) = open_stores(config, schema.clone(), metrics.clone())?;
        let current = Arc::new(Current::new(transformer));
        let budget = Budget::new(config.limits.inflight_bytes);
        let http = TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.metrics_listen))?;
        let codec = match &config.codec {
            Some(codec) => Some(bind_codec(codec, config, &current, &budget, metrics.clone()).await?),
            None => None,
        };
        Ok(Core {
            current,
            budget,
            schema,
            metrics,
            stores,
            http,
            codec,
            source: None,
        })
    }

    fn codec_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.codec.as_ref().map(|c| c.listener.local_addr()).transpose()
    }

    /// Serves metrics, the codec and the reload for as long as `work` runs.
    async fn serve_while(self, work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
        let metrics = self.metrics.clone();
        let app = Router::new()
            .route("/metrics", get(move || async move { metrics.encode() }))
            .route("/healthz", get(|| async { "ok" }))
            // Every listener is bound before this endpoint answers, so ready means ready.
            .route("/readyz", get(|| async { "ok" }));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let http = tokio::spawn(async move {
            axum::serve(self.http, app)
                .with_graceful_shutdown(async move { _ = stop_rx.changed().await })
                .await
        });
        let reload = self.source.map(|source| {
            AbortOnDrop(tokio::spawn(follow(
                source,
                self.current.clone(),
                self.schema,
                self.metrics.clone(),
                self.stores,
            )))
        });
        let codec = self.codec.map(|c| {
            let address = c.listener.local_addr().ok();
            tracing::info!(address = ?address, https = c.tls.is_some(), "codec server listening");
            let refresh = AbortOnDrop(tokio::spawn(c.server.clone().refresh(c.cert)));
            (
                AbortOnDrop(tokio::spawn(c.server.serve(c.listener, c.tls))),
                refresh,
            )
        });
        let worked = work.await;
        _ = stop_tx.send(true);
        drop((codec, reload));
        worked?;
        http.await
            .context("metrics server panicked")?
            .context("metrics server failed")?;
        Ok(())
    }
}

/// Reads the configuration every few seconds and puts a changed one in place. A
/// configuration that does not load or open is logged and the running one kept.
async fn follow(
    source: ConfigSource,
    current: Arc<Current>,
    schema: Arc<Schema>,
    metrics: Arc<Metrics>,
    mut stores: Stores,
) {
    let mut last_error = None;
    let mut rejected: Option<ProxyConfig> = None;
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let next = match source() {
            Ok(next) if next == stores.config || rejected.as_ref() == Some(&next) => continue,
            Ok(next) => next,
            Err(e) => {
                let message = format!("{e:#}");
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(error = %message, "cannot read the changed configuration; keeping the running one");
                    last_error = Some(message);
                }
                continue;
            }
        };
        if let Some(field) = needs_restart(&stores.config, &next) {
            tracing::warn!(field, "this setting takes effect at the next restart");
        }
        match open_stores(&next, schema.clone(), metrics.clone()) {
            Ok((transformer, opened)) => {
                current.replace(transformer);
                metrics.config_reloads.inc();
                stores = opened;
                (last_error, rejected) = (None, None);
                tracing::info!(
                    threshold_bytes = next.threshold_bytes,
                    drivers = next.drivers.len(),
                    "configuration reloaded"
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot apply the changed configuration; keeping the running one");
                metrics.config_rejections.inc();
                rejected = Some(next);
            }
        }
    }
}

/// The first setting that only a restart applies: listeners, upstream, limits.
fn needs_restart(running: &ProxyConfig, next: &ProxyConfig) -> Option<&'static str> {
    [
        ("listen", running.listen != next.listen),
        ("metricsListen", running.metrics_listen != next.metrics_listen),
        ("upstream", running.upstream != next.upstream),
        ("limits", running.limits != next.limits),
        ("codec", running.codec != next.codec),
    ]
    .into_iter()
    .find_map(|(field, changed)| changed.then_some(field))
}

async fn bind_codec(
    codec: &CodecConfig,
    config: &ProxyConfig,
    current: &Arc<Current>,
    budget: &Budget,
    metrics: Arc<Metrics>,
) -> anyhow::Result<BoundCodec> {
    let limits = codec::Limits {
        decode_max_bytes: codec.decode_max_bytes,
        download_max_bytes: codec.download_max(&config.limits),
    };
    let auth = Authorizer::new(codec.tokens_file.as_deref(), codec.oidc.clone())?;
    let cert = codec
        .tls
        .as_ref()
        .map(|files| serving_cert(files).map(|cert| (Arc::new(cert), files.clone())))
        .transpose()?;
    let tls = cert
        .as_ref()
        .map(|(cert, _)| acceptor(cert.clone()))
        .transpose()?;
    let listener = TcpListener::bind(codec.listen)
        .await
        .with_context(|| format!("cannot listen on {} (codec.listen)", codec.listen))?;
    let server = CodecServer {
        codec: Codec::new(
            current.clone(),
            budget.clone(),
            limits,
            codec.namespaces.iter().cloned().collect(),
        ),
        auth,
        cors: Cors {
            origins: codec.allowed_origins.clone(),
        },
        metrics,
        // A body of base64 payloads is a third larger than the message they came from.
        max_request_bytes: config.limits.max_message_bytes / 3 * 4 + 64 * 1024,
    };
    Ok(BoundCodec {
        server: Arc::new(server),
        listener,
        tls,
        cert,
    })
}

fn serving_cert(files: &ServerTlsFiles) -> anyhow::Result<ServingCert> {
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    Ok(ServingCert::from_pem(
        &read(&files.cert_file)?,
        &read(&files.key_file)?,
    )?)
}

fn acceptor(cert: Arc<ServingCert>) -> anyhow::Result<TlsAcceptor> {
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// A task that stops when its owner drops it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn read_tls(files: &TlsFiles) -> anyhow::Result<UpstreamTls> {
    let read = |path: &Option<std::path::PathBuf>| -> anyhow::Result<Option<Vec<u8>>> {
        path.as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
            .transpose()
    };
    Ok(UpstreamTls {
        ca_pem: read(&files.ca_file)?,
        client_cert_pem: read(&files.cert_file)?,
        client_key_pem: read(&files.key_file)?,
        server_name: files.server_name.clone(),
    })
}
