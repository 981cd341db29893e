//! Assembles a running proxy from its configuration: the store tiers, the transformer,
//! the upstream channel, the gRPC listener and the metrics endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::cache::VerifiedCache;
use crate::config::{ProxyConfig, TlsFiles};
use crate::driver::Driver;
use crate::metrics::Metrics;
use crate::proxy::{self, Limits, Proxy, UpstreamTls};
use crate::schema::Schema;
use crate::transform::{Settings, Tier, Transformer};

/// A proxy whose listeners are bound, ready to serve.
pub struct BoundProxy {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    grpc: TcpListener,
    http: TcpListener,
}

impl BoundProxy {
    pub async fn bind(config: &ProxyConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let schema = Arc::new(Schema::temporal()?);
        let metrics = Arc::new(Metrics::new());
        let tiers = config
            .drivers
            .iter()
            .map(|d| {
                Ok(Tier {
                    driver: Driver::open(&d.url, &d.prefix, &d.options)?,
                    min_bytes: d.min_bytes,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (tier, driver) in tiers.iter().zip(&config.drivers) {
            if let Some(days) = driver.expire_after_days {
                let ttl = std::time::Duration::from_secs(days.saturating_mul(86_400));
                tokio::spawn(crate::lifecycle::janitor::run(tier.driver.clone(), ttl));
            }
        }
        let settings = Settings {
            threshold_bytes: config.threshold_bytes,
            parallelism: config.limits.parallelism,
        };
        let cache = VerifiedCache::new(config.cache.max_entries, config.cache.max_bytes);
        let transformer = Arc::new(Transformer::new(schema, tiers, settings, cache, metrics.clone())?);
        let tls = config.upstream.tls.as_ref().map(read_tls).transpose()?;
        let upstream = proxy::connect(&config.upstream.address, tls.as_ref())?;
        let limits = Limits {
            max_message_bytes: config.limits.max_message_bytes,
            client_max_message_bytes: config.limits.client_max_message_bytes,
            inflight_bytes: config.limits.inflight_bytes,
        };
        let proxy = Arc::new(Proxy::new(transformer, upstream, limits, metrics.clone()));
        let grpc = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let http = TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.metrics_listen))?;
        Ok(BoundProxy {
            grpc_addr: grpc.local_addr()?,
            metrics_addr: http.local_addr()?,
            proxy,
            metrics,
            grpc,
            http,
        })
    }

    /// Serves until `shutdown` completes; calls in flight are drained.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let metrics = self.metrics.clone();
        let app = Router::new()
            .route("/metrics", get(move || async move { metrics.encode() }))
            .route("/healthz", get(|| async { "ok" }))
            // The gRPC listener is bound before this endpoint answers, so ready means ready.
            .route("/readyz", get(|| async { "ok" }));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(async move {
            axum::serve(self.http, app)
                .with_graceful_shutdown(async move { _ = http_stop.changed().await })
                .await
        });
        tracing::info!(grpc = %self.grpc_addr, metrics = %self.metrics_addr, "claimcheck proxy listening");
        let grpc = proxy::serve(self.proxy, self.grpc, shutdown).await;
        _ = stop_tx.send(true);
        drop(stop_rx);
        grpc.context("gRPC server failed")?;
        http.await
            .context("metrics server panicked")?
            .context("metrics server failed")?;
        Ok(())
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
