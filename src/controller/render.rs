//! The proxy configuration a policy becomes: the file the injected sidecar mounts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ProxyConfig, TlsFiles, UpstreamConfig};
use crate::policy::PayloadStoragePolicySpec;

/// The key of the proxy configuration in the ConfigMap, and the file the sidecar reads.
pub const CONFIG_KEY: &str = "proxy.yaml";
/// Where the sidecar mounts the Temporal TLS Secret.
pub const TLS_MOUNT: &str = "/etc/claimcheck/temporal-tls";
/// The sidecar's gRPC port on localhost, which the workers dial.
pub const SIDECAR_PORT: u16 = 7233;
const METRICS_PORT: u16 = 9090;

/// `janitor_days`: the TTL the sidecar enforces itself on `file://` drivers, which have no
/// bucket rules (set when the policy manages lifecycle and the TTL is known).
pub fn proxy_config(spec: &PayloadStoragePolicySpec, janitor_days: Option<u64>) -> ProxyConfig {
    let tls = spec.temporal.tls.as_ref().map(|tls| TlsFiles {
        ca_file: Some(PathBuf::from(TLS_MOUNT).join("ca.crt")),
        cert_file: Some(PathBuf::from(TLS_MOUNT).join("tls.crt")),
        key_file: Some(PathBuf::from(TLS_MOUNT).join("tls.key")),
        server_name: tls.server_name.clone(),
    });
    ProxyConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], SIDECAR_PORT)),
        // Metrics are scraped from outside the pod.
        metrics_listen: SocketAddr::from(([0, 0, 0, 0], METRICS_PORT)),
        upstream: UpstreamConfig {
            address: spec.temporal.address.clone(),
            tls,
        },
        threshold_bytes: u64::try_from(spec.threshold_bytes).unwrap_or(0),
        drivers: spec
            .drivers
            .iter()
            .map(|d| {
                let mut driver = d.proxy_driver();
                if driver.url.starts_with("file://") {
                    driver.expire_after_days = janitor_days;
                }
                driver
            })
            .collect(),
        ..ProxyConfig::default()
    }
}

pub fn config_map_data(
    spec: &PayloadStoragePolicySpec,
    janitor_days: Option<u64>,
) -> Result<BTreeMap<String, String>, serde_yaml::Error> {
    let config = proxy_config(spec, janitor_days);
    Ok(BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        serde_yaml::to_string(&config)?,
    )]))
}
