//! The proxy configuration a policy becomes: the file the injected sidecar mounts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::rules::expired_by_janitor;
use crate::config::{ProxyConfig, TlsFiles, UpstreamConfig};
use crate::lifecycle::Ttl;
use crate::policy::PayloadStoragePolicySpec;
use crate::policy::pod::{CONFIG_KEY, CREDENTIALS_MOUNT, METRICS_PORT, SIDECAR_PORT, TLS_MOUNT};

/// A mount path as the configuration file names it: relative to the ConfigMap's mount,
/// so that the mounted tree can be materialised anywhere.
pub(super) fn beside_config(mount: &str) -> PathBuf {
    let name = mount.rsplit('/').next().unwrap_or(mount);
    PathBuf::from("..").join(name)
}

/// An hour covers a workflow's burst of hops over the same value; past it a write is cheap
/// next to the hazard of trusting an old memory.
const MAX_REFRESH_AFTER: Duration = Duration::from_secs(3_600);

/// `managed_ttl`, set when the policy manages lifecycle and its TTL is known, is what the
/// sidecar enforces itself on `file://` and Azure drivers (whose rules the operator does not
/// install), and how long after its write an object is referenced without writing it again.
pub fn proxy_config(spec: &PayloadStoragePolicySpec, managed_ttl: Option<&Ttl>) -> ProxyConfig {
    let janitor_days = managed_ttl.map(|ttl| ttl.days);
    let refresh_after = managed_ttl.map_or(Duration::ZERO, |ttl| ttl.margin.min(MAX_REFRESH_AFTER));
    let tls = spec.temporal.tls.as_ref().map(|tls| TlsFiles {
        ca_file: Some(beside_config(TLS_MOUNT).join("ca.crt")),
        cert_file: Some(beside_config(TLS_MOUNT).join("tls.crt")),
        key_file: Some(beside_config(TLS_MOUNT).join("tls.key")),
        server_name: tls.server_name.clone(),
    });
    ProxyConfig {
        listen: SocketAddr::from((
            [127, 0, 0, 1],
            u16::try_from(spec.sidecar.port).unwrap_or(SIDECAR_PORT),
        )),
        // Metrics are scraped from outside the pod.
        metrics_listen: SocketAddr::from(([0, 0, 0, 0], METRICS_PORT)),
        upstream: UpstreamConfig {
            address: spec.temporal.address.clone(),
            tls,
        },
        threshold_bytes: u64::try_from(spec.threshold_bytes).unwrap_or(0),
        refresh_after_seconds: refresh_after.as_secs(),
        drivers: spec
            .drivers
            .iter()
            .map(|d| {
                let mut driver = d.proxy_driver();
                if d.credentials_secret_ref.is_some() {
                    driver.credentials_dir = Some(beside_config(CREDENTIALS_MOUNT).join(&d.name));
                }
                if expired_by_janitor(&driver.url) {
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
    managed_ttl: Option<&Ttl>,
) -> Result<BTreeMap<String, String>, crate::yaml::WriteError> {
    let config = proxy_config(spec, managed_ttl);
    Ok(BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        crate::yaml::to_string(&config)?,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_janitor_expires_file_and_azure_drivers_only() {
        let spec: PayloadStoragePolicySpec = serde_json::from_value(serde_json::json!({
            "temporal": {"address": "temporal:7233", "namespace": "billing"},
            "drivers": [
                {"name": "local", "url": "file:///payloads"},
                {"name": "blob", "url": "az://payloads/", "minBytes": 1},
                {"name": "s3", "url": "s3://payloads/", "minBytes": 2},
                {"name": "gcs", "url": "gs://payloads/", "minBytes": 3},
            ],
        }))
        .unwrap();
        let ttl = crate::lifecycle::effective_ttl(
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(86_400 + 600),
            Duration::ZERO,
            "namespace",
        );
        assert_eq!(ttl.days, 9);
        let config = proxy_config(&spec, Some(&ttl));
        let days: Vec<_> = config.drivers.iter().map(|d| d.expire_after_days).collect();
        assert_eq!(
            days,
            [Some(9), Some(9), None, None],
            "S3 and GCS have bucket rules"
        );
        assert_eq!(
            config.refresh_after_seconds, 3_600,
            "an hour of the 23h50m margin"
        );
        let tight = crate::lifecycle::effective_ttl(
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(2 * 86_400 - 90),
            Duration::ZERO,
            "namespace",
        );
        assert_eq!(proxy_config(&spec, Some(&tight)).refresh_after_seconds, 90);
        assert_eq!(
            proxy_config(&spec, None).refresh_after_seconds,
            0,
            "rules the operator does not know"
        );
    }
}
