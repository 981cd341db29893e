//! The proxy configuration a policy becomes: the file the injected sidecar mounts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::rules::expired_by_janitor;
use crate::config::{ProxyConfig, TlsFiles, UpstreamConfig};
use crate::policy::PayloadStoragePolicySpec;
use crate::policy::pod::{CONFIG_KEY, CREDENTIALS_MOUNT, METRICS_PORT, SIDECAR_PORT, TLS_MOUNT};

/// A mount path as the configuration file names it: relative to the ConfigMap's mount,
/// so that the mounted tree can be materialised anywhere.
pub(super) fn beside_config(mount: &str) -> PathBuf {
    let name = mount.rsplit('/').next().unwrap_or(mount);
    PathBuf::from("..").join(name)
}

/// `janitor_days`: the TTL the sidecar enforces itself on `file://` and Azure drivers,
/// whose rules the operator does not install (set when the policy manages lifecycle and the
/// TTL is known).
pub fn proxy_config(spec: &PayloadStoragePolicySpec, janitor_days: Option<u64>) -> ProxyConfig {
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
    janitor_days: Option<u64>,
) -> Result<BTreeMap<String, String>, serde_yaml::Error> {
    let config = proxy_config(spec, janitor_days);
    Ok(BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        serde_yaml::to_string(&config)?,
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
        let days: Vec<_> = proxy_config(&spec, Some(9))
            .drivers
            .iter()
            .map(|d| d.expire_after_days)
            .collect();
        assert_eq!(
            days,
            [Some(9), Some(9), None, None],
            "S3 and GCS have bucket rules"
        );
    }
}
